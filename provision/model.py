"""The nouns every layer shares: hosts planned, machines found, what provisioning reported.

They sit below everything else (no import of the project's other modules), so that backends,
provisioning, checks and commands can all speak of them without importing one another.
Enums are `StrEnum`s: each member *is* its string, so JSON output and comparisons with the
strings the engine or the cloud return stay what they were.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Role(StrEnum):
    STUDENT = "student"
    SWARM_MANAGER = "swarm-manager"
    SWARM_WORKER = "swarm-worker"
    SWARM_NODE = "swarm-node"  # a blank engine (`swarm.formed: false`): the student forms the cluster


class MachineState(StrEnum):
    """What a backend says of a machine. Local: the container's status; aws: the instance's
    state, named as the local ones where they mean the same (`pending` -> starting)."""

    RUNNING = "running"
    STARTING = "starting"
    CREATED = "created"  # made by an `up` interrupted before it started it
    RESTARTING = "restarting"
    PAUSED = "paused"
    STOPPED = "stopped"
    EXITED = "exited"
    DEAD = "dead"
    REMOVING = "removing"
    TERMINATING = "terminating"
    MISSING = "missing"  # planned, not found
    UNKNOWN = "unknown"  # a state this version does not know

    @classmethod
    def _missing_(cls, value: object) -> MachineState:
        return cls.UNKNOWN


class Strategy(StrEnum):
    """How the course's images reach hosts: pushed from the trainer's engine, or pulled by each host."""

    PUSH = "push"
    PULL = "pull"


@dataclass(frozen=True)
class HostSpec:
    """A machine the classroom should have, whatever the backend."""

    name: str  # student-01, swarm-1
    role: Role
    student: str | None  # the student who owns it; None for Swarm nodes
    index: int  # 1-based position among its kind: decides the SSH port on the local backend
    node: int = 0  # a student's own Swarm node: its number in their cluster (2…N; their host is 1)

    @property
    def is_swarm(self) -> bool:
        return self.role != Role.STUDENT

    @property
    def is_shared_node(self) -> bool:
        """A node of the shared cluster: every student has an account there (and is root)."""
        return self.is_swarm and self.student is None


@dataclass(frozen=True)
class Machine:
    """A machine as the backend sees it, and how to reach it over SSH."""

    name: str  # student-01, swarm-1
    role: Role
    student: str | None
    state: MachineState
    ssh_host: str  # where the tool connects
    ssh_port: int
    public_host: str  # what the sheets print (may differ from ssh_host)
    public_port: int
    private_address: str | None = None  # on the classroom's network: Swarm advertises this
    machine_id: str | None = None  # container ID, instance ID
    admin_user: str = "root"
    # (port on the host, port on public_host) of each course port a student reaches from outside:
    # local, a block of this machine's ports each; aws, the host's own ports (ports.py).
    ports: tuple[tuple[int, int], ...] = ()

    @property
    def running(self) -> bool:
        return self.state == MachineState.RUNNING

    @property
    def is_shared_node(self) -> bool:
        """A node of the shared cluster (no owner): every student has an account there."""
        return self.role != Role.STUDENT and self.student is None


@dataclass(frozen=True)
class Leftover:
    """Something of the classroom that still exists after `down`."""

    kind: str  # container, volume, network, instance, ...
    name: str


@dataclass
class HostReport:
    """How provisioning went on one host."""

    name: str
    role: Role
    address: str
    port: int
    ok: bool
    error: str | None = None
    changes: list[str] = field(default_factory=list)
    # Not the machine this classroom made (its host key differs): `up` never uses it, so only
    # `classroom reset --hard` (a new machine with the classroom's key) repairs it.
    needs_replacing: bool = False
