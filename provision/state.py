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
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import ClassroomError, ExitCode

KEY_FILE = "admin_key"
HOST_KEYS_DIR = "host_keys"  # host_keys/<host>: each host's sshd key, made here, never on the host
KNOWN_HOSTS_FILE = "known_hosts"  # "<host> ssh-ed25519 AAAA..." lines, for `ssh -o HostKeyAlias=<host>`
ROSTER_FILE = "passwords.json"
META_FILE = "classroom.json"
LOCK_FILE = "lock"
_HOST_KEYS_LOCK = threading.Lock()  # hosts are created in parallel: one writer of known_hosts at a time


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


@dataclass(frozen=True)
class HostKey:
    """One host's SSH host key. Made on the trainer's side so that the tool (and students, from
    the fingerprint on their sheet) can tell the real host from a machine in the middle, and so
    that a replaced host (`reset --hard`) comes back with the same identity."""

    host: str
    private_openssh: str  # the ed25519 private key in OpenSSH format: sshd's HostKey file
    public_line: str  # "ssh-ed25519 AAAA..."

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_line)


def fingerprint(public_line: str) -> str:
    """`SHA256:...` of an OpenSSH public key line, as `ssh` prints it when it first meets a host."""
    import base64
    import hashlib

    blob = base64.b64decode(public_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _new_ed25519(comment: str = "") -> tuple[str, str]:
    """A fresh ed25519 key pair: (OpenSSH private key text, public line)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    return private, f"{public} {comment}".strip()


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
            pem, line = _new_ed25519(f"classroom-{self.name}")
            write_private(private, pem)
            write_private(public, f"{line}\n")
        return AdminKey(private, public.read_text().strip())

    # --- host keys -----------------------------------------------------------------------------
    @property
    def known_hosts_path(self) -> Path:
        return self.path / KNOWN_HOSTS_FILE

    def host_key(self, host: str) -> HostKey:
        """`host`'s SSH host key, made on first use and kept until `down`: a host replaced by
        `reset --hard` gets the same one, so nobody sees "REMOTE HOST IDENTIFICATION HAS CHANGED"."""
        private = self.path / HOST_KEYS_DIR / host
        public = private.with_name(f"{host}.pub")
        with _HOST_KEYS_LOCK:
            if not private.exists():
                (self.path / HOST_KEYS_DIR).mkdir(parents=True, exist_ok=True, mode=0o700)
                pem, line = _new_ed25519(host)
                write_private(public, f"{line}\n")
                write_private(private, pem)  # last: its presence means the pair is complete
                self._write_known_hosts()
        return HostKey(host, private.read_text(), " ".join(public.read_text().split()[:2]))

    def host_keys(self) -> dict[str, str]:
        """host name -> public key line, for every host key this classroom has made."""
        folder = self.path / HOST_KEYS_DIR
        if not folder.is_dir():
            return {}
        return {path.stem: " ".join(path.read_text().split()[:2]) for path in sorted(folder.glob("*.pub"))}

    def _write_known_hosts(self) -> None:
        lines = "".join(f"{host} {line}\n" for host, line in self.host_keys().items())
        write_private(self.known_hosts_path, lines)

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
