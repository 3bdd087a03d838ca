"""The classroom's state folder: admin key, passwords, creation time, lock.

The engine (or the cloud) is the source of truth for which machines exist; this folder only
keeps what cannot be read back from them: secrets and when the classroom started. Every file is
written atomically and mode 0600, in a folder of mode 0700.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import ClassroomError, ExitCode

KEY_FILE = "admin_key"
ROSTER_FILE = "passwords.json"
META_FILE = "classroom.json"
LOCK_FILE = "lock"


def state_root() -> Path:
    """`$CLASSROOM_HOME`, else `~/.local/state/classroom`: one folder per classroom name below it."""
    env = os.environ.get("CLASSROOM_HOME")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "classroom"


def write_private(path: Path, content: str | bytes) -> None:
    """Write a file atomically with mode 0600 from its first byte (no window where it is readable)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = content.encode() if isinstance(content, str) else content
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class AdminKey:
    private_path: Path
    public_line: str  # "ssh-ed25519 AAAA... classroom-NAME"


class ClassroomState:
    def __init__(self, name: str, root: Path | None = None):
        self.name = name
        self.path = (root or state_root()) / name

    @property
    def exists(self) -> bool:
        return (self.path / META_FILE).exists()

    # --- admin key -------------------------------------------------------------------------
    def admin_key(self) -> AdminKey:
        """The classroom's ed25519 admin key, made on first use."""
        private = self.path / KEY_FILE
        public = self.path / f"{KEY_FILE}.pub"
        if not private.exists():
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

            key = Ed25519PrivateKey.generate()
            pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                    serialization.NoEncryption())
            line = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                 serialization.PublicFormat.OpenSSH).decode()
            write_private(private, pem)
            write_private(public, f"{line} classroom-{self.name}\n")
        return AdminKey(private, public.read_text().strip())

    # --- passwords ---------------------------------------------------------------------------
    def passwords(self, students: list[str]) -> dict[str, str]:
        """Each student's password: generated once, then stable across re-runs."""
        from .passwords import new_password

        path = self.path / ROSTER_FILE
        known: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        missing = [s for s in students if s not in known]
        if missing:
            known.update({s: new_password() for s in missing})
            write_private(path, json.dumps(known, indent=2, sort_keys=True))
        return {s: known[s] for s in students}

    def known_passwords(self) -> dict[str, str]:
        path = self.path / ROSTER_FILE
        return json.loads(path.read_text()) if path.exists() else {}

    # --- metadata ------------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        path = self.path / META_FILE
        return json.loads(path.read_text()) if path.exists() else {}

    def update_meta(self, **values: Any) -> dict[str, Any]:
        meta = self.meta()
        meta.update(values)
        write_private(self.path / META_FILE, json.dumps(meta, indent=2, sort_keys=True, default=str))
        return meta

    def created_at(self) -> datetime:
        meta = self.meta()
        if "created_at" not in meta:
            meta = self.update_meta(created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        return datetime.fromisoformat(meta["created_at"])

    # --- lifecycle -----------------------------------------------------------------------------
    def remove(self) -> None:
        """Forget the classroom: keys and passwords go with the machines."""
        shutil.rmtree(self.path, ignore_errors=True)

    @contextmanager
    def lock(self, command: str, wait: float | None = None) -> Iterator[None]:
        """One changing command per classroom at a time: a second one waits `wait` seconds, then refuses."""
        if wait is None:
            wait = float(os.environ.get("CLASSROOM_LOCK_WAIT", "5"))
        created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock_path = self.path / LOCK_FILE
        lock_path.touch(mode=0o600, exist_ok=True)
        handle = open(lock_path, "a+")
        deadline = time.monotonic() + wait
        try:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        handle.seek(0)
                        holder = handle.read().strip() or "another command"
                        raise ClassroomError(
                            f"classroom {self.name!r} is busy: {holder} is running; try again when it ends",
                            ExitCode.FAILURE,
                        ) from None
                    time.sleep(0.2)
            handle.truncate(0)
            handle.write(f"`classroom {command}` (pid {os.getpid()})")
            handle.flush()
            yield
        finally:
            handle.close()
            if created:
                self._forget_if_only_lock()

    def _forget_if_only_lock(self) -> None:
        """A command refused before it changed anything (bad input, no engine) leaves no folder behind."""
        try:
            if os.listdir(self.path) == [LOCK_FILE]:
                (self.path / LOCK_FILE).unlink()
                self.path.rmdir()
        except OSError:
            pass


def new_secret(nbytes: int = 24) -> str:
    return secrets.token_urlsafe(nbytes)
