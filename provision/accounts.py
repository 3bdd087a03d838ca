"""Student accounts on a host, over SSH as the admin.

A host never receives a password: only each student's salted SHA-512 crypt hash, made once on
the trainer's side (passwords.py, state.py), on the session's stdin (`user:hash` lines), to
`chpasswd -e` through shell builtins: never a process argument, an environment variable or a
log line. /etc/shadow itself tells whether an account is right: a re-run that finds the same
hash changes nothing; a student who changed their password (or a new account) gets the hash again.
"""

from __future__ import annotations

from fabric import Connection

from .ssh import check, script_command

def ensure_accounts(connection: Connection, hashes: dict[str, str]) -> list[str]:
    """Make sure each user exists with its password hash; returns what changed, for the report:
    `account student-01` (created) or `password of student-01 restored` (it had another)."""
    lines = "".join(f"{user}:{hashed}\n" for user, hashed in sorted(hashes.items()))
    # Only stdin holds the hashes (scripts/accounts.sh).
    out = check(connection, script_command("accounts.sh"), stdin=lines, what="creating accounts")
    created = {user for verb, _, user in (line.partition(" ") for line in out.splitlines()) if verb == "created"}
    changes = []
    for verb, _, user in (line.partition(" ") for line in out.splitlines()):
        if user not in hashes:  # only the names we sent: the rest of the output is the host's
            continue
        if verb == "created":
            changes.append(f"account {user}")
        elif verb == "password" and user not in created:
            changes.append(f"password of {user} restored")
    return changes
