"""Who is in the classroom: host names, roles, students, and how a trainer names a student."""

from __future__ import annotations

import re
from dataclasses import dataclass

from stacks import host_numbers, host_order, plan_host_entries

from .config import ClassroomConfig
from .errors import BadInput
from .model import HostSpec, Role
from .ports import url

__all__ = ["HostSpec", "PublishedPort", "Role", "RosterEntry", "SwarmAccess", "host_order", "plan_hosts", "resolve_host",
           "ssh_command", "student_name", "student_names"]

def student_name(index: int) -> str:
    return f"student-{index:02d}"


def student_names(count: int) -> list[str]:
    return [student_name(i) for i in range(1, count + 1)]


def plan_hosts(config: ClassroomConfig) -> list[HostSpec]:
    """Every host of the classroom: one per student (each followed by their own Swarm nodes in
    per-student mode), else then swarm-1 … swarm-M (stacks' plan, which `pulumi up` reads without
    the tool)."""
    swarm = config.swarm
    entries = plan_host_entries(config.students, swarm.nodes, swarm.managers, per_student=swarm.per_student,
                                formed=swarm.formed)
    return [HostSpec(e.name, Role(e.role), e.student, *host_numbers(e.name)) for e in entries]


_STUDENT_ARG = re.compile(r"^(?:student-)?0*(\d{1,4})$")
_SWARM_ARG = re.compile(r"^(?:swarm-\d{1,2}|student-\d{2,4}-node-\d)$")


def resolve_host(argument: str, known: list[str]) -> str:
    """`student-12`, `12`, `swarm-2` or `student-12-node-2` -> the host name, if the classroom has it; else BadInput."""
    text = argument.strip().lower()
    if match := _STUDENT_ARG.match(text):
        name = student_name(int(match.group(1)))
    elif _SWARM_ARG.match(text):
        name = text
    else:
        raise BadInput(f"{argument!r} is not a student: use student-12 or 12")
    if name not in known:
        students = [n for n in known if n.startswith("student-")]
        span = f"{students[0]} … {students[-1]}" if students else "none"
        raise BadInput(f"no {name} in this classroom (students: {span})")
    return name


@dataclass(frozen=True)
class PublishedPort:
    """A port a student publishes on their host (`docker run -p 8080:80`), and where they open it."""

    port: int  # on the student's host: 8080
    url: str  # from their laptop: http://ADDRESS:PUBLIC_PORT

    def as_json(self) -> dict:
        return {"port": self.port, "url": self.url}


@dataclass(frozen=True)
class RosterEntry:
    """One student's access, as the instructor's list and the sheets print it."""

    student: str
    host: str  # the student's machine: student-01
    address: str  # what the student types after @ (public address)
    port: int
    user: str
    password: str
    host_key: str | None = None  # the host key's fingerprint (SHA256:...), for the student to check
    # The student's password on the shared Swarm nodes only (None: no shared nodes): every student
    # is root there, so it must not be the one that opens their own host.
    swarm_password: str | None = None
    ports: tuple[PublishedPort, ...] = ()  # the course's ports, each with its URL
    # The Swarm nodes this student logs into: their own cluster (their host first), or the shared nodes.
    swarm: tuple[SwarmAccess, ...] = ()

    def as_json(self) -> dict:
        """The entry as `roster --format json` (and the web's `/api/me`) give it."""
        return {"student": self.student, "host": self.host, "address": self.address, "port": self.port,
                "user": self.user, "password": self.password, "ssh": self.ssh_command, "host_key": self.host_key,
                "swarm_password": self.swarm_password, "ports": [p.as_json() for p in self.ports],
                "swarm": [n.as_json() for n in self.swarm]}

    @property
    def ssh_command(self) -> str:
        return ssh_command(self.user, self.address, self.port)


@dataclass(frozen=True)
class SwarmAccess:
    """A Swarm node a student can log into: their own (their password), or a shared one (their Swarm password)."""

    host: str  # swarm-1, student-07-node-2
    role: Role
    address: str
    port: int
    student: str | None = None  # the owner; None: a shared node
    private_address: str | None = None  # on the classroom's network: for `swarm init --advertise-addr`, `join`

    def ssh_command(self, user: str) -> str:
        return ssh_command(user, self.address, self.port)

    def as_json(self) -> dict:
        return {"name": self.host, "role": self.role, "address": self.address, "port": self.port}


def published_ports(address: str, ports: tuple[tuple[int, int], ...]) -> tuple[PublishedPort, ...]:
    """A machine's (port, public port) pairs as the student's URLs on `address`."""
    return tuple(PublishedPort(port, url(address, public)) for port, public in ports)


def ssh_command(user: str, address: str, port: int) -> str:
    """What a student types: `ssh -p 2201 student-01@127.0.0.1` (no -p for port 22)."""
    return f"ssh {'' if port == 22 else f'-p {port} '}{user}@{address}"
