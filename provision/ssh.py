"""SSH sessions with Fabric: the admin's (key) and a student's (password), with retries.

Everything after the backend runs through here, so the local backend's tests exercise the same
code that runs against cloud hosts.
"""

from __future__ import annotations

import base64
import functools
import logging
import shlex
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TypeVar

import paramiko
from fabric import Config, Connection

from .model import Machine
from .errors import ClassroomError, last_line
from .untrusted import clean
from .workers import PARALLEL, worker_pool

T = TypeVar("T")
R = TypeVar("R")

CONNECT_RETRY_SECONDS = 90.0  # fresh hosts (and cloud-init) take a while before sshd answers
ALIVE_CHECK_SECONDS = 5.0  # while retrying, how often to ask the backend whether the machine still runs (a cloud API call)

# A fresh sshd accepts then drops connections; paramiko logs a traceback for each attempt.
logging.getLogger("paramiko").setLevel(logging.CRITICAL)

_RETRYABLE = (paramiko.SSHException, EOFError, socket.error, ConnectionError, TimeoutError)


class RemoteError(ClassroomError):
    """A command failed on a host; the message names the host and the command's last words.

    Those words are the host's: cleaned of terminal control here, whoever built the message."""

    def __init__(self, message: str, exit_code=None):
        super().__init__(clean(message), exit_code)


class HostKeyMismatch(RemoteError):
    """The host answered with another key than the one this classroom made for it: not used."""


@dataclass(frozen=True)
class AdminAccess:
    """What the tool needs to log into the classroom's hosts: its key, and each host's pinned
    public host key (host name -> "ssh-ed25519 AAAA..."). Nothing connects without the latter."""

    key_path: Path
    host_keys: Mapping[str, str]
    public_line: str = ""  # the key's public half: what a backend puts back when a student removed it

    def host_key(self, machine: Machine) -> str:
        try:
            return self.host_keys[machine.name]
        except KeyError:
            raise HostKeyMismatch(f"{machine.name}: no host key is known for it in this classroom's "
                                  "state folder: `classroom up` gives it one") from None


@dataclass(frozen=True)
class Result:
    ok: bool
    stdout: str
    stderr: str
    exit_code: int


def _config() -> Config:
    # Never read the trainer's ~/.ssh/config: a Host * entry there must not change our sessions.
    return Config(overrides={"load_ssh_configs": False, "run": {"hide": True, "warn": True}})


def admin_connection(machine: Machine, access: AdminAccess) -> Connection:
    connection = Connection(
        machine.ssh_host, port=machine.ssh_port, user=machine.admin_user, config=_config(),
        connect_timeout=10,
        connect_kwargs={"key_filename": str(access.key_path), "look_for_keys": False, "allow_agent": False,
                        "banner_timeout": 15, "auth_timeout": 15},
    )
    return pin_host_key(connection, machine, access.host_key(machine))


def student_connection(machine: Machine, user: str, password: str, host_key: str) -> Connection:
    connection = Connection(
        machine.ssh_host, port=machine.ssh_port, user=user, config=_config(), connect_timeout=10,
        connect_kwargs={"password": password, "look_for_keys": False, "allow_agent": False,
                        "banner_timeout": 15, "auth_timeout": 15},
    )
    return pin_host_key(connection, machine, host_key)


def pin_host_key(connection: Connection, machine: Machine, public_line: str) -> Connection:
    """Accept only `public_line` from this host: Fabric's default (AutoAddPolicy) would hand a
    password to whoever answers. The key is filed under the address and port we dial, which is
    what paramiko looks up; an address that changes (a replaced cloud host) keeps its key."""
    kind, blob = public_line.split()[:2]
    key = paramiko.PKey.from_type_string(kind, base64.b64decode(blob))
    name = machine.ssh_host if machine.ssh_port == 22 else f"[{machine.ssh_host}]:{machine.ssh_port}"
    client = connection.client
    client.get_host_keys().clear()
    client.get_host_keys().add(name, kind, key)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return connection


def open_with_retry(connection: Connection, deadline_seconds: float = CONNECT_RETRY_SECONDS,
                    gone: Callable[[], str | None] | None = None) -> Connection:
    """Open the session, retrying with backoff while sshd is still starting.

    A refused password is not retried: that is an answer, not a hiccup. `gone()` says why the
    machine cannot answer any more (None while it runs): asked every few seconds while retrying,
    so a host killed meanwhile fails now rather than after the whole deadline.
    """
    deadline = time.monotonic() + deadline_seconds
    next_look = time.monotonic() + ALIVE_CHECK_SECONDS
    delay = 0.2
    while True:
        try:
            connection.open()
            return connection
        except paramiko.AuthenticationException:
            raise
        except paramiko.BadHostKeyException as exc:  # an answer, and a serious one: never retried
            raise HostKeyMismatch(
                f"{connection.host}:{connection.port}: the host key is not the one this classroom gave the host "
                f"(got {exc.key.get_name()} {exc.key.fingerprint}, expected {exc.expected_key.fingerprint}): "
                "not used. `classroom reset --hard` replaces a host that lost its key") from None
        except _RETRYABLE as exc:
            if time.monotonic() + delay > deadline:
                raise RemoteError(f"{connection.host}:{connection.port}: SSH does not answer ({last_line(exc)})") \
                    from None
            if gone is not None and time.monotonic() >= next_look:
                next_look = time.monotonic() + ALIVE_CHECK_SECONDS
                reason = gone()
                if reason:
                    raise RemoteError(f"{reason} while waiting for SSH") from None
            time.sleep(delay)
            delay = min(delay * 1.6, 3.0)


@contextmanager
def opened(connection: Connection, deadline_seconds: float = CONNECT_RETRY_SECONDS,
           gone: Callable[[], str | None] | None = None) -> Iterator[Connection]:
    """`with opened(admin_connection(machine, access)) as connection:` the session, opened as
    `open_with_retry` does, and closed whatever happens in the block (or while opening)."""
    try:
        yield open_with_retry(connection, deadline_seconds, gone=gone)
    finally:
        connection.close()


def run(connection: Connection, command: str, *, stdin: str | None = None, timeout: int = 300) -> Result:
    """Run a command; `stdin` (secrets) goes through the channel, never the command line."""
    return _run_on_channel(connection, command, stdin or "", timeout)


def _run_on_channel(connection: Connection, command: str, stdin: str, timeout: int) -> Result:
    """Run on a raw channel of the Fabric connection's transport, stdin in one write.

    invoke's runner (behind `Connection.run`) reads `in_stream` one character at a time with a
    10 ms pause between reads (a 400-byte manifest took 5 s), and its I/O threads add about
    60 ms to every command: `status` runs one command on each of 30 hosts within 2 s.
    """
    connection.open()
    channel = connection.transport.open_session()
    try:
        channel.settimeout(timeout)
        channel.exec_command(command)
        errors: list[bytes] = []
        reader = threading.Thread(target=lambda: errors.append(channel.makefile_stderr("rb").read()), daemon=True)
        reader.start()
        if stdin:
            channel.sendall(stdin.encode())
        channel.shutdown_write()
        out = channel.makefile("rb").read()
        reader.join(timeout)
        code = channel.recv_exit_status()
    finally:
        channel.close()
    decode = lambda data: data.decode("utf-8", "replace")  # noqa: E731
    return Result(code == 0, decode(out), decode(b"".join(errors)), code)


def check(connection: Connection, command: str, *, stdin: str | None = None, what: str = "",
          timeout: int = 300) -> str:
    """Run a command that must succeed; its stdout, else a RemoteError naming what failed."""
    result = run(connection, command, stdin=stdin, timeout=timeout)
    if not result.ok:
        detail = last_line(result.stderr or result.stdout) or f"exit {result.exit_code}"
        raise RemoteError(f"{what or command.split()[0]} failed: {detail}")
    return result.stdout


@functools.cache
def script(name: str) -> str:
    """A shell script run on hosts, from the package's scripts/ folder (the tests run shellcheck on each)."""
    return resources.files(__package__).joinpath("scripts", name).read_text()


def script_command(name: str, *args: str) -> str:
    """The command that runs script `name` with `args` as its $1, $2…: paths and names, never a
    secret (secrets go on stdin, see `run`)."""
    return shlex.join(["sh", "-c", script(name), name, *args])


def in_parallel(items: Iterable[T], work: Callable[[T], R], limit: int = PARALLEL,
                on_done: Callable[[T, R | None, BaseException | None], None] | None = None,
                ) -> list[tuple[T, R | None, BaseException | None]]:
    """Run `work` on every item with at most `limit` at once (workers.py: the classroom file's
    `preload.parallel` where a classroom is known); one failure never stops the others."""
    items = list(items)
    results: list[tuple[T, R | None, BaseException | None]] = []

    def guarded(item: T) -> tuple[T, R | None, BaseException | None]:
        try:
            outcome = (item, work(item), None)
        except Exception as exc:  # reported per host by the caller
            outcome = (item, None, exc)
        if on_done:
            on_done(*outcome)
        return outcome

    if not items:
        return results
    with worker_pool(len(items), limit) as pool:
        results = list(pool.map(guarded, items))
    return results
