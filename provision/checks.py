"""Live checks of hosts, as a student would see them: log in with the password, use Docker."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import paramiko

from .backends.base import Machine
from .ssh import in_parallel, open_with_retry, run, student_connection

if TYPE_CHECKING:
    from .commands import Classroom

CHECK_CONNECT_SECONDS = 8.0


def check_user(machine: Machine, passwords: dict[str, str]) -> str | None:
    """Whom to log in as: the host's student; on a Swarm node, the first student."""
    if machine.student:
        return machine.student if machine.student in passwords else None
    return min(passwords) if passwords else None


def check_host(machine: Machine, passwords: dict[str, str]) -> tuple[dict[str, bool], str | None]:
    checks = {"ssh": False, "docker": False}
    user = check_user(machine, passwords)
    if user is None:
        return checks, "no student account known"
    connection = student_connection(machine, user, passwords[user])
    try:
        open_with_retry(connection, CHECK_CONNECT_SECONDS)
    except paramiko.AuthenticationException:
        return checks, f"{user}'s password is refused"
    except Exception as exc:  # any failure to connect is a failed check, reported per host
        return checks, str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else type(exc).__name__
    try:
        result = run(connection, "id -un; docker info --format '{{.ServerVersion}}'", timeout=30)
        lines = result.stdout.split()
        checks["ssh"] = bool(lines) and lines[0] == user
        checks["docker"] = result.ok and len(lines) >= 2
        detail = None if result.ok else (result.stderr.strip().splitlines() or ["docker failed"])[-1][:200]
        return checks, detail
    finally:
        connection.close()


def check_hosts(room: Classroom, machines: list[Machine], passwords: dict[str, str],
                on_done: Callable[[Machine], None] | None = None) -> dict[str, tuple[dict[str, bool], str | None]]:
    outcomes = in_parallel(
        machines, lambda m: check_host(m, passwords),
        on_done=(lambda m, _r, _e: on_done(m)) if on_done else None,
    )
    results = {}
    for machine, outcome, error in outcomes:
        results[machine.name] = outcome if outcome is not None else (
            {"ssh": False, "docker": False}, str(error)[:200])
    return results
