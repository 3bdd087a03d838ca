"""The same tools on every host, over SSH as the admin: both spellings of Compose, and sudo.

Local hosts have Debian's Compose v1 (`docker-compose`), aws hosts Docker's Compose plugin
(`docker compose`); the course uses both, so each host gets a small shim for the one it lacks
(scripts/compose_plugin.sh, scripts/compose_v1.sh: nothing downloaded). A student may `sudo`
on their own host with their own password (`students_sudo`, default true): they are root there
through Docker anyway, and the course needs it (`touch /var/lib/docker/volumes/...`). Never on a
shared Swarm node.
"""

from __future__ import annotations

from fabric import Connection

from .model import Machine, Role
from .ssh import check, script, script_command


def sudo_arguments(machine: Machine, students_sudo: bool) -> tuple[str, str]:
    """host_tools.sh's $1 and $2: the host's own student (none on a Swarm node) and whether they may sudo."""
    student = machine.student if machine.role == Role.STUDENT and machine.student else ""
    return student, "sudo" if students_sudo and student else "nosudo"


def ensure_host_tools(connection: Connection, machine: Machine, students_sudo: bool) -> list[str]:
    """Install what is missing, withdraw sudo where it is not wanted; returns what changed."""
    student, sudo = sudo_arguments(machine, students_sudo)
    out = check(connection, script_command("host_tools.sh", student, sudo, script("compose_plugin.sh"),
                                           script("compose_v1.sh")), what="installing Compose and sudo")
    return [line for line in out.splitlines() if line.startswith(("installed /", "sudo "))]
