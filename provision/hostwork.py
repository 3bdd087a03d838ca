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
    def provision_and_check(self, machine: Machine, hashes: dict[str, str], access: AdminAccess, course: Course,
                            backend: Backend, passwords: dict[str, str], *, fresh_exercises: bool = False,
                            new_host: bool = False, wipe: str | None = None, keep_home: bool = False,
                            keep_swarm: bool = False, password_login: bool = False,
                            repairable: bool = True) -> tuple[list[str], Checks]:
        """Converge one host (engine, accounts, images, exercises), then check it as its student
        sees it as soon as it is provisioned (`up`, `reset`), on one session: what changed, and
        the checks. `new_host`: made by this run (nothing on it
        to compare with: the course's images may go to it before its SSH answers). `wipe`: the
        student whose things go first (soft reset: the engine as the course has it, the student's
        containers, volumes, networks, other images and home folder gone; `keep_home`: but their
        home folder; `keep_swarm`: still in the student's own cluster). `password_login`: when
        provisioning changed the host, also log in with the student's password for real, not
        only compare hashes (a host that needed nothing is checked as `status` checks it)."""

    def clean_swarm(self, cluster: list[Machine], access: AdminAccess, backend: Backend) -> list[str]:
        """A student's own cluster: its services, stacks, secrets and configs gone (from its first
        node that is a manager); what was done."""

    def check_all(self, room: Classroom, machines: list[Machine], passwords: dict[str, str],
                  on_done: Callable[[Machine], None] | None = None, *,
                  swarm_passwords: dict[str, str] | None = None) -> dict[str, Checks]:
        """Every host, checked at once (`status`): host name -> checks."""

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

    def provision_and_check(self, machine, hashes, access, course, backend, passwords, *, fresh_exercises=False,
                            new_host=False, wipe=None, keep_home=False, keep_swarm=False, password_login=False,
                            repairable=True):
        from .checks import check_host
        from .provisioning import provision_host
        from .reset import wipe_student

        checked: list[Checks] = []

        def check(session, changes: list[str]) -> None:  # on the session that provisioned: one handshake less
            checked.append(check_host(machine, access, passwords, hashes, images=bool(course.images),
                                      exercises=course.exercises is not None,
                                      password_login=password_login and bool(changes),
                                      repairable=repairable, connection=session))

        changes = provision_host(machine, hashes, access, course, backend, fresh_exercises=fresh_exercises,
                                 new_host=new_host, then=check,
                                 first=None if wipe is None else lambda session: wipe_student(
                                     session, wipe, keep_home=keep_home, keep_swarm=keep_swarm))
        return changes, checked[0]

    def clean_swarm(self, cluster, access, backend):
        from .provisioning import admin_session
        from .reset import clean_swarm

        for machine in (m for m in cluster if m.running):
            with admin_session(machine, access, backend) as connection:
                if clean_swarm(connection):
                    return [f"Swarm services, secrets and configs removed (from {machine.name})"]
        return []

    def check_all(self, room, machines, passwords, on_done=None, *, swarm_passwords=None):
        from .checks import check_hosts

        return check_hosts(room, machines, passwords, on_done=on_done, swarm_passwords=swarm_passwords)

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
