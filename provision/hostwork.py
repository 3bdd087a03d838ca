"""What the commands do on the hosts themselves, as one object: over SSH in real runs.

commands.py decides which hosts to make, provision, check, reset and report on; this is the
work it hands out for one host (or a batch, where the real work has its own parallelism). It is
the one seam between that orchestration and the SSH layer: `Classroom(remote=...)` takes
another implementation (tests/fakes.py has one that needs no host at all).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from .model import Machine

if TYPE_CHECKING:
    from .backends.base import Backend
    from .commands import Classroom
    from .progress import Progress
    from .provisioning import Course
    from .ssh import AdminAccess
    from .swarm import SwarmLayout, SwarmReport, SwarmStatus

Checks = tuple[dict[str, bool], str | None]  # {check: ok}, and why not


class HostWork(Protocol):
    def provision(self, machine: Machine, hashes: dict[str, str], access: AdminAccess, course: Course,
                  backend: Backend, *, fresh_exercises: bool = False) -> list[str]:
        """Converge one host (engine, accounts, images, exercises); returns what changed."""

    def wipe(self, machine: Machine, access: AdminAccess, backend: Backend, student: str, *,
             keep_home: bool = False, keep_swarm: bool = False) -> list[str]:
        """Soft reset: the student's things gone (`keep_home`: but their home folder), the engine as
        the course has it (`keep_swarm`: still in the student's own cluster)."""

    def clean_swarm(self, cluster: list[Machine], access: AdminAccess, backend: Backend) -> list[str]:
        """A student's own cluster: its services, stacks, secrets and configs gone (from its first
        node that is a manager); what was done."""

    def check(self, machine: Machine, access: AdminAccess, passwords: dict[str, str], hashes: dict[str, str],
              *, images: bool, exercises: bool, repairable: bool = True) -> Checks:
        """One host, checked as its student sees it."""

    def check_all(self, room: Classroom, machines: list[Machine], passwords: dict[str, str],
                  on_done: Callable[[Machine], None] | None = None, *,
                  password_login: bool = False, swarm_passwords: dict[str, str] | None = None) -> dict[str, Checks]:
        """Every host, checked at once: host name -> checks. `password_login`: also log in with
        each student's password for real (after provisioning), not only compare hashes."""

    def converge_swarm(self, machines: list[Machine], access: AdminAccess, layout: SwarmLayout,
                       progress: Progress) -> SwarmReport:
        """Form or repair the Swarm clusters of `layout` among `machines` (formed: false: only look)."""

    def release_nodes(self, machines: list[Machine], access: AdminAccess, names: list[str],
                      progress: Progress) -> list[str]:
        """Hand the roles of the Swarm nodes `names` over before they are replaced."""

    def swarm_status(self, machines: list[Machine], access: AdminAccess, layout: SwarmLayout) -> SwarmStatus:
        """What the clusters of `layout` among `machines` say of themselves."""

    def routing_mesh(self, machines: list[Machine], access: AdminAccess) -> bool | None:
        """Whether the hosts' kernel has IPVS (Swarm's routing mesh); None: no host answered."""


class SshHostWork:
    """The real thing: Fabric sessions as the classroom's admin."""

    def provision(self, machine, hashes, access, course, backend, *, fresh_exercises=False):
        from .provisioning import provision_host

        return provision_host(machine, hashes, access, course, backend, fresh_exercises=fresh_exercises)

    def wipe(self, machine, access, backend, student, *, keep_home=False, keep_swarm=False):
        from .provisioning import admin_session
        from .reset import wipe_student

        with admin_session(machine, access, backend) as connection:
            return wipe_student(connection, student, keep_home=keep_home, keep_swarm=keep_swarm)

    def clean_swarm(self, cluster, access, backend):
        from .provisioning import admin_session
        from .reset import clean_swarm

        for machine in (m for m in cluster if m.running):
            with admin_session(machine, access, backend) as connection:
                if clean_swarm(connection):
                    return [f"Swarm services, secrets and configs removed (from {machine.name})"]
        return []

    def check(self, machine, access, passwords, hashes, *, images, exercises, repairable=True):
        from .checks import check_host

        return check_host(machine, access, passwords, hashes, images=images, exercises=exercises,
                          repairable=repairable)

    def check_all(self, room, machines, passwords, on_done=None, *, password_login=False, swarm_passwords=None):
        from .checks import check_hosts

        return check_hosts(room, machines, passwords, on_done=on_done, password_login=password_login,
                           swarm_passwords=swarm_passwords)

    def converge_swarm(self, machines, access, layout, progress):
        from .swarm import converge_swarm

        return converge_swarm(machines, access, layout.managers, progress, layout)

    def release_nodes(self, machines, access, names, progress):
        from .swarm import release_nodes

        return release_nodes(machines, access, names, progress)

    def swarm_status(self, machines, access, layout):
        from .swarm import swarm_status

        return swarm_status(machines, access, layout)

    def routing_mesh(self, machines, access):
        from .swarm.mesh import routing_mesh

        return routing_mesh(machines, access)
