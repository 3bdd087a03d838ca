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
from datetime import datetime, timezone
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_serializer, field_validator

from .errors import BadInput, ClassroomError, ExitCode
from .model import Role

KEY_FILE = "admin_key"
HOST_KEYS_DIR = "host_keys"  # host_keys/<host>: each host's sshd key, made here, never on the host
KNOWN_HOSTS_FILE = "known_hosts"  # "<host> ssh-ed25519 AAAA..." lines, for `ssh -o HostKeyAlias=<host>`
ROSTER_FILE = "passwords.json"
HASHES_FILE = "password_hashes.json"  # student -> SHA-512 crypt hash: all that hosts ever receive
# Each student's password for the shared Swarm nodes only, with its hashes. Every student is root
# there (docker group) and can capture what is typed at login, so it must not open their own host.
SWARM_ROSTER_FILE = "swarm_passwords.json"
SWARM_HASHES_FILE = "swarm_password_hashes.json"
# Which students' kept hashes were last found to match their passwords, with the size, mtime and
# inode of both files then: while neither file changed, no hash is checked again (44 ms of CPU each
# at 20 000 rounds: 1.3 s of every `up` of 30 students, more under load). Nothing password-derived.
CHECKED_SUFFIX = ".checked"
META_FILE = "classroom.json"
LOCK_FILE = "lock"
_HOST_KEYS_LOCK = threading.Lock()  # hosts are created in parallel: one writer of known_hosts at a time

# What a trainer can do about each state file when it is damaged: `down` never needs them.
RECOVERY = {
    META_FILE: "`classroom down` still removes the classroom; or restore the file",
    ROSTER_FILE: "restore the file, or `classroom up --new-secrets` gives every student a new password "
                 "(the printed sheets become void); `classroom down` still removes the classroom",
    SWARM_ROSTER_FILE: "restore the file, or `classroom up --new-secrets` gives every student a new Swarm "
                       "password (the printed sheets become void); `classroom down` still removes the classroom",
}


def _password_files(swarm: bool) -> tuple[str, str]:
    """(passwords file, hashes file): the students' own hosts', or the shared Swarm nodes'."""
    return (SWARM_ROSTER_FILE, SWARM_HASHES_FILE) if swarm else (ROSTER_FILE, HASHES_FILE)


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


def read_state_json(path: Path, default: dict[str, Any], *, salvage: bool = False) -> dict[str, Any]:
    """A JSON state file as a dict; `default` when it does not exist. A damaged one (truncated,
    edited by hand) is a BadInput naming the file and the way out, never a JSONDecodeError;
    `salvage=True` (down) reads it as `default` instead, so that nothing blocks the removal."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return dict(default)
    except (OSError, UnicodeDecodeError) as exc:
        problem = f"cannot be read: {exc.strerror or type(exc).__name__}" if isinstance(exc, OSError) \
            else "not valid UTF-8"
    else:
        try:
            value = json.loads(text)
            problem = "" if isinstance(value, dict) else "not a JSON object"
        except ValueError:
            problem = "not valid JSON"
        if not problem:
            return value
    if salvage:
        return dict(default)
    way_out = RECOVERY.get(path.name, "`classroom down` still removes the classroom; or restore the file")
    raise BadInput(f"{path} is damaged ({problem}): {way_out}")


class _Record(BaseModel):
    # Keys a newer version wrote are kept as they are; a key never written stays absent (the
    # file is written with exclude_unset), so the JSON on disk keeps its shape across versions.
    model_config = ConfigDict(extra="allow")


class CourseRecord(_Record):
    """What `up` made the classroom from: reset, status and sheets refuse another course."""

    file: str | None = None  # the classroom file; None: built-in defaults
    digest: str | None = None  # of its bytes


class AwsHost(_Record):
    name: str
    role: Role
    student: str | None = None


class AwsRecord(_Record):
    """The aws backend's part of classroom.json: where its stack lives and what it asked for."""

    region: str | None = None
    hosts: list[AwsHost] = []
    expires_at: str | None = None  # as the hosts' expires-at tag says it
    ami: str | None = None
    availability_zone: str | None = None
    instance_type: str | None = None
    disk_gb: int | None = None
    started_at: str | None = None


class ClassroomMeta(_Record):
    """classroom.json: what cannot be read back from the machines. Parsed once, when read."""

    backend: str | None = None  # where the classroom was created: it stays there until `down`
    students: int | None = None  # the counts the last `up` asked for (never shrinking)
    swarm_nodes: int | None = None
    routing_mesh: bool | None = None  # whether the hosts' kernel has IPVS (Swarm's routing mesh); None: not asked
    created_at: str | None = None
    expires_at: datetime | None = None
    course: CourseRecord | None = None
    cache: list[str] = []  # cached files (images, exercises) its `up`s used
    aws: AwsRecord | None = None

    @field_validator("expires_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return value.astimezone(timezone.utc) if value is not None and value.tzinfo is not None else value

    @field_serializer("expires_at")
    def _seconds(self, value: datetime | None) -> str | None:
        return value.isoformat(timespec="seconds") if value is not None else None

    def as_json(self) -> str:
        return json.dumps(self.model_dump(mode="json", exclude_unset=True), indent=2, sort_keys=True)


def parse_meta(path: Path, *, salvage: bool = False) -> ClassroomMeta:
    """classroom.json as a ClassroomMeta: empty when missing; a damaged one is a BadInput naming
    the file (read_state_json), or empty with `salvage`."""
    data = read_state_json(path, {}, salvage=salvage)
    try:
        return ClassroomMeta.model_validate(data)
    except ValidationError as exc:
        if salvage:
            return ClassroomMeta()
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise BadInput(f"{path} is damaged ({where}: {error['msg']}): {RECOVERY[META_FILE]}") from None


@dataclass(frozen=True)
class LostSecrets:
    """Secrets of hosts that exist but are gone from the state folder. Made anew silently, they
    would lock the tool out (admin key, host keys) or void the printed sheets (passwords)."""

    admin_key: bool = False
    passwords: tuple[str, ...] = ()  # students whose host exists
    host_keys: tuple[str, ...] = ()  # hosts that exist without their pinned key
    swarm_passwords: bool = False  # Swarm nodes exist, but not the students' passwords for them

    def __bool__(self) -> bool:
        return self.admin_key or bool(self.passwords) or bool(self.host_keys) or self.swarm_passwords

    def describe(self) -> str:
        parts = [f"the admin key file {KEY_FILE}"] if self.admin_key else []
        if self.passwords:
            parts.append(f"the passwords of {_names(self.passwords)}")
        if self.swarm_passwords:
            parts.append("the students' Swarm passwords")
        if self.host_keys:
            parts.append(f"the host keys of {_names(self.host_keys)}")
        return ", ".join(parts)


def _names(names: tuple[str, ...], shown: int = 3) -> str:
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


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


def key_pair_problem(private: Path, public: Path) -> str:
    """Why an OpenSSH key pair in the state folder cannot be used ("" when it can): a file that
    exists but is empty, truncated or not the pair of the other is as lost as a deleted one."""
    from cryptography.hazmat.primitives import serialization

    if not (private.exists() and public.exists()):
        return "missing"
    try:
        key = serialization.load_ssh_private_key(private.read_bytes(), password=None)
        mine = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        kept = public.read_text(encoding="utf-8").split()[:2]
    except (ValueError, TypeError, OSError, UnicodeDecodeError, AttributeError):
        return "damaged (not a readable OpenSSH private key)"
    if mine.decode() != " ".join(kept):
        return f"damaged (it is not the pair of {public.name})"
    return ""


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
        # `down` sets it: a damaged file then reads as empty rather than stopping the removal.
        self.salvage = False

    @property
    def exists(self) -> bool:
        return (self.path / META_FILE).exists()

    # --- admin key -------------------------------------------------------------------------
    def admin_key(self, create: bool = False) -> AdminKey:
        """The classroom's ed25519 admin key. Only `up` makes one (`create`), after checking that
        no host still trusts a lost one (`lost_secrets`); any other command refuses without it."""
        private = self.path / KEY_FILE
        public = self.path / f"{KEY_FILE}.pub"
        problem = key_pair_problem(private, public)
        if problem:
            if not create:
                raise BadInput(f"{private} is {problem}: the tool cannot log into the classroom's hosts without it; "
                               "restore it, or `classroom up --new-secrets` installs a new one (local backend); "
                               "`classroom down` still removes the classroom")
            pem, line = _new_ed25519(f"classroom-{self.name}")
            write_private(private, pem)
            write_private(public, f"{line}\n")
        return AdminKey(private, public.read_text().strip())

    def lost_secrets(self, hosts: list[str], students: list[str], swarm_nodes: bool = False) -> LostSecrets:
        """What of the secrets of existing `hosts` (whose own students are `students`; `swarm_nodes`:
        some of them are Swarm nodes, which have every student's Swarm password) is gone."""
        if not hosts:
            return LostSecrets()
        admin_lost = bool(key_pair_problem(self.path / KEY_FILE, self.path / f"{KEY_FILE}.pub"))
        known = read_state_json(self.path / ROSTER_FILE, {}, salvage=True)  # damaged: all lost
        lost_passwords = tuple(s for s in students if s not in known)
        # Which students have an account on the nodes only the nodes know: an empty file is a lost one.
        swarm_lost = swarm_nodes and not read_state_json(self.path / SWARM_ROSTER_FILE, {}, salvage=True)
        return LostSecrets(admin_lost, lost_passwords, self.lost_host_keys(hosts), swarm_lost)

    def lost_host_keys(self, hosts: list[str]) -> tuple[str, ...]:
        """The `hosts` whose pinned host key is missing or damaged (an emptied file counts)."""
        folder = self.path / HOST_KEYS_DIR
        return tuple(h for h in hosts if key_pair_problem(folder / h, folder / f"{h}.pub"))

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
            if key_pair_problem(private, public):  # callers refuse a lost one first (lost_secrets)
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
    def passwords(self, students: list[str], *, replace_damaged: bool = False,
                  swarm: bool = False) -> dict[str, str]:
        """Each student's password: generated once, then stable across re-runs. `replace_damaged`
        (`up --new-secrets`): a damaged file is replaced rather than refused. `swarm`: the
        passwords for the shared Swarm nodes, never the ones of the students' own hosts."""
        from .passwords import new_password

        path = self.path / _password_files(swarm)[0]
        known = read_state_json(path, {}, salvage=replace_damaged)
        missing = [s for s in students if s not in known]
        if missing:
            known.update({s: new_password() for s in missing})
            write_private(path, json.dumps(known, indent=2, sort_keys=True))
        return {s: known[s] for s in students}

    def known_passwords(self, *, missing_ok: bool = False, swarm: bool = False) -> dict[str, str]:
        """The students' passwords (`swarm`: those of the shared Swarm nodes). A missing file of a
        classroom that has students is as lost as a damaged one: named, with the way out, never an
        empty roster. `missing_ok` (up, extend): the caller deals with lost passwords itself."""
        path = self.path / _password_files(swarm)[0]
        if not (missing_ok or swarm or self.salvage or path.exists()) and self.salvaged_meta().students:
            raise BadInput(f"{path} is missing: the students' passwords cannot be read back; {RECOVERY[ROSTER_FILE]}")
        return read_state_json(path, {}, salvage=self.salvage)

    def password_hashes(self, passwords: dict[str, str], swarm: bool = False) -> dict[str, str]:
        """Each student's crypt hash (passwords.py), made once and kept: hosts compare it with
        /etc/shadow as a string, so a stable salt is what makes a re-run change nothing. A kept
        hash that no longer matches its password (passwords.json edited) is made anew."""
        from .passwords import crypt_hash, hash_matches

        known = self.known_password_hashes(swarm)
        on_file = read_state_json(self.path / _password_files(swarm)[0], {}, salvage=True)
        as_on_file = {s for s, password in passwords.items() if on_file.get(s) == password}
        memo = self._hashes_checked(swarm)
        checked = memo & as_on_file
        fresh = {student: crypt_hash(password) for student, password in passwords.items()
                 if student not in known or (student not in checked and not hash_matches(password, known[student]))}
        if fresh:
            known.update(fresh)
            write_private(self.path / _password_files(swarm)[1], json.dumps(known, indent=2, sort_keys=True))
        if fresh or not as_on_file <= checked:
            self._mark_hashes_checked(swarm, (memo - set(passwords)) | as_on_file)
        return {student: known[student] for student in passwords}

    def _hash_files_stamp(self, swarm: bool) -> list[list[int]]:
        stamps = []
        for name in _password_files(swarm):
            try:
                info = (self.path / name).stat()
            except FileNotFoundError:
                return []
            stamps.append([info.st_size, info.st_mtime_ns, info.st_ino])
        return stamps

    def _hashes_checked(self, swarm: bool) -> set[str]:
        """The students whose kept hash matched their password when neither password file has
        changed since (the caller still compares the passwords it was given with the file's)."""
        memo = read_state_json(self.path / (_password_files(swarm)[1] + CHECKED_SUFFIX), {}, salvage=True)
        stamp = self._hash_files_stamp(swarm)
        students = memo.get("students") if isinstance(memo, dict) else None
        if not stamp or memo.get("stamp") != stamp or not isinstance(students, list):
            return set()
        return {s for s in students if isinstance(s, str)}

    def _mark_hashes_checked(self, swarm: bool, students: set[str]) -> None:
        write_private(self.path / (_password_files(swarm)[1] + CHECKED_SUFFIX),
                      json.dumps({"stamp": self._hash_files_stamp(swarm), "students": sorted(students)}))

    def known_password_hashes(self, swarm: bool = False) -> dict[str, str]:
        """The hashes kept so far (read only: `status` never writes). Made from the passwords, so
        a damaged file is nothing to refuse: its hashes are made again by the next `up`."""
        hashes = read_state_json(self.path / _password_files(swarm)[1], {}, salvage=True)
        return {student: hashed for student, hashed in hashes.items() if isinstance(hashed, str)}

    # --- metadata ------------------------------------------------------------------------------
    def meta(self) -> ClassroomMeta:
        return parse_meta(self.path / META_FILE, salvage=self.salvage)

    def salvaged_meta(self) -> ClassroomMeta:
        """The metadata, or an empty one when its file is damaged: for looking at other classrooms."""
        return parse_meta(self.path / META_FILE, salvage=True)

    def update_meta(self, **values: Any) -> ClassroomMeta:
        """Set these fields (validated as ClassroomMeta's) and write the file."""
        meta = ClassroomMeta.model_validate({**self.meta().model_dump(exclude_unset=True), **values})
        write_private(self.path / META_FILE, meta.as_json())
        return meta

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
