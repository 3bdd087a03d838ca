"""The classroom's cloud program for Pulumi: what one classroom is on AWS, as plain data.

This module is import-light on purpose (no pulumi, no boto3): the backend builds a
`ClassroomSpec`, turns it into stack configuration with `spec_to_config`, and the program in
`classroom_stack.py` (run inline by the Automation API, or by `pulumi up` from the repo root)
reads it back with `spec_from_values`. One format, two ways in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

PROJECT = "classroom"  # the Pulumi project name (Pulumi.yaml) and the config namespace
MANAGED_BY = "classroom"  # value of the managed-by tag on every resource
INSTANCE_TOKEN = "aws:ec2/instance:Instance"
DEFAULT_DISK_GB = 20
VPC_CIDR = "10.42.0.0/16"
SUBNET_CIDR = "10.42.0.0/20"

# Public SSM parameters that always name the current Debian 12 AMI of the region.
DEBIAN_AMI_PARAMETER = "/aws/service/debian/release/12/latest/{arch}"

# Security group: what the course needs from the trainer's network (allowed_cidr): 22 for SSH,
# plus the course's `ports:` (what students publish with `-p`). Docker's ephemeral range (`-P`)
# only when the classroom opts in; Swarm's default published range only on Swarm nodes.
# Never 2375/2376: the Docker API is reached over SSH only.
SSH_PORTS: tuple[int, int] = (22, 22)
DEFAULT_COURSE_PORTS: tuple[tuple[int, int], ...] = ((80, 80), (5000, 5000), (8000, 8010))
EPHEMERAL_PORTS: tuple[int, int] = (32768, 60999)  # what `docker run -P` picks from
SWARM_PUBLISHED_PORTS: tuple[int, int] = (30000, 32767)  # `docker service create -p 80` picks from
FORBIDDEN_PORTS = (2375, 2376)
# Burstable families: their CPU credits are set to `standard` (no "unlimited" surplus charges).
_BURSTABLE = re.compile(r"^t\d[a-z]*$")

_ARM_FAMILY = re.compile(r"^(a1|[a-z]+\d+g[a-z]*)$")  # t4g, m6g, c7gn, m7gd, a1


def architecture(instance_type: str) -> str:
    """`arm64` for Graviton families (t4g, m7g, ...), else `amd64` (Debian's names)."""
    family = instance_type.split(".", 1)[0].lower()
    return "arm64" if _ARM_FAMILY.match(family) else "amd64"


def burstable(instance_type: str) -> bool:
    return bool(_BURSTABLE.match(instance_type.split(".", 1)[0].lower()))


def ports_text(ports: tuple[tuple[int, int], ...]) -> str:
    """`80,5000,8000-8010`: the stack config's spelling of a port list."""
    return ",".join(str(low) if low == high else f"{low}-{high}" for low, high in ports)


def parse_ports_text(text: str) -> tuple[tuple[int, int], ...]:
    ranges = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        low, _, high = part.partition("-")
        ranges.append((int(low), int(high or low)))
    return tuple(ranges)


def ami_parameter(instance_type: str) -> str:
    return DEBIAN_AMI_PARAMETER.format(arch=architecture(instance_type))


def instance_urn(stack: str, host: str, project: str = PROJECT) -> str:
    """The URN of a host's instance: instances are top-level resources named after the host."""
    return f"urn:pulumi:{stack}::{project}::{INSTANCE_TOKEN}::{host}"


@dataclass(frozen=True)
class HostEntry:
    name: str  # student-01, swarm-1
    role: str  # student | swarm-manager | swarm-worker
    student: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {"name": self.name, "role": self.role, "student": self.student}


@dataclass(frozen=True)
class ClassroomSpec:
    """Everything the program needs, as plain data (nothing here talks to AWS)."""

    name: str
    hosts: tuple[HostEntry, ...]
    admin_public_key: str
    expires_at: datetime  # aware, UTC: hosts power off (and terminate) then; a tag, changeable in place
    instance_type: str = "t3.small"
    allowed_cidr: str = "0.0.0.0/0"
    registry_mirror: str | None = None
    ami: str | None = None  # pinned AMI; None: resolve the public SSM parameter
    availability_zone: str | None = None
    disk_gb: int = DEFAULT_DISK_GB
    region: str | None = None  # aws:region (the provider's config, not ours)
    ports: tuple[tuple[int, int], ...] = DEFAULT_COURSE_PORTS  # the course's, besides 22
    ephemeral_ports: bool = False  # open Docker's `-P` range too
    # Hosts being replaced (`reset --hard`): they get the current user-data and AMI; every other
    # host keeps what it was made with (a running host's user-data never changes).
    replacing: tuple[str, ...] = ()
    # host -> (OpenSSH private key, public line): the host's own SSH key, made by the tool. A
    # secret: handed to the program in-process (never on a command line), user-data is secret.
    host_keys: dict[str, tuple[str, str]] = field(default_factory=dict, repr=False)
    extra_tags: dict[str, str] = field(default_factory=dict)

    @property
    def expires_at_text(self) -> str:
        return self.expires_at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- spec <-> stack configuration --------------------------------------------------------------
# Keys are in the project's namespace (`classroom:<key>`); `aws:region` is the provider's.
CONFIG_KEYS = ("name", "hosts", "instanceType", "allowedCidr", "adminPublicKey", "expiresAt",
               "registryMirror", "ami", "availabilityZone", "diskGb", "ports", "ephemeralPorts", "replacing")
# Secret configuration, for the plain `pulumi` CLI only (`pulumi config set --secret`): the tool
# hands host keys to its inline program in-process, since `config set-all --secret k=v` would put
# them on the engine's command line.
SECRET_CONFIG_KEYS = ("hostKeys",)


def spec_to_config(spec: ClassroomSpec) -> dict[str, str]:
    """The stack configuration for a spec: every key always set ("" for none), so a value removed
    from the classroom file is removed from the stack too."""
    values = {
        "name": spec.name,
        "hosts": json.dumps([h.as_dict() for h in spec.hosts], separators=(",", ":")),
        "instanceType": spec.instance_type,
        "allowedCidr": spec.allowed_cidr,
        "adminPublicKey": spec.admin_public_key,
        "expiresAt": spec.expires_at_text,
        "registryMirror": spec.registry_mirror or "",
        "ami": spec.ami or "",
        "availabilityZone": spec.availability_zone or "",
        "diskGb": str(spec.disk_gb),
        "ports": ports_text(spec.ports),
        "ephemeralPorts": "true" if spec.ephemeral_ports else "false",
        "replacing": ",".join(spec.replacing),
    }
    config = {f"{PROJECT}:{key}": value for key, value in values.items()}
    if spec.region:
        config["aws:region"] = spec.region
    return config


_DURATION = re.compile(r"^(\d+)\s*([mhd])$")
_DURATION_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_duration(value: object) -> timedelta:
    """`90m`, `8h`, `2d` -> a timedelta; ValueError (one line) for anything else or zero.
    The classroom file's durations (provision.config) are read by this one too."""
    text = str(value).strip()
    match = _DURATION.match(text)
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration like 90m, 8h or 2d")
    return timedelta(**{_DURATION_UNITS[match.group(2)]: int(match.group(1))})


def templates_dir() -> Path:
    """The `templates/` folder (host image, cloud-init, sheets): the one beside this code first,
    since an editable install maps `provision.templates` to the checkout it was made from, which
    may be another one; else the installed package `provision.templates`."""
    source = Path(__file__).resolve().parent.parent / "templates"
    if (source / "__init__.py").is_file():
        return source
    from importlib.resources import files

    return Path(str(files("provision.templates")))


def parse_expiry(text: str) -> datetime:
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def plan_host_entries(students: int, swarm_nodes: int = 0, managers: int = 1, *, per_student: bool = False,
                      formed: bool = True) -> tuple[HostEntry, ...]:
    """Every host of a classroom, in `host_order`. Shared: one host per student, then swarm-1 … swarm-M.
    `per_student`: each student's host is node 1 of their own cluster, followed by
    student-NN-node-2 … student-NN-node-M (owned by them). `formed` false: the nodes are blank
    (`swarm-node`). Here rather than in provision (whose roster.plan_hosts builds on it) so that
    `pulumi up` runs without the tool."""
    def role(k: int) -> str:
        return "swarm-node" if not formed else "swarm-manager" if k <= managers else "swarm-worker"

    hosts = []
    for i in range(1, students + 1):
        student = f"student-{i:02d}"
        hosts.append(HostEntry(student, "student", student))
        if per_student:
            hosts += [HostEntry(f"{student}-node-{k}", role(k), student) for k in range(2, swarm_nodes + 1)]
    if not per_student:
        hosts += [HostEntry(f"swarm-{k}", role(k)) for k in range(1, swarm_nodes + 1)]
    return tuple(hosts)


_HOST_NAME = re.compile(r"^(student|swarm)-(\d+)(?:-node-(\d+))?$")


def host_numbers(name: str) -> tuple[int, int]:
    """(index among its kind, node number): student-07 -> (7, 0), student-07-node-2 -> (7, 2),
    swarm-3 -> (3, 0); (0, 0) for a name of no kind."""
    match = _HOST_NAME.match(name)
    return (int(match.group(2)), int(match.group(3) or 0)) if match else (0, 0)


def host_order(name: str) -> tuple[int, int, str]:
    """Sort key of a host name: students first, each followed by their own nodes, then the shared
    Swarm nodes, each by number (swarm-2 before swarm-10)."""
    index, _node = host_numbers(name)
    return (0 if name.startswith("student-") else 1, index, name)


def spec_from_values(get: Callable[[str], str | None], stack: str,
                     now: datetime | None = None) -> ClassroomSpec:
    """Read a spec from configuration: `get("hosts")` returns the value of `classroom:hosts`.

    Written by `spec_to_config`, or by hand for the plain `pulumi` CLI, where `students`,
    `swarmNodes` and `ttl` may stand in for `hosts` and `expiresAt`.
    """

    def text(key: str) -> str | None:
        value = get(key)
        return value if value not in (None, "") else None

    hosts_text = text("hosts")
    if hosts_text:
        hosts = tuple(HostEntry(h["name"], h["role"], h.get("student")) for h in json.loads(hosts_text))
    else:
        hosts = plan_host_entries(int(text("students") or 3), int(text("swarmNodes") or 0),
                                  int(text("swarmManagers") or 1),
                                  per_student=(text("swarmMode") or "per-student") == "per-student")
    key = text("adminPublicKey")
    if not key:
        raise ValueError(f"{PROJECT}:adminPublicKey is required (an OpenSSH public key line)")
    expires = text("expiresAt")
    if expires:
        expires_at = parse_expiry(expires)
    else:
        expires_at = (now or datetime.now(timezone.utc)) + parse_duration(text("ttl") or "8h")
        expires_at = expires_at.replace(second=0, microsecond=0)
    ports = get("ports")  # "" is a course that publishes nothing; None: not set
    keys = json.loads(text("hostKeys") or "{}")
    return ClassroomSpec(
        name=text("name") or stack,
        hosts=hosts,
        admin_public_key=key.strip(),
        expires_at=expires_at,
        instance_type=text("instanceType") or "t3.small",
        allowed_cidr=text("allowedCidr") or "0.0.0.0/0",
        registry_mirror=text("registryMirror"),
        ami=text("ami"),
        availability_zone=text("availabilityZone"),
        disk_gb=int(text("diskGb") or DEFAULT_DISK_GB),
        ports=parse_ports_text(ports) if ports is not None else DEFAULT_COURSE_PORTS,
        ephemeral_ports=(text("ephemeralPorts") or "false").lower() == "true",
        replacing=tuple(filter(None, (text("replacing") or "").split(","))),
        host_keys={host: (pair["private"], pair["public"]) for host, pair in keys.items()},
    )
