"""Provisioning over SSH, the same for every backend: engine up, accounts, (later) course files.

One host's failure never stops the others: each host gets a report, and the caller decides
the exit code from them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .accounts import ensure_accounts
from .backends.base import Machine
from .ssh import admin_connection, check, in_parallel, open_with_retry

if TYPE_CHECKING:
    from .commands import Classroom, HostReport

START_DOCKER = "/usr/local/sbin/classroom-start-docker"


def accounts_for(machine: Machine, passwords: dict[str, str]) -> dict[str, str]:
    """A student host has its student; a Swarm node has every student."""
    if machine.role == "student":
        return {machine.student: passwords[machine.student]} if machine.student in passwords else {}
    return dict(passwords)


def provision_host(machine: Machine, passwords: dict[str, str], key_path: Path) -> list[str]:
    """Converge one host; returns what changed (empty when it was already right)."""
    connection = open_with_retry(admin_connection(machine, str(key_path)))
    try:
        changes = []
        if check(connection, f"docker info >/dev/null 2>&1 && echo up || {{ {START_DOCKER} && echo started; }}",
                 what="starting Docker").strip() == "started":
            changes.append("docker engine started")
        changes += [f"account {user}" for user in ensure_accounts(connection, accounts_for(machine, passwords))]
        return changes
    finally:
        connection.close()


def provision_hosts(room: Classroom, machines: list[Machine], passwords: dict[str, str],
                    key_path: Path) -> list[HostReport]:
    from .checks import check_hosts
    from .commands import HostReport

    progress = room.progress
    running = [m for m in machines if m.running]
    progress.start("provision", f"Provisioning {len(running)} host(s) over SSH", total=len(running))
    outcomes = in_parallel(running, lambda m: provision_host(m, passwords, key_path),
                           on_done=lambda m, _r, _e: progress.advance("provision", detail=m.name))
    progress.finish("provision")

    progress.start("verify", "Checking every host as its students", total=len(running))
    verified = check_hosts(room, running, passwords,
                           on_done=lambda m: progress.advance("verify", detail=m.name))
    progress.finish("verify")

    reports = []
    for machine, changes, error in outcomes:
        checks, detail = verified.get(machine.name, ({}, None))
        if error is None and not all(checks.values()):
            failing = ", ".join(name for name, ok in checks.items() if not ok)
            error = RuntimeError(f"check failed: {failing}" + (f" ({detail})" if detail else ""))
        reports.append(HostReport(machine.name, machine.role, machine.public_host, machine.public_port,
                                  ok=error is None, error=None if error is None else _reason(error),
                                  changes=changes or []))
    for machine in machines:
        if not machine.running:
            reports.append(HostReport(machine.name, machine.role, machine.public_host, machine.public_port,
                                      ok=False, error=f"machine is {machine.state}"))
    return reports


def _reason(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[-1] if text else type(error).__name__)[:200]
