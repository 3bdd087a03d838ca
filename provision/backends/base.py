"""The small interface every backend implements. It knows machines, not courses."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from ..model import HostSpec, Leftover, Machine, MachineState
from ..progress import NULL_PROGRESS, Progress
from ..state import HostKey


@dataclass(frozen=True)
class EnsureResult:
    """What `ensure` made of the hosts asked for: the machines it has, and the hosts it could
    not create or start, with the reason (the others go on)."""

    machines: list[Machine]
    failures: dict[str, str] = field(default_factory=dict)


class Estimate(Protocol):
    """What a paid backend says a classroom will cost (backends/aws/cost.py)."""

    def line(self) -> str: ...


# What a backend's preflight found and its own `ensure` uses (aws: the AMI, the zone, warnings):
# opaque to the caller, who only hands it from one to the other.
Findings = object


class Backend(ABC):
    """Creates, lists, replaces and destroys one classroom's machines."""

    name: str = "?"
    # Whether `repair_access` and `restore_host_key` work: they reach a host without SSH.
    can_repair_access: bool = False
    # Whether one student's host keeps them away from the others and from the machine that runs
    # it (a VM each: yes). `up` says so when it does not.
    isolates_students: bool = False

    @abstractmethod
    def preflight(self, hosts: list[HostSpec]) -> Findings | None:
        """Refuse (BadInput) what would fail, before anything is created. What it found is
        handed to `ensure` by the caller (None: nothing worth keeping)."""

    @abstractmethod
    def ensure(self, hosts: list[HostSpec], admin_public_key: str,
               progress: Progress = NULL_PROGRESS, found: Findings | None = None) -> EnsureResult:
        """Create the missing hosts, start stopped ones; never touch a running one. `found`: what
        this backend's `preflight` returned, if it ran."""

    def capacity_note(self, hosts: list[HostSpec], new_hosts: list[HostSpec]) -> str | None:
        """A line worth showing before `new_hosts` are created (what the classroom will weigh on
        the machine that runs it); None: nothing worth saying."""
        return None

    def estimate(self, hosts: int) -> Estimate | None:
        """What `hosts` machines cost for the classroom's time to live; None: nothing to pay
        (asked before creating paid hosts)."""
        return None

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

    def current_state(self, machine: Machine) -> MachineState:
        """The machine's state now (running, exited, missing, ...): asked while waiting for it to
        answer, so a machine that stopped meanwhile is reported at once."""
        found = next((m for m in self.machines() if m.name == machine.name), None)
        return found.state if found is not None else MachineState.MISSING

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
