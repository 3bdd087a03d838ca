"""`classroom rehearse`: run the course's solutions, in order, as a student, on a scratch host.

The scratch host is made by the same code as a student's (a one-student classroom of its own,
`NAME-rehearsal`: same host image, account, images and exercises), on an SSH port of its own, so
the classroom `NAME` itself, running or not, is never touched. Each `solutions/NN-name/solution.sh`
is sent over the student's SSH session and run with bash in `~/exercises/NN-name`; it passes when
it exits 0. The scratch classroom is removed afterwards, whatever happened (failure, Ctrl-C).
"""

from __future__ import annotations

import fcntl
import shlex
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .config import ClassroomConfig, check_course_folder
from .errors import BadInput, ClassroomError, ExitCode, last_line
from .progress import NULL_PROGRESS, Progress
from .untrusted import clean

SOLUTION = "solution.sh"
SCRATCH_SUFFIX = "-rehearsal"
MARK = "rehearsal_of"  # in the scratch classroom's classroom.json: the classroom it rehearses
TAIL_LINES = 15  # of a failed solution's output, in the report
DEFAULT_TIMEOUT = 900  # seconds per solution: a `docker build` on a slow mirror takes minutes
PORT_OFFSET = 200  # the scratch host's SSH port: from ssh_port_base + 201, clear of the classroom's hosts


@dataclass(frozen=True)
class Solution:
    name: str  # the exercise: 01-bases
    script: Path


@dataclass
class ExerciseRun:
    name: str
    ok: bool
    seconds: float
    exit_code: int | None  # None: it never ended (timed out, connection lost)
    tail: list[str] = field(default_factory=list)  # the output's last lines when it failed, cleaned

    def as_json(self) -> dict:
        return {"name": self.name, "ok": self.ok, "seconds": round(self.seconds, 1),
                "exit_code": self.exit_code, "tail": self.tail}


@dataclass
class RehearsalResult:
    classroom: str
    scratch: str  # the scratch classroom's name
    setup_seconds: float  # making the scratch host like a student's
    exercises: list[ExerciseRun]
    removed: bool = True  # the scratch classroom is gone
    leftovers: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.exercises) and all(run.ok for run in self.exercises)

    @property
    def exit_code(self) -> int:
        return ExitCode.OK if self.ok else ExitCode.PARTIAL

    def as_json(self) -> dict:
        return {"classroom": self.classroom, "scratch": self.scratch, "ok": self.ok,
                "setup_seconds": round(self.setup_seconds, 1), "removed": self.removed,
                "exercises": [run.as_json() for run in self.exercises]}


def scratch_name(name: str) -> str:
    return f"{name[:40 - len(SCRATCH_SUFFIX)]}{SCRATCH_SUFFIX}"


def find_solutions(config: ClassroomConfig) -> list[Solution]:
    """The course's solutions in order (by folder name); BadInput when there are none."""
    folder = config.solutions_dir
    label = str(config.source) if config.source else "classroom file"
    if folder is None:
        raise BadInput(f"{label}: solutions: not set: add `solutions: ./solutions`, a folder of "
                       "NN-name/solution.sh, one per exercise")
    check_course_folder(config, folder, f"{label}: solutions")
    if not folder.is_dir():
        raise BadInput(f"{label}: solutions: no such folder: {folder}")
    found = [Solution(path.name, path / SOLUTION) for path in sorted(folder.iterdir())
             if path.is_dir() and (path / SOLUTION).is_file()]
    if not found:
        raise BadInput(f"{label}: solutions: no NN-name/{SOLUTION} in {folder}")
    return found


def scratch_config(config: ClassroomConfig, port_base: int) -> ClassroomConfig:
    """The classroom file, for one student and no shared Swarm nodes, under the scratch name."""
    return config.model_copy(update={
        "name": scratch_name(config.name), "students": 1, "ttl": "2h",
        "swarm": config.swarm.model_copy(update={"nodes": 0}),
        "local": config.local.model_copy(update={"ssh_port_base": port_base}),
    })


def scratch_port_base(config: ClassroomConfig) -> int:
    """On local: a base whose SSH port and public ports are free on this machine now and none of the
    classroom's own (every host it plans, for as many students as the file or its last `up` asked
    for), so that the classroom can still grow while the rehearsal runs."""
    from .backends.local import LocalBackend, port_free
    from .state import ClassroomState

    if config.backend != "local":
        return config.local.ssh_port_base
    students = max(config.students, ClassroomState(config.name).salvaged_meta().students or 0)
    taken = _ports(config.model_copy(update={"students": students}))
    address = LocalBackend(config, None).bind_address  # type: ignore[arg-type]  # reads the config only
    start = config.local.ssh_port_base + PORT_OFFSET
    for candidate in range(start, 60001):
        needed = _ports(scratch_config(config, candidate))
        if max(needed) > 65535:
            break
        if not taken & needed and all(port_free(address, port) for port in needed):
            return candidate
    raise BadInput(f"local.ssh_port_base: no free ports for the scratch host above {start}: lower "
                   "local.ssh_port_base")


def _ports(config: ClassroomConfig) -> set[int]:
    """Every port on this machine that the local hosts of `config` listen on: SSH and published."""
    from .backends.local import LocalBackend
    from .roster import plan_hosts

    backend = LocalBackend(config, None)  # type: ignore[arg-type]  # port arithmetic only
    return {port for spec in plan_hosts(config)
            for port in (backend.port_of(spec), *(public for _port, public in backend.published_of(spec)))}


@contextmanager
def rehearsal_lock(state_root: Path, name: str) -> Iterator[None]:
    """One rehearsal of a course at a time: a second one would remove the first one's host. The
    empty lock file stays: removing it would let two processes hold locks on two files at once."""
    state_root.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(state_root / f".{name}.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ClassroomError(f"another `classroom rehearse` is using {name!r}; try again when it ends") from None
        yield


def rehearse(config: ClassroomConfig, progress: Progress = NULL_PROGRESS,
             confirm: Callable[[str], bool] | None = None, *, timeout: int = DEFAULT_TIMEOUT) -> RehearsalResult:
    """Make the scratch host, run every solution on it as its student, remove it; returns the
    report. BadInput (nothing made) when the course has no solutions."""
    from .commands import Classroom
    from .state import state_root

    solutions = find_solutions(config)
    scratch = scratch_config(config, scratch_port_base(config))
    room = Classroom.open(scratch, progress)
    with rehearsal_lock(state_root(), scratch.name):
        _clear_leftover(room, config.name)
        started = time.monotonic()
        runs: list[ExerciseRun] = []
        setup = 0.0
        try:
            room.state.update_meta(**{MARK: config.name})
            session = _student_session(room, confirm)
            setup = time.monotonic() - started
            try:
                progress.start("rehearse", f"Rehearsing {len(solutions)} exercise(s)", total=len(solutions))
                for solution in solutions:
                    progress.advance("rehearse", 0, detail=solution.name)
                    runs.append(run_solution(session, solution, timeout))
                    progress.advance("rehearse", detail=solution.name)
                progress.finish("rehearse")
            finally:
                session.close()
        finally:
            leftovers = _remove(room)
    return RehearsalResult(config.name, scratch.name, setup, runs, not leftovers, leftovers)


def _clear_leftover(room, rehearsed: str) -> None:
    """A scratch classroom left by an interrupted rehearsal is removed; a classroom of that name
    that is not a rehearsal of this course is refused, untouched."""
    meta = room.state.salvaged_meta() if room.state.exists else None
    machines = room.backend.machines()
    if meta is None and not machines:
        return
    if meta is None or (meta.model_extra or {}).get(MARK) != rehearsed:
        raise BadInput(f"a classroom named {room.name!r} exists and is not a rehearsal of {rehearsed!r}: "
                       f"rehearse needs that name; remove it (`classroom --name {room.name} down`) or "
                       "rename this classroom")
    _remove(room)


def _student_session(room, confirm):
    """`up` of the scratch classroom, then the student's own SSH session on its host."""
    from .commands import up
    from .ssh import open_with_retry, student_connection

    result = up(room, confirm)
    if result.failed:
        raise ClassroomError(f"the scratch host could not be made like a student's: "
                             f"{'; '.join(f'{h.name}: {h.error}' for h in result.failed)}")
    (entry,) = room.roster()
    machine = next(m for m in room.backend.machines() if m.name == entry.host)
    connection = student_connection(machine, entry.user, entry.password, room.state.host_keys()[machine.name])
    return open_with_retry(connection)


def run_solution(connection, solution: Solution, timeout: int) -> ExerciseRun:
    """Send the script on stdin into a file of the student's, run it with bash (its stdin empty:
    nothing types into it) in ~/exercises/NAME when there is one, stdout and stderr together."""
    import paramiko

    from .ssh import run

    name = shlex.quote(solution.name)
    command = (f"f=$(mktemp) && cat > \"$f\" && {{ cd ~/exercises/{name} 2>/dev/null || cd; }} && "
               f"timeout -k 10 {int(timeout)} bash \"$f\" </dev/null 2>&1; code=$?; rm -f \"$f\"; exit $code")
    started = time.monotonic()
    try:
        result = run(connection, command, stdin=solution.script.read_text(), timeout=timeout + 30)
    except (TimeoutError, OSError, EOFError, paramiko.SSHException) as exc:
        return ExerciseRun(solution.name, False, time.monotonic() - started, None,
                           [f"no answer from the scratch host: {last_line(exc)}"])
    seconds = time.monotonic() - started
    tail = [] if result.ok else tail_lines(result.stdout, result.exit_code, timeout)
    return ExerciseRun(solution.name, result.ok, seconds, result.exit_code, tail)


def tail_lines(output: str, exit_code: int, timeout: int) -> list[str]:
    """The last lines of a failed solution's output, cleaned: the scratch host is a student's."""
    lines = [line.rstrip() for line in clean(output).splitlines() if line.strip()][-TAIL_LINES:]
    if exit_code == 124:
        lines.append(f"(stopped after {timeout} s)")
    return lines


def _remove(room) -> list[str]:
    """`down` of the scratch classroom; what is still there after a second try (a host a worker
    of an interrupted `up` was still making)."""
    from .commands import down

    left: list[str] = []
    for attempt in range(2):
        try:
            result = down(room)
            left = [f"{item.kind} {item.name}" for item in result.leftovers]
        except ClassroomError as exc:
            left = [last_line(exc)]
        if not left:
            break
        if attempt == 0:
            time.sleep(2)
    return left

