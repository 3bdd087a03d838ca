"""`classroom progress`: who finished which exercise, from the course's own checks.

The course may have a `checks:` folder of `NN-name/check.sh`. It is never copied to students
(config.check_checks_folder keeps it apart from the exercises). Each check runs on the student's
own host, over the admin session the other checks use, as the student through `runuser` with an
empty environment (scripts/progress_check.sh), its text on stdin (so it is in no command line),
within CHECK_SECONDS. Its exit code is all that is read back: 0 marks the exercise done; a host
that cannot be asked leaves the student's cells unknown (None), with the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import BadInput, last_line
from .model import Machine, Role
from .ssh import AdminAccess, admin_connection, in_parallel, opened, run, script_command

if TYPE_CHECKING:
    from .commands import Classroom

CHECK_SECONDS = 20  # one check; a check that hangs counts as not done
CONNECT_SECONDS = 8.0
CHECK_NAME_RE = re.compile(r"^\d{2}-[A-Za-z0-9._-]{1,60}$")


@dataclass(frozen=True)
class CourseCheck:
    name: str  # the exercise: 01-bases
    script: str  # check.sh's text


def course_checks(folder: Path) -> list[CourseCheck]:
    """Every `NN-name/check.sh` of the folder, in order; other entries are ignored."""
    found = []
    for entry in sorted(folder.iterdir()):
        script = entry / "check.sh"
        if CHECK_NAME_RE.match(entry.name) and script.is_file():
            found.append(CourseCheck(entry.name, script.read_text(encoding="utf-8", errors="replace")))
    return found


@dataclass
class StudentProgress:
    student: str
    host: str
    done: dict[str, bool | None]  # exercise -> done, not done, or unknown (host not reached)
    detail: str | None = None

    def as_json(self) -> dict:
        return {"student": self.student, "host": self.host, "done": self.done,
                "count": sum(1 for value in self.done.values() if value), "detail": self.detail}


@dataclass
class ProgressResult:
    classroom: str
    exercises: list[str]
    students: list[StudentProgress]

    @property
    def unknown(self) -> list[str]:
        """Students whose host could not be asked."""
        return [s.student for s in self.students if any(v is None for v in s.done.values())]

    def as_json(self) -> dict:
        return {"classroom": self.classroom, "exercises": self.exercises,
                "students": [s.as_json() for s in self.students]}


def check_student(machine: Machine, access: AdminAccess, student: str, checks: list[CourseCheck]) -> dict[str, bool]:
    """Each check's outcome on one host: one admin session, one channel per check."""
    command = script_command("progress_check.sh", student, str(CHECK_SECONDS))
    with opened(admin_connection(machine, access), CONNECT_SECONDS) as connection:
        return {check.name: run(connection, command, stdin=check.script, timeout=CHECK_SECONDS + 10).exit_code == 0
                for check in checks}


def progress(room: Classroom) -> ProgressResult:
    """The matrix students x exercises, every student's host asked at once."""
    from .commands import require_record, require_recorded_course

    folder = room.config.checks_dir
    if folder is None:
        raise BadInput("the classroom file has no `checks:` folder: add `checks: ./checks`, holding "
                       "NN-name/check.sh (exit 0 when the exercise is done)")
    if not folder.is_dir():
        raise BadInput(f"checks: no such folder: {folder}")
    checks = course_checks(folder)
    if not checks:
        raise BadInput(f"checks: no NN-name/check.sh in {folder}")
    require_record(room)
    require_recorded_course(room)
    names = [check.name for check in checks]
    machines = {m.student: m for m in room.backend.machines() if m.role == Role.STUDENT and m.student}
    # One row per student: their own host, not the Swarm nodes they also own.
    students = [spec.student for spec in room.planned_hosts() if spec.role == Role.STUDENT and spec.student]
    access = room.admin_access()
    running = [machines[s] for s in students if s in machines and machines[s].running]
    outcomes = {machine.student: (done, error) for machine, done, error in in_parallel(
        running, lambda m: check_student(m, access, m.student or "", checks), limit=room.config.preload.parallel)}
    rows = []
    for student in students:
        done, error = outcomes.get(student, (None, None))
        machine = machines.get(student)
        if done is not None:
            rows.append(StudentProgress(student, machine.name if machine else student, done))
            continue
        why = last_line(error) if error is not None else "the host is not running: `classroom up` brings it back"
        rows.append(StudentProgress(student, machine.name if machine else student, dict.fromkeys(names), why))
    return ProgressResult(room.name, names, rows)
