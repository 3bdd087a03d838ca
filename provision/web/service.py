"""What the web application asks of the classroom: the core's own commands (the same data as the
CLI's --json), run in worker threads so that the event loop keeps serving terminals meanwhile.

The dashboard refreshes every few seconds in every trainer tab: `status` and `progress` open a
session on every host, so one answer serves every request made within a few seconds, and
requests that arrive while one is being computed wait for it rather than start another.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .. import commands
from ..errors import BadInput, ClassroomError
from ..model import Machine, Role
from ..roster import resolve_host
from .errors import WebError

ROSTER_SECONDS = 3.0
STATUS_SECONDS = 5.0
PROGRESS_SECONDS = 10.0


class Shared:
    """One value computed in a worker thread, reused for `seconds`, computed once at a time."""

    def __init__(self, service: ClassroomService, seconds: float, load: Callable[[], Any]):
        self._service, self.seconds, self._load = service, seconds, load
        self._value: Any = None
        self._at: float | None = None
        self._pending: asyncio.Future | None = None

    async def get(self) -> Any:
        if self._at is not None and time.monotonic() - self._at < self.seconds:
            return self._value
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._service.in_thread(self._load))
        pending = self._pending
        try:
            value = await asyncio.shield(pending)
        finally:
            if self._pending is pending and pending.done():
                self._pending = None
        self._value, self._at = value, time.monotonic()
        return value

    def forget(self) -> None:
        self._at = None


class ClassroomService:
    def __init__(self, room: commands.Classroom, workers: int = 8, shells: int = 16):
        self.room = room
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="web")
        # Terminals open on their own threads: 30 students arriving at once must not queue the
        # dashboard behind their SSH handshakes (mostly waiting on the hosts' sshd).
        self._shells = ThreadPoolExecutor(shells, thread_name_prefix="web-shell")
        self.roster = Shared(self, ROSTER_SECONDS, lambda: {e.student: e.as_json() for e in room.roster()})
        self.status = Shared(self, STATUS_SECONDS, lambda: commands.status(room).as_json())
        self.progress = Shared(self, PROGRESS_SECONDS, self._progress)

    async def in_thread(self, work: Callable[..., Any], *args: Any, shell: bool = False) -> Any:
        """`work(*args)` in a worker thread (`shell`: a terminal's); the core's errors become
        answers with their message."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._shells if shell else self._pool, work, *args)
        except BadInput as exc:
            raise WebError(400, exc.message) from None
        except ClassroomError as exc:
            raise WebError(409 if "is busy" in exc.message else 500, exc.message) from None

    def close(self) -> None:
        for pool in (self._pool, self._shells):
            pool.shutdown(wait=False, cancel_futures=True)

    def _progress(self) -> dict:
        from ..course_checks import progress

        return progress(self.room).as_json()

    # --- students ----------------------------------------------------------------------------------
    def students(self) -> list[str]:
        """The students who have a seat: those with a password in the state folder."""
        return sorted(self.room.state.known_passwords(missing_ok=True))

    def resolve(self, text: object) -> str:
        """`student-07` or `7` -> the student's name; a clear answer for anything else."""
        try:
            return resolve_host(str(text or ""), self.students())
        except BadInput as exc:
            raise WebError(404 if "no student" in exc.message or "no swarm" in exc.message else 400,
                           exc.message) from None

    def password(self, student: str) -> str | None:
        return self.room.state.known_passwords(missing_ok=True).get(student)

    async def entry(self, student: str) -> dict:
        entries = await self.roster.get()
        if student not in entries:
            raise WebError(503, f"{student}'s machine is not running: ask the trainer")
        return entries[student]

    def shell_target(self, student: str) -> tuple[Machine, str, str]:
        """Where the student's terminal goes: their own host (from the backend, never from the
        browser), their password, and that host's pinned key."""
        password = self.password(student)
        machine = next((m for m in self.room.backend.machines()
                        if m.role == Role.STUDENT and m.student == student and m.running), None)
        if machine is None or password is None:
            raise WebError(503, f"{student}'s machine is not running: ask the trainer")
        host_key = self.room.state.host_keys().get(machine.name)
        if host_key is None:
            raise WebError(503, f"no host key is known for {machine.name}: ask the trainer to run `classroom up`")
        return machine, password, host_key

    # --- the trainer's actions ---------------------------------------------------------------------
    async def reset(self, student: str, hard: bool) -> dict:
        reports = await self.in_thread(lambda: commands.reset(self.room, [student], hard=hard))
        self._forget()
        return {"ok": all(r.ok for r in reports), "lines": [r.summary for r in reports],
                "reports": [dataclasses.asdict(r) for r in reports]}

    async def extend(self, duration: str) -> dict:
        from ..config import parse_duration

        try:
            delta = parse_duration(duration)
        except ValueError as exc:
            raise WebError(400, f"duration: {exc}") from None
        result = await self.in_thread(commands.extend, self.room, delta)
        self._forget()
        return {"ok": True, "lines": [result.summary], "expires_at": result.expires_at.isoformat()}

    def _forget(self) -> None:
        for shared in (self.roster, self.status, self.progress):
            shared.forget()
