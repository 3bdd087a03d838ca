"""The small interface every backend implements. It knows machines, not courses."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ..progress import NULL_PROGRESS, Progress
from ..roster import HostSpec, Role
from ..state import HostKey


@dataclass(frozen=True)
class Machine:
    """A machine as the backend sees it, and how to reach it over SSH."""

    name: str  # student-01, swarm-1
    role: Role
    student: str | None
    state: str  # running | stopped | missing | failed | ...
    ssh_host: str  # where the tool connects
    ssh_port: int
    public_host: str  # what the sheets print (may differ from ssh_host)
    public_port: int
    private_address: str | None = None  # on the classroom's network: Swarm advertises this
    machine_id: str | None = None  # container ID, instance ID
    admin_user: str = "root"

    @property
    def running(self) -> bool:
        return self.state == "running"


@dataclass(frozen=True)
class Leftover:
    """Something of the classroom that still exists after `down`."""

    kind: str  # container, volume, network, instance, ...
    name: str


class Backend(ABC):
    """Creates, lists, replaces and destroys one classroom's machines."""

    name: str = "?"
    # Whether `repair_access` and `restore_host_key` work: they reach a host without SSH.
    can_repair_access: bool = False
    # Whether one student's host keeps them away from the others and from the machine that runs
    # it (a VM each: yes). `up` says so when it does not.
    isolates_students: bool = False
    # Hosts the last `ensure` could not create or start, with the reason: the others go on.
    failures: dict[str, str] = {}

    @abstractmethod
    def preflight(self, hosts: list[HostSpec]) -> None:
        """Refuse (BadInput) what would fail, before anything is created."""

    @abstractmethod
    def ensure(self, hosts: list[HostSpec], admin_public_key: str,
               progress: Progress = NULL_PROGRESS) -> list[Machine]:
        """Create the missing hosts, start stopped ones; never touch a running one."""

    @abstractmethod
    def machines(self) -> list[Machine]:
        """The classroom's machines as they are now (the backend is the source of truth)."""

    @abstractmethod
    def replace(self, host: HostSpec, admin_public_key: str,
                progress: Progress = NULL_PROGRESS) -> Machine:
        """Destroy one machine and create it anew: same name and address, a clean disk."""

    @abstractmethod
    def destroy(self, progress: Progress = NULL_PROGRESS) -> list[Leftover]:
        """Remove everything of the classroom; returns what was removed."""

    @abstractmethod
    def leftovers(self) -> list[Leftover]:
        """What of the classroom still exists: empty after a successful `destroy`."""

    def set_expiry(self, expires_at: datetime) -> list[str]:
        """Move the expiry the hosts enforce themselves; returns the hosts told. A backend whose
        hosts enforce none (local: the trainer removes them with `down`) tells nobody."""
        return []

    def current_state(self, machine: Machine) -> str:
        """The machine's state now (running, exited, missing, ...): asked while waiting for it to
        answer, so a machine that stopped meanwhile is reported at once."""
        found = next((m for m in self.machines() if m.name == machine.name), None)
        return found.state if found is not None else "missing"

    def repair_access(self, machine: Machine, admin_public_key: str) -> bool:
        """Put the admin key back in root's authorized_keys without SSH, if this backend can
        (a student who is root on their host may have removed it). False: it cannot."""
        return False

    def restore_host_key(self, machine: Machine, host_key: HostKey) -> bool:
        """Install a new SSH host key on a running host without SSH (the old one is lost from the
        state folder, so the tool can no longer tell the host from a stranger), if this backend can."""
        return False

    def upload(self, machine: Machine, local: Path, remote_path: str) -> bool:
        """Copy a file onto a host faster than SFTP, if this backend can; False means "use SFTP".

        Only an optimisation: the local backend moves bytes through the engine, which costs
        far less CPU than SSH encryption for the course's images (measured on 2 cores: 30 hosts
        loaded two 20 MB images in 16 s through the engine, 44 s over SFTP).
        """
        return False
