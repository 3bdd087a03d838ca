"""The aws backend: the Pulumi program of `stacks/`, driven with the Automation API.

One stack per classroom name, in a local `file://` backend inside the classroom's state folder
(unless PULUMI_BACKEND_URL is set), with the passphrase secrets provider: the passphrase is
generated once, kept 0600 in the state folder and handed to the engine in its environment,
never on a command line. The program runs in-process and reads its input from the stack's
configuration (`classroom:*`), the same keys a trainer sets for `pulumi up` from the repo root.

Listing machines and checking for leftovers ask EC2 directly (boto3, by the classroom's tags):
the cloud is the source of truth, and a classroom whose state folder is lost can still be found.
"""

from __future__ import annotations

import base64
import dataclasses
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3  # noqa: F401  (the aws extra: a missing package is reported by get_backend)
import pulumi.automation as auto

from stacks import (
    DEFAULT_DISK_GB,
    INSTANCE_TOKEN,
    MANAGED_BY,
    PROJECT,
    ClassroomSpec,
    HostEntry,
    host_order,
    ami_parameter,
    instance_urn,
    parse_expiry,
    spec_to_config,
)

from . import cost
from . import preflight as aws_preflight
from ...errors import BadInput, ClassroomError, last_line
from ...progress import NULL_PROGRESS, Progress
from ...state import AwsRecord, new_secret, write_private
from ...model import MachineState, Role
from ...ports import course_ports
from ..base import Backend, EnsureResult, Leftover, Machine

if TYPE_CHECKING:
    from ...config import ClassroomConfig
    from ...model import HostSpec
    from ...state import ClassroomState

if importlib.util.find_spec("pulumi_aws") is None:  # the program needs it; say so at import time
    raise ImportError("No module named 'pulumi_aws'", name="pulumi_aws")

PULUMI_INSTALL = "https://www.pulumi.com/docs/install/"
NO_PULUMI = (f"the aws backend needs the Pulumi CLI, and `pulumi` is not on PATH: install it "
             f"({PULUMI_INSTALL}), then check `pulumi version`")
# The oldest Pulumi CLI and SDK this code works with: `up --refresh` and `--continue-on-error`
# (with refresh: fixed in 3.116 and 3.124), `destroy --remove`, and the SDK's `PulumiCommand`,
# `Stack.up(refresh=, continue_on_error=)` and `Stack.destroy(remove=)`. pyproject.toml's floors match.
MIN_PULUMI = "3.134.0"
PASSPHRASE_FILE = "pulumi-passphrase"
WORK_DIR = "pulumi"
SSH_PORT = 22
# A classroom about to expire gets a new expiry on `up` rather than hosts that power off at once.
EXPIRY_MARGIN = timedelta(minutes=15)
EXPIRES_TAG = "expires-at"  # the instance tag each host's expiry timer reads (stacks.classroom_stack)
# EC2 is eventually consistent: seconds to wait before asking DescribeInstances again.
DESCRIBE_RETRIES = (2, 4, 8, 15, 30)
SWEEP_RETRIES = (5, 10, 20, 30, 60)  # after a deletion: instances shutting down, late listings
# Root's Docker credentials, written from stdin (never argv): 0600, in a 0700 folder.
REGISTRY_AUTH_COMMAND = ("umask 077 && mkdir -p /root/.docker && cat > /root/.docker/config.json.new "
                         "&& mv /root/.docker/config.json.new /root/.docker/config.json")
DOCKER_HUB = "https://index.docker.io/v1/"
EXPOSED_WARNING = ("warning: aws.allowed_cidr is 0.0.0.0/0: every host's SSH (passwords) and published ports "
                   "are open to the whole Internet; set aws.allowed_cidr to your school's network "
                   "(e.g. 203.0.113.0/24) in the classroom file")

LIVE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]
MACHINE_STATES = {"pending": "starting", "running": "running", "stopping": "stopped",
                  "stopped": "stopped", "shutting-down": "terminating"}
KINDS = {
    INSTANCE_TOKEN: "instance",
    "aws:ec2/vpc:Vpc": "vpc",
    "aws:ec2/subnet:Subnet": "subnet",
    "aws:ec2/internetGateway:InternetGateway": "internet-gateway",
    "aws:ec2/routeTable:RouteTable": "route-table",
    "aws:ec2/route:Route": "route",
    "aws:ec2/routeTableAssociation:RouteTableAssociation": "route-table-association",
    "aws:ec2/securityGroup:SecurityGroup": "security-group",
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": "security-group-rule",
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": "security-group-rule",
    "aws:ec2/keyPair:KeyPair": "key-pair",
}


# One step per host: its final operation (not the refresh before it, nor the halves of a replacement).
COUNTED_OPS = {auto.OpType.SAME, auto.OpType.CREATE, auto.OpType.UPDATE, auto.OpType.REPLACE,
               auto.OpType.IMPORT, auto.OpType.DELETE}


def inline_program(host_keys: dict[str, tuple[str, str]]) -> Callable[[], None]:
    """What the engine runs, in this process: the program of `stacks/`, reading the stack's config.
    The hosts' SSH keys come with it in-process (a secret never goes on the engine's command line)."""

    def program() -> None:
        from stacks.classroom_stack import main

        main(host_keys=host_keys)

    return program


def _name_of(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


def _kind_of(token: str) -> str | None:
    if token.startswith("pulumi:"):  # the stack itself, providers
        return None
    return KINDS.get(token, token.rsplit(":", 1)[-1].lower())


@dataclass
class EngineEvents:
    """Turns Pulumi engine events into progress, and remembers deletions and errors."""

    progress: Progress
    key: str
    removed: list[Leftover] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    host_errors: dict[str, str] = field(default_factory=dict)  # instance name -> first error

    def failed_hosts(self, names: Iterable[str]) -> dict[str, str]:
        """The hosts whose instance the engine reported failing, with the reason."""
        return {name: self.host_errors[name] for name in names if name in self.host_errors}

    def first_error(self) -> str | None:
        return self.errors[0] if self.errors else None

    def __call__(self, event: auto.EngineEvent) -> None:
        try:
            self._handle(event)
        except Exception:  # a display problem must never break the engine
            logging.getLogger(__name__).debug("engine event not shown", exc_info=True)

    def _handle(self, event: auto.EngineEvent) -> None:
        if event.resource_pre_event is not None:
            meta = event.resource_pre_event.metadata
            if meta.type == INSTANCE_TOKEN:
                self.progress.advance(self.key, 0, detail=f"{_name_of(meta.urn)}: {auto.OpType(meta.op).value}")
        if event.res_outputs_event is not None:
            meta = event.res_outputs_event.metadata
            op = auto.OpType(meta.op)
            if meta.type == INSTANCE_TOKEN and op in COUNTED_OPS:
                self.progress.advance(self.key, 1, detail=f"{_name_of(meta.urn)}: {op.value}")
            kind = _kind_of(meta.type)
            if kind and op in (auto.OpType.DELETE, auto.OpType.DELETE_REPLACED):
                self.removed.append(Leftover(kind, _name_of(meta.urn)))
        if event.res_op_failed_event is not None:
            meta = event.res_op_failed_event.metadata
            self.progress.note(f"{_name_of(meta.urn)}: {auto.OpType(meta.op).value} failed")
            if meta.type == INSTANCE_TOKEN:
                self.host_errors.setdefault(_name_of(meta.urn), f"{auto.OpType(meta.op).value} failed")
        if event.diagnostic_event is not None and event.diagnostic_event.severity == "error":
            text = " ".join(event.diagnostic_event.message.split())
            if text:
                urn = event.diagnostic_event.urn or ""
                where = _name_of(urn) if urn else ""
                self.errors.append(f"{where}: {text}" if where else text)
                if f"::{INSTANCE_TOKEN}::" in urn:
                    self.host_errors[where] = text


def exposed(cidr: str) -> bool:
    """Whether allowed_cidr is the whole Internet (0.0.0.0/0 or ::/0)."""
    import ipaddress

    return ipaddress.ip_network(cidr, strict=False).prefixlen == 0


def find_leftovers(ec2: Any, classroom: str) -> list[Leftover]:
    """Everything in the region that carries this classroom's tags and still exists."""
    tagged = [{"Name": "tag:classroom", "Values": [classroom]},
              {"Name": "tag:managed-by", "Values": [MANAGED_BY]}]
    found: list[Leftover] = []

    def name(item: dict[str, Any]) -> str:
        tags = {t["Key"]: t["Value"] for t in item.get("Tags", [])}
        return tags.get("host") or tags.get("Name") or ""

    def label(identifier: str, item: dict[str, Any]) -> str:
        extra = name(item)
        return f"{identifier} ({extra})" if extra else identifier

    for page in ec2.get_paginator("describe_instances").paginate(
            Filters=tagged + [{"Name": "instance-state-name", "Values": LIVE_STATES}]):
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                found.append(Leftover("instance", label(instance["InstanceId"], instance)))
    for volume in ec2.describe_volumes(Filters=tagged)["Volumes"]:
        if volume.get("State") not in ("deleting", "deleted"):
            found.append(Leftover("volume", label(volume["VolumeId"], volume)))
    for group in ec2.describe_security_groups(Filters=tagged)["SecurityGroups"]:
        found.append(Leftover("security-group", label(group["GroupId"], group)))
    for subnet in ec2.describe_subnets(Filters=tagged)["Subnets"]:
        found.append(Leftover("subnet", label(subnet["SubnetId"], subnet)))
    for table in ec2.describe_route_tables(Filters=tagged)["RouteTables"]:
        found.append(Leftover("route-table", label(table["RouteTableId"], table)))
    for gateway in ec2.describe_internet_gateways(Filters=tagged)["InternetGateways"]:
        found.append(Leftover("internet-gateway", label(gateway["InternetGatewayId"], gateway)))
    for vpc in ec2.describe_vpcs(Filters=tagged)["Vpcs"]:
        found.append(Leftover("vpc", label(vpc["VpcId"], vpc)))
    for key in ec2.describe_key_pairs(Filters=tagged)["KeyPairs"]:
        found.append(Leftover("key-pair", key["KeyName"]))
    return found


class AwsBackend(Backend):
    """Hosts are EC2 instances in the classroom's own VPC; Pulumi creates and destroys them."""

    name = "aws"
    isolates_students = True  # a VM each

    def __init__(self, config: ClassroomConfig, state: ClassroomState, *,
                 pulumi_command: auto.PulumiCommand | None = None,
                 clients: Callable[[str], aws_preflight.ClientFactory] | None = None,
                 which: Callable[[str], str | None] = shutil.which,
                 ami_parameter: str | None = None,
                 extra_config: dict[str, str] | None = None,
                 now: Callable[[], datetime] | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 boot: Callable[[Machine, str | None], str | None] | None = None):
        """`pulumi_command` stands in for the engine (tests); `clients(region)` returns a boto3
        client factory for that region; `which` finds executables; `extra_config` adds stack
        configuration (e.g. `aws:endpoints` for a moto server); `sleep` waits between EC2 retries;
        `boot(machine, registry credentials)` waits for one host (None: ready, else why not)."""
        self.config = config
        self.state = state
        self._command = pulumi_command
        self._clients = clients or aws_preflight.default_clients
        self._client_cache: dict[str, aws_preflight.ClientFactory] = {}
        self._which = which
        self._ami_parameter = ami_parameter
        self._extra_config = dict(extra_config or {})
        self._now = now or (lambda: datetime.now(timezone.utc))
        self._engine_lock = threading.Lock()
        self._sleep = sleep
        self._boot = boot or self._default_boot
        self._destroyed = False  # then `leftovers` waits for EC2 to catch up

    # --- places and settings -----------------------------------------------------------------
    @property
    def stack_name(self) -> str:
        return self.config.name

    @property
    def work_dir(self) -> Path:
        return self.state.path / WORK_DIR

    @property
    def backend_url(self) -> str:
        return os.environ.get("PULUMI_BACKEND_URL") or f"file://{self.work_dir}"

    @property
    def region(self) -> str:
        """Where the classroom lives: where it was created, else where the file says."""
        return self._meta().region or self.config.aws.region

    def _meta(self) -> AwsRecord:
        return self.state.meta().aws or AwsRecord()

    def _save_meta(self, **values: Any) -> None:
        self.state.update_meta(aws={**self._meta().model_dump(exclude_unset=True), **values})

    def _factory(self, region: str) -> aws_preflight.ClientFactory:
        if region not in self._client_cache:
            self._client_cache[region] = self._clients(region)
        return self._client_cache[region]

    def _ec2(self, region: str | None = None) -> Any:
        return self._factory(region or self.region)("ec2")

    def _passphrase(self) -> dict[str, str]:
        """PULUMI_CONFIG_PASSPHRASE for the engine: the one this classroom's stack was made with
        (kept 0600 in the state folder); for a new stack, the trainer's own if set, else a new one."""
        path = self.state.path / PASSPHRASE_FILE
        if not path.exists():
            if os.environ.get("PULUMI_CONFIG_PASSPHRASE") or os.environ.get("PULUMI_CONFIG_PASSPHRASE_FILE"):
                return {}  # inherited by the engine from this process's environment
            write_private(path, new_secret(32) + "\n")
        return {"PULUMI_CONFIG_PASSPHRASE": path.read_text().strip()}

    def engine_env(self) -> dict[str, str]:
        return {"PULUMI_BACKEND_URL": self.backend_url, "PULUMI_SKIP_UPDATE_CHECK": "true",
                **self._passphrase()}

    # --- the engine ------------------------------------------------------------------------------
    def _require_pulumi(self) -> auto.PulumiCommand:
        """The Pulumi CLI, or one clear line on how to get it (before anything is created)."""
        if self._command is not None:
            return self._command
        if self._which("pulumi") is None:
            raise BadInput(NO_PULUMI)
        try:
            from semver import VersionInfo

            self._command = auto.PulumiCommand(version=VersionInfo.parse(MIN_PULUMI))
        except auto.InvalidVersionError as exc:
            raise BadInput(f"the Pulumi CLI is too old ({exc}): upgrade it ({PULUMI_INSTALL})") from None
        except (OSError, subprocess.CalledProcessError) as exc:
            raise BadInput(f"`pulumi version` failed ({exc}): reinstall the Pulumi CLI ({PULUMI_INSTALL})") from None
        return self._command

    def _workspace(self) -> auto.LocalWorkspace:
        command = self._require_pulumi()
        self.state.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.work_dir.mkdir(exist_ok=True, mode=0o700)
        settings = auto.ProjectSettings(
            name=PROJECT, runtime="python", backend=auto.ProjectBackend(url=self.backend_url),
            description=f"classroom {self.config.name} on AWS (managed by the classroom tool)")
        program = inline_program(self.host_keys(h.name for h in self._meta().hosts))
        return auto.LocalWorkspace(work_dir=str(self.work_dir), program=program,
                                   env_vars=self.engine_env(), secrets_provider="passphrase",
                                   project_settings=settings, pulumi_command=command)

    def _stack(self, create: bool) -> auto.Stack:
        workspace = self._workspace()
        try:
            if create:
                return auto.Stack.create_or_select(self.stack_name, workspace)
            return auto.Stack.select(self.stack_name, workspace)
        except auto.StackNotFoundError:
            raise
        except auto.CommandError as exc:
            raise self._failure("stack init/select", exc, None) from None

    def _failure(self, action: str, exc: Exception, events: EngineEvents | None) -> ClassroomError:
        if isinstance(exc, auto.ConcurrentUpdateError):
            return ClassroomError(f"pulumi {action}: another update of stack {self.stack_name} is running "
                                  f"(if none is, run `pulumi cancel` in {self.work_dir})")
        detail = events.errors[0] if events and events.errors else ""
        if not detail:
            stderr = getattr(exc, "stderr", "") or ""
            lines = [line.strip() for line in stderr.splitlines() if line.strip()]
            lines = lines or [line.strip() for line in str(exc).splitlines() if line.strip()] or ["?"]
            detail = lines[-1]
        return ClassroomError(f"pulumi {action} failed: {detail}")

    # --- the Backend interface -------------------------------------------------------------------
    def preflight(self, hosts: list[HostSpec]) -> aws_preflight.PreflightResult:
        self._require_pulumi()
        self._check_region()
        self.registry_credentials()  # malformed credentials: refused before anything is made
        return aws_preflight.run(
            region=self.config.aws.region, instance_type=self.config.aws.instance_type, hosts=len(hosts),
            allowed_cidr=self.config.aws.allowed_cidr, classroom=self.config.name,
            clients=self._factory(self.config.aws.region), ami_parameter=self._ami_parameter)

    def estimate(self, hosts: int, hours: float | None = None) -> cost.Estimate:
        if hours is None:
            hours = self.config.ttl_delta.total_seconds() / 3600
        return cost.estimate(self.config.aws.instance_type, self.config.aws.region, hosts,
                             DEFAULT_DISK_GB, hours)

    def ensure(self, hosts: list[HostSpec], admin_public_key: str,
               progress: Progress = NULL_PROGRESS,
               found: aws_preflight.PreflightResult | None = None) -> EnsureResult:  # type: ignore[override]
        self._require_pulumi()
        self._check_region()
        spec = self.spec(hosts, admin_public_key, progress, found=found)
        now = self._now()
        hours = max((spec.expires_at - now).total_seconds() / 3600, 0.0)
        estimate = cost.estimate(spec.instance_type, self.config.aws.region, len(spec.hosts), spec.disk_gb, hours)
        progress.note(estimate.line())
        if found is not None:
            for warning in found.warnings:
                progress.note(warning)
        if exposed(self.config.aws.allowed_cidr):
            progress.note(EXPOSED_WARNING)
        self._save_meta(region=self.config.aws.region, hosts=[h.as_dict() for h in spec.hosts],
                        expires_at=spec.expires_at_text, ami=spec.ami,
                        availability_zone=spec.availability_zone, instance_type=spec.instance_type,
                        disk_gb=spec.disk_gb, started_at=self._meta().started_at or now.isoformat())
        # What the sheets and `up` print: when these hosts power off (a new period after expiry).
        self.state.update_meta(expires_at=spec.expires_at)

        stack = self._stack(create=True)
        events = EngineEvents(progress, "aws")
        progress.start("aws", f"AWS: {len(spec.hosts)} hosts in {self.config.aws.region}", total=len(spec.hosts))
        failed: auto.CommandError | None = None
        try:
            self._start_stopped(progress)
            plugin = f"v{importlib.metadata.version('pulumi_aws')}"
            try:
                stack.workspace.install_plugin("aws", plugin)
            except auto.CommandError as exc:
                raise self._failure(f"plugin install aws {plugin}", exc, None) from None
            self._set_config(stack, spec)
            try:
                # One host AWS refuses (capacity, a quota) must not stop the 29 others.
                stack.up(refresh=True, continue_on_error=True, color="never", on_event=events)
            except auto.ConcurrentUpdateError as exc:
                raise self._failure("up", exc, events) from None
            except auto.CommandError as exc:
                failed = exc
        finally:
            progress.finish("aws")
        names = [h.name for h in spec.hosts]
        broken = events.failed_hosts(names)
        machines = self._wait_for_instances([n for n in names if n not in broken], progress)
        if failed is not None and not machines:
            raise self._failure("up", failed, events)
        listed = {m.name for m in machines}
        failures = {}
        for name in names:
            if name not in listed:
                reason = broken.get(name) or (events.first_error() if failed is not None else None)
                failures[name] = (f"AWS: {reason or 'not created'}" if failed is not None
                                  else "AWS: created, but EC2 does not list it yet")
        if failures:
            progress.note(f"AWS: {len(failures)} host(s) could not be created "
                          f"({', '.join(failures)}): the others go on; `classroom up` tries them again")
        booted = sorted(self.wait_until_booted(machines, progress), key=lambda m: host_order(m.name))
        return EnsureResult(booted, failures)

    def _set_config(self, stack: auto.Stack, spec: ClassroomSpec) -> None:
        values = {**spec_to_config(spec), **self._extra_config}
        stack.set_all_config({key: auto.ConfigValue(value=value) for key, value in values.items()})

    def host_keys(self, names: Iterable[str]) -> dict[str, tuple[str, str]]:
        """Each host's own SSH key (made by the tool, kept in the state folder, the same after a
        replacement): handed to the inline program in-process, never through the engine's argv."""
        keys = {}
        for name in names:
            key = self.state.host_key(name)
            keys[name] = (key.private_openssh, key.public_line)
        return keys

    def spec(self, hosts: list[HostSpec], admin_public_key: str,
             progress: Progress = NULL_PROGRESS, replacing: tuple[str, ...] = (),
             found: aws_preflight.PreflightResult | None = None) -> ClassroomSpec:
        """What `ensure` asks Pulumi for: the hosts asked for plus those the classroom already has
        (a smaller --students never deletes a student's machine), a stable expiry, the current AMI
        (running hosts keep theirs: only new and replaced hosts take it); `found`: what the
        preflight found (the current AMI, a zone that offers the instance type)."""
        meta = self._meta()
        wanted = [HostEntry(h.name, h.role, h.student) for h in hosts]
        names = {h.name for h in wanted}
        kept = [HostEntry(h.name, h.role, h.student) for h in meta.hosts if h.name not in names]
        if kept and wanted:
            progress.note(f"keeping {', '.join(h.name for h in kept)} (not asked for any more; "
                          "`classroom down` removes everything)")
        now = self._now()
        expires_at = parse_expiry(meta.expires_at) if meta.expires_at else None
        if expires_at is None or expires_at <= now + EXPIRY_MARGIN:
            expires_at = (now + self.config.ttl_delta).replace(second=0, microsecond=0)
        aws = self.config.aws
        return ClassroomSpec(
            name=self.config.name, hosts=tuple(wanted + kept), admin_public_key=admin_public_key.strip(),
            expires_at=expires_at, instance_type=aws.instance_type,
            allowed_cidr=aws.allowed_cidr, registry_mirror=self.config.registry_mirror,
            ami=(found.ami if found else None) or meta.ami,
            availability_zone=meta.availability_zone or (found.availability_zone if found else None),
            disk_gb=DEFAULT_DISK_GB, region=aws.region, ports=tuple(self.config.port_ranges),
            ephemeral_ports=aws.ephemeral_ports, replacing=replacing)

    def replace(self, host: HostSpec, admin_public_key: str,
                progress: Progress = NULL_PROGRESS) -> Machine:
        self._require_pulumi()
        known = {h.name for h in self._meta().hosts}
        if host.name not in known:
            raise BadInput(f"{host.name} is not a host of classroom {self.config.name} on AWS "
                           "(run `classroom up` first)")
        # `reset --hard` replaces hosts from parallel threads, but the engine takes one update of a
        # stack at a time (a second one fails: "the stack is currently locked"): they take turns.
        with self._engine_lock:
            try:
                stack = self._stack(create=False)
            except auto.StackNotFoundError:
                raise BadInput(f"classroom {self.config.name} has no AWS stack: run `classroom up` first") from None
            old = {m.machine_id for m in self.machines() if m.name == host.name}
            # The replacement gets the current AMI and user-data; the other hosts keep theirs.
            spec = self.spec([], admin_public_key, progress, replacing=(host.name,))
            spec = dataclasses.replace(spec, ami=self._current_ami() or spec.ami)
            self._set_config(stack, spec)
            urn = instance_urn(self.stack_name, host.name)
            events = EngineEvents(progress, "aws-replace")
            progress.start("aws-replace", f"AWS: replacing {host.name}", total=1)
            try:
                stack.up(replace=[urn], target=[urn], color="never", on_event=events)
            except auto.CommandError as exc:
                raise self._failure(f"up --replace {host.name}", exc, events) from None
            finally:
                progress.finish("aws-replace")
        # A targeted update leaves the stack's outputs as they were: the new instance's address
        # comes from EC2, by tag, skipping the instance it replaced.
        machines = self._wait_for_instances([host.name], progress, exclude=old - {None})
        if not machines:
            raise ClassroomError(f"{host.name}: EC2 shows no new instance after its replacement")
        return self.wait_until_booted(machines, progress)[0]

    def _current_ami(self) -> str | None:
        """The AMI the public parameter names today (what a replaced host boots)."""
        parameter = self._ami_parameter or ami_parameter(self.config.aws.instance_type)
        ssm = self._factory(self.region)("ssm")
        try:
            return self._aws("read the current AMI", lambda: ssm.get_parameter(Name=parameter))["Parameter"]["Value"]
        except ClassroomError:
            return None  # the program resolves it itself

    # --- waiting for real machines -----------------------------------------------------------------
    def _wait_for_instances(self, names: list[str], progress: Progress,
                            exclude: set[str] | frozenset[str] = frozenset()) -> list[Machine]:
        """The hosts' instances, read from EC2 by tag. EC2 is eventually consistent: an instance
        just created may be missing from DescribeInstances for a while, so ask again before giving up."""
        wanted = set(names)
        found: dict[str, Machine] = {}
        for delay in (*DESCRIBE_RETRIES, None):
            found = {m.name: m for m in self.machines(exclude=exclude)
                     if m.name in wanted and m.state in (MachineState.RUNNING, MachineState.STARTING)}
            if set(found) >= wanted or delay is None:
                break
            progress.note(f"AWS: waiting for EC2 to list {', '.join(sorted(wanted - set(found)))}")
            self._sleep(delay)
        return list(found.values())

    def wait_until_booted(self, machines: list[Machine], progress: Progress) -> list[Machine]:
        """Wait (shown as progress) until each host answers SSH and cloud-init is done, then hand it
        the registry credentials. A host that does not is kept: provisioning then names its error."""
        if not machines:
            return machines
        progress.start("aws-boot", f"AWS: waiting for {len(machines)} host(s) to boot (Docker install)",
                       total=len(machines))
        credentials = self.registry_credentials()

        def boot(machine: Machine) -> Machine:
            try:
                problem = self._boot(machine, credentials)
            except Exception as exc:  # one host's surprise never stops the others' wait
                problem = last_line(exc)
            if problem:
                progress.note(f"{machine.name}: {problem}")
            progress.advance("aws-boot", detail=f"{machine.name}: {'ready' if not problem else 'not ready'}")
            return machine

        from ...ssh import in_parallel

        # Every host waits at once: the sessions are idle while cloud-init works (30 hosts boot together).
        outcomes = in_parallel(machines, boot, limit=min(len(machines), 64))
        progress.finish("aws-boot")
        return [machine for machine, _result, _error in outcomes]

    def _default_boot(self, machine: Machine, credentials: str | None) -> str | None:
        """SSH, then `cloud-init status --wait`; None when the host is ready."""
        from ... import ssh

        if not machine.running:
            return None
        aws = self.config.aws
        access = ssh.AdminAccess(self.state.admin_key().private_path, self.state.host_keys())
        try:
            connection = ssh.open_with_retry(ssh.admin_connection(machine, access), aws.ssh_seconds)
        except ClassroomError as exc:
            return f"no SSH after {aws.ssh_timeout} ({last_line(exc)})"
        try:
            result = ssh.run(connection, "cloud-init status --wait --long", timeout=int(aws.cloud_init_seconds))
            if not result.ok:
                return f"cloud-init did not finish well within {aws.cloud_init_timeout}: {last_line(result.stdout)}"
            if credentials:
                install_registry_auth(connection, credentials)
            return None
        finally:
            connection.close()

    def registry_credentials(self) -> str | None:
        """`user:token` from the environment variable `registry_auth` names (never from a file)."""
        value = os.environ.get(self.config.registry_auth, "").strip()
        if not value:
            return None
        user, sep, token = value.partition(":")
        if not (sep and user and token) or any(c.isspace() for c in value):
            raise BadInput(f"{self.config.registry_auth}: must be user:token (a Docker Hub access token)")
        return value

    # --- expiry ----------------------------------------------------------------------------------
    def set_expiry(self, expires_at: datetime) -> list[str]:
        """Move the expiry of every running host in place: the `expires-at` tag its timer reads over
        IMDSv2. The next `up` writes the same value into the stack."""
        text = expires_at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        machines = [m for m in self.machines() if m.machine_id]
        if machines:
            ec2 = self._ec2()
            ids = [m.machine_id for m in machines]
            self._aws("tag instances", lambda: ec2.create_tags(Resources=ids, Tags=[{"Key": EXPIRES_TAG,
                                                                                    "Value": text}]))
        self._save_meta(expires_at=text)
        return [m.name for m in machines]

    def destroy(self, progress: Progress = NULL_PROGRESS) -> list[Leftover]:
        """`pulumi destroy` (then the stack is removed); returns what was deleted. Without a stack
        (the state folder was lost), everything tagged with the classroom is deleted through EC2."""
        meta = self._meta()
        try:
            stack = self._stack(create=False) if self._has_engine() else None
        except auto.StackNotFoundError:
            stack = None
        events = EngineEvents(progress, "aws-destroy")
        removed: list[Leftover] = []
        if stack is not None:
            progress.start("aws-destroy", f"AWS: destroying classroom {self.config.name}",
                           total=len(meta.hosts) or None)
            try:
                stack.destroy(refresh=True, remove=True, continue_on_error=True, color="never", on_event=events)
            except auto.CommandError as exc:
                raise self._failure("destroy", exc, events) from None
            finally:
                progress.finish("aws-destroy")
            removed = events.removed
        elif self.leftovers():
            progress.start("aws-sweep", f"AWS: deleting what is tagged with classroom {self.config.name}")
            try:
                removed = self._aws("delete tagged resources", lambda: sweep(self._ec2(), self.config.name,
                                                                             self._sleep, progress))
            finally:
                progress.finish("aws-sweep")
        if meta.started_at:
            started = datetime.fromisoformat(meta.started_at)
            hours = max((self._now() - started).total_seconds() / 3600, 0.0)
            spent = cost.estimate(meta.instance_type or self.config.aws.instance_type, self.region,
                                  len(meta.hosts), meta.disk_gb or DEFAULT_DISK_GB,
                                  hours)
            progress.note(f"ran {hours:.1f} h; {spent.line()}")
        self._destroyed = True
        self.state.update_meta(aws=AwsRecord(region=self.region))
        return removed

    def _has_engine(self) -> bool:
        """Whether the stack can be asked: a stack exists only where the engine ran. Without the
        state folder (and its stack) the sweep needs no `pulumi` at all."""
        if (self.state.path / WORK_DIR).exists() or os.environ.get("PULUMI_BACKEND_URL"):
            self._require_pulumi()
            return True
        return False

    def leftovers(self) -> list[Leftover]:
        """What still carries the classroom's tags. Right after a deletion EC2 may still list
        instances shutting down (and be late): then ask again a few times before calling it a leftover."""
        found = self._aws("look for leftovers", lambda: find_leftovers(self._ec2(), self.config.name))
        for delay in SWEEP_RETRIES if self._destroyed else ():
            if not found:
                break
            self._sleep(delay)
            found = self._aws("look for leftovers", lambda: find_leftovers(self._ec2(), self.config.name))
        return found

    def machines(self, exclude: set[str] | frozenset[str] = frozenset()) -> list[Machine]:
        instances = self._aws("list instances", lambda: list(self._tagged_instances(LIVE_STATES)))
        best: dict[str, dict[str, Any]] = {}
        for instance in instances:
            host = _tags(instance).get("host")
            if not host or instance["InstanceId"] in exclude:
                continue
            current = best.get(host)
            if current is None or _rank(instance) > _rank(current):
                best[host] = instance
        return [self._machine_from_instance(best[name]) for name in sorted(best)]

    # --- helpers ---------------------------------------------------------------------------------
    def _check_region(self) -> None:
        meta = self._meta()
        if meta.hosts and meta.region and meta.region != self.config.aws.region:
            raise BadInput(f"aws.region: classroom {self.config.name} runs in {meta.region}: run "
                           f"`classroom down` before moving it to {self.config.aws.region}")

    def _aws(self, what: str, fn: Callable[[], Any]) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return aws_preflight.aws_call(what, self.region, fn)
        except (ClientError, BotoCoreError) as exc:
            raise ClassroomError(f"AWS: cannot {what} in {self.region}: {exc}") from None

    def _tagged_instances(self, states: list[str]) -> Iterable[dict[str, Any]]:
        filters = [{"Name": "tag:classroom", "Values": [self.config.name]},
                   {"Name": "tag:managed-by", "Values": [MANAGED_BY]},
                   {"Name": "instance-state-name", "Values": states}]
        for page in self._ec2().get_paginator("describe_instances").paginate(Filters=filters):
            for reservation in page["Reservations"]:
                yield from reservation["Instances"]

    def _start_stopped(self, progress: Progress) -> None:
        """`ensure` starts hosts someone stopped by hand (a stopped instance keeps its disk)."""
        stopped = self._aws("list instances", lambda: [
            i["InstanceId"] for i in self._tagged_instances(["stopped"])])
        if not stopped:
            return
        progress.note(f"starting {len(stopped)} stopped instance(s)")
        ec2 = self._ec2()
        self._aws("start instances", lambda: ec2.start_instances(InstanceIds=stopped))
        self._aws("wait for instances", lambda: ec2.get_waiter("instance_running").wait(
            InstanceIds=stopped, WaiterConfig={"Delay": 5, "MaxAttempts": 60}))

    def _machine_from_instance(self, instance: dict[str, Any]) -> Machine:
        tags = _tags(instance)
        address = instance.get("PublicIpAddress") or instance.get("PublicDnsName") or ""
        student = tags.get("student")
        return Machine(
            name=tags["host"], role=Role(tags.get("role", Role.STUDENT)),
            student=None if student in (None, "", "none") else student,
            state=MachineState(MACHINE_STATES.get(instance["State"]["Name"], instance["State"]["Name"])),
            ssh_host=address, ssh_port=SSH_PORT, public_host=address, public_port=SSH_PORT,
            private_address=instance.get("PrivateIpAddress"), machine_id=instance["InstanceId"],
            admin_user="root",
            # The security group opens the course's ports on every host's own address.
            ports=tuple((port, port) for port in course_ports(self.config.port_ranges)))


def _tags(item: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in item.get("Tags", [])}


def _rank(instance: dict[str, Any]) -> tuple[int, float]:
    """Which instance stands for a host when several carry its name (during a replacement)."""
    order = {"running": 4, "pending": 3, "stopping": 2, "stopped": 2, "shutting-down": 0}
    launched = instance.get("LaunchTime")
    return order.get(instance["State"]["Name"], 0), launched.timestamp() if launched else 0.0


def install_registry_auth(connection: Any, credentials: str) -> None:
    """Root's Docker credentials on a host (for its pulls), sent over SSH stdin: never in argv,
    user-data, logs or the state folder."""
    from ... import ssh

    token = base64.b64encode(credentials.encode()).decode()
    payload = json.dumps({"auths": {DOCKER_HUB: {"auth": token}}})
    ssh.check(connection, REGISTRY_AUTH_COMMAND, stdin=payload, what="installing the registry credentials")


def sweep(ec2: Any, classroom: str, sleep: Callable[[float], None] = time.sleep,
          progress: Progress = NULL_PROGRESS) -> list[Leftover]:
    """Delete everything tagged with the classroom, in the order EC2 allows: instances (and wait),
    key pairs, security groups, subnets, route tables, internet gateways, VPCs, stray volumes.
    For a classroom whose stack is lost: the tags are all that is left to go by."""
    from botocore.exceptions import ClientError

    tagged = [{"Name": "tag:classroom", "Values": [classroom]},
              {"Name": "tag:managed-by", "Values": [MANAGED_BY]}]
    removed: list[Leftover] = []

    def retrying(call: Callable[[], Any]) -> None:
        """Dependencies (an instance's network interface) go away a little after the instance."""
        for delay in (*SWEEP_RETRIES, None):
            try:
                call()
                return
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code.endswith("NotFound") or ".NotFound" in code:
                    return
                if code != "DependencyViolation" or delay is None:
                    raise
                sleep(delay)

    ids = [i["InstanceId"] for page in ec2.get_paginator("describe_instances").paginate(
        Filters=tagged + [{"Name": "instance-state-name", "Values": LIVE_STATES}])
        for r in page["Reservations"] for i in r["Instances"]]
    if ids:
        progress.note(f"terminating {len(ids)} instance(s)")
        ec2.terminate_instances(InstanceIds=ids)
        ec2.get_waiter("instance_terminated").wait(InstanceIds=ids, WaiterConfig={"Delay": 5, "MaxAttempts": 120})
        removed += [Leftover("instance", i) for i in ids]
    for key in ec2.describe_key_pairs(Filters=tagged)["KeyPairs"]:
        retrying(lambda key=key: ec2.delete_key_pair(KeyName=key["KeyName"]))
        removed.append(Leftover("key-pair", key["KeyName"]))
    groups = ec2.describe_security_groups(Filters=tagged)["SecurityGroups"]
    for group in groups:  # rules that name another group would block its deletion
        if group.get("IpPermissions"):
            ec2.revoke_security_group_ingress(GroupId=group["GroupId"], IpPermissions=group["IpPermissions"])
    for group in groups:
        retrying(lambda group=group: ec2.delete_security_group(GroupId=group["GroupId"]))
        removed.append(Leftover("security-group", group["GroupId"]))
    for subnet in ec2.describe_subnets(Filters=tagged)["Subnets"]:
        retrying(lambda subnet=subnet: ec2.delete_subnet(SubnetId=subnet["SubnetId"]))
        removed.append(Leftover("subnet", subnet["SubnetId"]))
    for table in ec2.describe_route_tables(Filters=tagged)["RouteTables"]:
        for association in table.get("Associations", []):
            if not association.get("Main"):
                retrying(lambda a=association: ec2.disassociate_route_table(AssociationId=a["RouteTableAssociationId"]))
        retrying(lambda table=table: ec2.delete_route_table(RouteTableId=table["RouteTableId"]))
        removed.append(Leftover("route-table", table["RouteTableId"]))
    for gateway in ec2.describe_internet_gateways(Filters=tagged)["InternetGateways"]:
        for attachment in gateway.get("Attachments", []):
            retrying(lambda g=gateway, a=attachment: ec2.detach_internet_gateway(
                InternetGatewayId=g["InternetGatewayId"], VpcId=a["VpcId"]))
        retrying(lambda g=gateway: ec2.delete_internet_gateway(InternetGatewayId=g["InternetGatewayId"]))
        removed.append(Leftover("internet-gateway", gateway["InternetGatewayId"]))
    for vpc in ec2.describe_vpcs(Filters=tagged)["Vpcs"]:
        retrying(lambda vpc=vpc: ec2.delete_vpc(VpcId=vpc["VpcId"]))
        removed.append(Leftover("vpc", vpc["VpcId"]))
    for volume in ec2.describe_volumes(Filters=tagged)["Volumes"]:
        if volume.get("State") == "available":
            retrying(lambda v=volume: ec2.delete_volume(VolumeId=v["VolumeId"]))
            removed.append(Leftover("volume", volume["VolumeId"]))
    return removed
