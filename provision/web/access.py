"""Who is asking, and how much they may ask.

- A student's session comes from their sheet's password (or a seat claimed with the class code);
  a trainer's from the admin token, which `classroom web` prints inside the trainer URL. Both are
  random tokens kept in memory only: a restarted server signs everyone out.
- The admin token and the class code live in the state folder (0600), so the trainer's bookmark
  and the code on the board survive a restart.
- Every state-changing request carries the session's CSRF token in a header (double submit: a
  page of another site can neither read it nor set the header), on top of SameSite=Strict cookies.
- Failed sign-ins are counted per address; past LOGIN_FAILURES within LOGIN_WINDOW seconds that
  address waits.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..state import write_private

TOKEN_FILE = "web_token"
CLASS_CODE_FILE = "web_class_code"
SESSION_SECONDS = 12 * 3600
LOGIN_FAILURES = 5
LOGIN_WINDOW = 60.0
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # nothing to misread on a projector (no O/0, I/1)


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison: how long it takes says nothing of how much matched."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def kept_secret(path: Path, make: Callable[[], str]) -> str:
    """The secret in `path` (0600), made and written the first time."""
    try:
        value = path.read_text(encoding="utf-8").strip()
        if value:
            return value
    except FileNotFoundError:
        pass
    value = make()
    write_private(path, value + "\n")
    return value


def admin_token(state_dir: Path) -> str:
    return kept_secret(state_dir / TOKEN_FILE, lambda: secrets.token_urlsafe(32))


def class_code(state_dir: Path) -> str:
    return kept_secret(state_dir / CLASS_CODE_FILE, lambda: "".join(secrets.choice(CODE_ALPHABET) for _ in range(8)))


@dataclass
class Session:
    token: str
    csrf: str
    student: str | None = None
    trainer: bool = False
    expires: float = field(default_factory=lambda: time.monotonic() + SESSION_SECONDS)


class Sessions:
    """The signed-in browsers, by cookie token."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._sessions: dict[str, Session] = {}
        self._clock = clock
        self._lock = threading.Lock()

    def new(self, *, student: str | None = None, trainer: bool = False) -> Session:
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(24), student, trainer,
                          self._clock() + SESSION_SECONDS)
        with self._lock:
            self._sessions[session.token] = session
        return session

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        with self._lock:
            session = self._sessions.get(token)
            if session is not None and session.expires < self._clock():
                del self._sessions[token]
                return None
            return session

    def drop(self, token: str | None) -> None:
        with self._lock:
            self._sessions.pop(token or "", None)


class LoginLimiter:
    """Failed sign-ins (wrong password, unknown student, wrong class code) per address."""

    def __init__(self, failures: int = LOGIN_FAILURES, window: float = LOGIN_WINDOW,
                 clock: Callable[[], float] = time.monotonic):
        self.failures, self.window, self._clock = failures, window, clock
        self._seen: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def wait_seconds(self, address: str) -> int:
        """0 when `address` may try now, else how long before it may."""
        now = self._clock()
        with self._lock:
            recent = [t for t in self._seen.get(address, []) if t > now - self.window]
            self._seen[address] = recent
            if len(recent) < self.failures:
                return 0
            return max(1, int(recent[0] + self.window - now + 0.999))

    def failed(self, address: str) -> None:
        with self._lock:
            self._seen.setdefault(address, []).append(self._clock())

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._seen.pop(address, None)
