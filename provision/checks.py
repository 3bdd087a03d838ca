"""Live checks of hosts, as a student would see them, without trusting what a host prints.

One admin session (the classroom's key) per host does the work (scripts/status_host.sh): it
reads the accounts' hashes in /etc/shadow (compared here with the sheet's) and what else a
password login needs (account not expired, a login shell, sshd taking passwords), then runs the
student's part (`id`, Docker, the course's images by ID, their exercises) as the student through
`runuser` with an empty environment, so none of the student's shell start-up files runs (sshd
runs every command through the login shell, and Debian's bash sources ~/.bashrc even for
`ssh host cmd`).

So `ssh` means "the student can log in with the sheet's password" without a password being
sent: `status` costs one session per host. `up` (and only `up`, on each host it changed) also logs
in with the student's password, on that student's own host only and only up to authentication
(no shell): a shared Swarm node, where every student is root through Docker, never receives one.

What comes back is a line protocol: only the expected tokens are read (see `_parse`), the first
of each kind; anything else a host prints is ignored, never shown.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import paramiko
from fabric import Connection

from .model import Machine, Role
from .errors import last_line
from .exercises import EXERCISES_DIR
from .preload import IMAGES_FILE
from .ssh import AdminAccess, HostKeyMismatch, admin_connection, in_parallel, opened, run, script, script_command, \
    student_connection
from .workers import worker_pool

if TYPE_CHECKING:
    from .commands import Classroom

CHECK_CONNECT_SECONDS = 8.0

# The only lines read back, each with exactly these fields.
_LINES = {
    "shadow": re.compile(r"shadow (student-\d+) (\S*)"),
    "whoami": re.compile(r"whoami (\S+)"),
    "docker": re.compile(r"docker (\S+)"),
    "images": re.compile(r"images ([01]) (\d{1,6})"),
    "exercises": re.compile(r"exercises ([01]) (\d{1,6}) (\d{1,6})"),
    "login": re.compile(r"login (student-\d+) (ok|expired|shell|nologin|sshd)"),
}

# Why status_host.sh says a password login cannot work, besides the hash.
_LOGIN_STOPPED = {
    "expired": "{user}'s account has expired",
    "shell": "{user} has no valid login shell",
    "nologin": "/etc/nologin refuses every student's login",
    "sshd": "sshd does not take passwords (PasswordAuthentication)",
}

ADMIN_REFUSED = "the admin key is refused (root's authorized_keys or sshd's configuration changed?): "
# What repairs it: a backend that reaches hosts without SSH (local: the engine) puts it all back.
ADMIN_REPAIR = {True: "`classroom up` repairs it", False: "`classroom reset --hard {host}` replaces the machine"}


def check_user(machine: Machine, hashes: dict[str, str]) -> str | None:
    """Whom the student's part runs as: the host's student; on a Swarm node, the first student."""
    if machine.student:
        return machine.student if machine.student in hashes else None
    return min(hashes) if hashes else None


def check_command(accounts: list[str], user: str | None, *, images: bool, exercises: bool) -> str:
    """Root's part (the accounts' hashes and logins), then the student's part as `user`."""
    return script_command("status_host.sh", script("status_student.sh"), script("engine_images.sh"),
                          IMAGES_FILE if images else "",
                          EXERCISES_DIR if exercises else "", user or "", *accounts)


def _parse(output: str) -> dict[str, list[tuple[str, ...]]]:
    """Every well-formed line by kind, in order; anything else is dropped."""
    found: dict[str, list[tuple[str, ...]]] = {}
    for line in output.splitlines():
        kind = line.split(" ", 1)[0]
        pattern = _LINES.get(kind)
        match = pattern.fullmatch(line) if pattern else None
        if match:
            found.setdefault(kind, []).append(match.groups())
    return found


def check_host(machine: Machine, access: AdminAccess, passwords: dict[str, str], hashes: dict[str, str], *,
               images: bool = False, exercises: bool = False, password_login: bool = False,
               repairable: bool = True, connection: Connection | None = None) -> tuple[dict[str, bool], str | None]:
    """{check: ok} and why not, for one host. `hashes` are the sheet's, as state.py keeps them.
    `password_login`: also log in with the student's password (`up`, after changing hosts).
    `repairable`: whether the backend can put a refused admin key back (Backend.can_repair_access).
    `connection`: an admin session already open on the host (the caller's, which it closes)."""
    checks = {"admin": False, "ssh": False, "docker": False}
    if images:
        checks["images"] = False
    exercises = exercises and machine.role == Role.STUDENT
    if exercises:
        checks["exercises"] = False
    # A student's host or own node: its owner only; a shared Swarm node: every student.
    accounts = [machine.student] if machine.student else sorted(passwords)
    accounts = [a for a in accounts if a in passwords]
    if not accounts:
        return checks, "no student account known"
    details: list[str] = []
    missing = [a for a in accounts if a not in hashes]
    if missing:
        details.append(f"no password hash kept for {', '.join(missing)}: `classroom up` makes it")
    user = check_user(machine, {a: hashes[a] for a in accounts if a in hashes})
    command = check_command(accounts, user, images=images, exercises=exercises)

    fields: dict[str, list[tuple[str, ...]]] | None = None
    can_log_in = machine.student is not None and user is not None  # a shared node never gets a password
    with worker_pool(1) as pool:
        # Proving that sshd takes the sheet's password (no shell opened) runs beside the admin
        # session, so that a host costs one round trip, not two.
        proof = pool.submit(_password_login, machine, access, user, passwords[user]) \
            if password_login and can_log_in else None
        try:
            fields = _parse(_as_admin(machine, access, command, connection))
            checks["admin"] = True
        except HostKeyMismatch as exc:
            return checks, exc.message  # not the host we made: not used (the proof pins the key too)
        except paramiko.AuthenticationException:
            details.append(ADMIN_REFUSED + ADMIN_REPAIR[repairable].format(host=machine.name))
            if proof is None and can_log_in:  # without root's view of /etc/shadow, only a login tells
                proof = pool.submit(_password_login, machine, access, user, passwords[user])
        except Exception as exc:  # any failure to connect is a failed check, reported per host
            return checks, last_line(exc)
        refused = proof.result() if proof is not None else None

    # Passwords: /etc/shadow holds the sheet's hash (read as root, compared here).
    shadow: dict[str, str] = {}
    for account, value in (fields or {}).get("shadow", []):
        shadow.setdefault(account, value)
    unanswered = [a for a in accounts if fields is not None and a not in shadow]
    if unanswered:
        details.append("the host's checks did not answer")
    differs = [a for a in accounts if a in hashes and a in shadow and shadow[a] != hashes[a]]
    if differs:
        absent = [a for a in differs if not shadow.get(a)]
        changed = [a for a in differs if shadow.get(a)]
        if changed:
            details.append(f"password of {', '.join(changed)} differs from the sheet's (changed with passwd?): "
                           "`classroom up` restores it")
        if absent:
            details.append(f"no account {', '.join(absent)}")
    stopped = sorted({(why, account) for account, why in (fields or {}).get("login", [])
                      if account in accounts and account not in differs and why != "ok"})
    details += list(dict.fromkeys(_LOGIN_STOPPED[why].format(user=account) for why, account in stopped))
    passwords_ok = fields is not None and not differs and not missing and not unanswered and not stopped
    if proof is not None and not differs:  # a password that differs was said above already
        if refused is not None:
            details.append(refused)
        passwords_ok = refused is None and not missing and not unanswered and not stopped
    checks["ssh"] = passwords_ok

    if fields is not None and user is not None:
        whoami = fields.get("whoami", [("",)])[0][0]
        docker = fields.get("docker", [("-",)])[0][0]
        checks["docker"] = whoami == user and docker != "-"
        if not checks["docker"]:
            details.append("docker does not answer" if whoami == user else f"cannot run commands as {user}")
        if images:
            present, bad = fields.get("images", [("0", "0")])[0]
            checks["images"] = present == "1" and bad == "0" and checks["docker"]
            if present != "1":
                details.append("images never preloaded")
            elif bad != "0":
                details.append(f"{bad} image(s) missing")
        if exercises:
            present, changed_files, deleted = fields.get("exercises", [("0", "0", "0")])[0]
            checks["exercises"] = present == "1"
            if present != "1":
                details.append("no ~/exercises")
            elif changed_files != "0" or deleted != "0":
                details.append(f"exercises: {changed_files} changed, {deleted} deleted by the student")
    return checks, "; ".join(details) or None


def _as_admin(machine: Machine, access: AdminAccess, command: str, connection: Connection | None = None) -> str:
    if connection is not None:
        return run(connection, command, timeout=60).stdout
    with opened(admin_connection(machine, access), CHECK_CONNECT_SECONDS) as connection:
        return run(connection, command, timeout=60).stdout


def _password_login(machine: Machine, access: AdminAccess, user: str, password: str) -> str | None:
    """None when sshd accepts `user`'s password (host key checked first), else why not."""
    try:
        with opened(student_connection(machine, user, password, access.host_key(machine)), CHECK_CONNECT_SECONDS):
            return None  # authentication only: no channel, no shell
    except paramiko.AuthenticationException:
        return f"{user}'s password is refused"
    except Exception as exc:
        return f"{user}'s password login: {last_line(exc)}"


def check_hosts(room: Classroom, machines: list[Machine], passwords: dict[str, str],
                on_done: Callable[[Machine], None] | None = None, *,
                swarm_passwords: dict[str, str] | None = None,
                ) -> dict[str, tuple[dict[str, bool], str | None]]:
    """check_host on every machine, as many at once as the classroom's `preload.parallel` allows.
    `swarm_passwords`: the students' passwords for the shared Swarm nodes (None: the state's)."""
    if not machines:
        return {}  # nothing to check: and no admin key made for a classroom that does not exist
    images = bool(room.config.images)
    exercises = room.config.exercises is not None
    access = room.admin_access()
    hashes = room.state.known_password_hashes()
    if swarm_passwords is None:
        swarm_passwords = room.state.known_passwords(swarm=True) if any(m.is_shared_node for m in machines) \
            else {}
    swarm_hashes = room.state.known_password_hashes(swarm=True)

    def check_one(machine: Machine) -> tuple[dict[str, bool], str | None]:
        own = not machine.is_shared_node  # a student's host or one of their own nodes
        return check_host(machine, access, passwords if own else swarm_passwords, hashes if own else swarm_hashes,
                          images=images, exercises=exercises,
                          repairable=room.backend.can_repair_access)

    outcomes = in_parallel(
        machines, check_one,
        limit=room.config.preload.parallel,
        on_done=(lambda m, _r, _e: on_done(m)) if on_done else None,
    )
    results = {}
    for machine, outcome, error in outcomes:
        results[machine.name] = outcome if outcome is not None else (
            {"admin": False, "ssh": False, "docker": False}, last_line(error))
    return results
