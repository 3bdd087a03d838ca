"""Provisioning over SSH, the same for every backend: engine up, accounts, images, exercises.

One host's failure never stops the others: each host gets a report, and the caller decides
the exit code from them. Every step checks before it acts, so a re-run on a healthy host
transfers nothing and changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import paramiko
from fabric import Connection

from .accounts import ensure_accounts
from .backends.base import Backend
from .model import HostReport, Machine, MachineState, Role, Strategy
from .errors import BadInput, last_line
from .exercises import ExerciseChange, ExerciseChanges, ExercisePack, sync_exercises
from .images import CourseImage
from .preload import pull_images, push_images
from .ssh import AdminAccess, HostKeyMismatch, RemoteError, admin_connection, check, in_parallel, open_with_retry, \
    script_command

if TYPE_CHECKING:
    from .commands import Classroom

START_DOCKER = "/usr/local/sbin/classroom-start-docker"


@dataclass(frozen=True)
class Course:
    """What every host gets besides accounts: prepared once on the instructor's side."""

    images: list[CourseImage] = field(default_factory=list)
    exercises: ExercisePack | None = None
    strategy: Strategy = Strategy.PUSH

    def cache_files(self) -> list[str]:
        """The files of the trainer's cache this course uses: `down --clear-cache` removes them."""
        paths = [image.archive for image in self.images if image.archive is not None]
        paths += [self.exercises.archive] if self.exercises is not None else []
        return sorted(str(path) for path in paths)


def prepare_course(room: Classroom, rebuild: bool = True) -> Course:
    """Build/pull/save the images and pack the exercises, before any host is touched.

    `rebuild=False` (reset) reuses a course image already built rather than building it again.
    """
    from .exercises import pack_exercises
    from .images import CourseImage, prepare_images, reference

    config = room.config
    strategy = room.preload_strategy
    if strategy == Strategy.PUSH:
        images = prepare_images(config, room.progress, rebuild=rebuild)
    else:  # each host pulls: the trainer's engine is never asked
        images = [CourseImage(reference(image.name), "-", None) for image in config.images]
    folder = config.exercises_dir
    pack = pack_exercises(folder) if folder is not None else None
    return Course(images, pack, strategy)


def check_course(room: Classroom) -> None:
    """Refuse a course its preload strategy cannot deliver, or that would hand students files
    nobody meant them to have, before any host is created: with `pull` each host pulls from a
    registry, so an image built from the course folder would fail on every host."""
    from .exercises import private_files, refuse_private_files

    if room.config.exercises_dir is not None:
        refuse_private_files(private_files(room.config.exercises_dir))
    if room.preload_strategy != Strategy.PULL:
        return
    for index, image in enumerate(room.config.images):
        if image.build is not None:
            raise BadInput(f"images.{index}: {image.name} is built from {image.build}, but hosts on "
                           f"{room.backend_name} pull their images: set `preload: {{strategy: push}}` in the "
                           "classroom file (your Docker engine builds it and sends it over SSH), or push it "
                           "to a registry and remove its `build`")


def accounts_for(machine: Machine, hashes: dict[str, str]) -> dict[str, str]:
    """A student host has its student; a Swarm node has every student (`hashes`: their Swarm passwords')."""
    if machine.role == Role.STUDENT:
        return {machine.student: hashes[machine.student]} if machine.student in hashes else {}
    return dict(hashes)


def ensure_engine(connection) -> bool:
    """Start the host's Docker engine if it stopped; True when it had to."""
    out = check(connection, script_command("docker_start.sh", START_DOCKER), what="starting Docker")
    return out.strip() == "started"


def open_admin(machine: Machine, access: AdminAccess, backend: Backend | None = None,
               changes: list[str] | None = None) -> Connection:
    """The admin session on `machine`. When the admin key is refused (a student is root on their
    host through Docker, and may have emptied root's authorized_keys), the backend puts it back
    without SSH if it can (local: through the engine; the student's files are not touched), then
    the session is tried again; `changes` gets a line saying so."""
    gone = machine_gone(backend, machine)
    try:
        return open_with_retry(admin_connection(machine, access), gone=gone)
    except paramiko.AuthenticationException:
        # A machine killed during the handshake can look like a refused key: say what happened.
        reason = stopped_meanwhile(gone)
        if reason:
            raise RemoteError(f"{reason} while logging in") from None
        if backend is None or not access.public_line or not backend.repair_access(machine, access.public_line):
            raise RemoteError(f"{machine.name}: the admin key is refused (root's authorized_keys changed?) and "
                              f"this backend cannot put it back: `classroom reset --hard {machine.name}` "
                              "replaces the machine") from None
    connection = open_with_retry(admin_connection(machine, access), gone=gone)
    if changes is not None:
        changes.append("admin access repaired")
    return connection


@contextmanager
def admin_session(machine: Machine, access: AdminAccess, backend: Backend | None = None,
                  changes: list[str] | None = None) -> Iterator[Connection]:
    """`with admin_session(machine, access, backend) as connection:` the session of `open_admin`
    (admin access repaired when the backend can), closed whatever happens in the block."""
    connection = open_admin(machine, access, backend, changes)
    try:
        yield connection
    finally:
        connection.close()


def provision_host(machine: Machine, hashes: dict[str, str], access: AdminAccess,
                   course: Course | None = None, backend: Backend | None = None,
                   fresh_exercises: bool = False) -> list[str]:
    """Converge one host; returns what changed (empty when it was already right).

    `hashes` are the students' password hashes (state.py): a host never gets a password."""
    course = course or Course()
    changes: list[str] = []
    try:
        with admin_session(machine, access, backend, changes) as connection:
            if ensure_engine(connection):
                changes.append("docker engine started")
            accounts = accounts_for(machine, hashes)
            changes += ensure_accounts(connection, accounts)
            if course.images:
                if course.strategy == Strategy.PUSH:
                    loaded = push_images(connection, backend, machine, course.images)
                else:
                    loaded = pull_images(connection, course.images)
                changes += [f"image {name}" for name in loaded]
            if course.exercises is not None and machine.role == Role.STUDENT and machine.student in accounts:
                done = sync_exercises(connection, backend, machine, machine.student, course.exercises,
                                      fresh=fresh_exercises)
                changes += summarize_exercise_changes(done)
            return changes
    except Exception as exc:
        reason = stopped_meanwhile(machine_gone(backend, machine))
        if reason:  # the real cause, rather than a closed socket's last words
            raise RemoteError(f"{reason} while provisioning ({last_line(exc)})") from exc
        raise


STOPPED_GRACE_SECONDS = 2.0  # how long a failed host that still runs is watched (tests of unreachable hosts set 0)


def stopped_meanwhile(gone: Callable[[], str | None] | None, grace: float | None = None) -> str | None:
    """After a failure: whether the machine stopped. The session may see the end of a killed
    machine before its backend does, so a machine that still runs is asked again for a moment."""
    deadline = time.monotonic() + (STOPPED_GRACE_SECONDS if grace is None else grace)
    while gone is not None:
        reason = gone()
        if reason or time.monotonic() >= deadline:
            return reason
        time.sleep(0.25)
    return None


def machine_gone(backend: Backend | None, machine: Machine) -> Callable[[], str | None] | None:
    """For waits and failures: None while the machine runs, else "student-02's machine stopped
    (exited)". A backend that cannot say (engine gone too) counts as running: the wait goes on."""
    if backend is None:
        return None

    def gone() -> str | None:
        try:
            state = backend.current_state(machine)
        except Exception:
            return None
        return None if state == MachineState.RUNNING else f"{machine.name}'s machine stopped ({state})"

    return gone


EXERCISE_LABELS = {ExerciseChange.KEPT: "kept (changed by the student)",
                   ExerciseChange.DELETED: "left deleted by the student"}


def summarize_exercise_changes(done: ExerciseChanges) -> list[str]:
    """{ADDED: [3 files], KEPT: [b]} -> `exercises: 3 added; 1 kept (changed by the student): b`."""
    parts = []
    for verb in ExerciseChange:  # in the enum's order: added, updated, kept, deleted
        if verb in done:
            names = f": {', '.join(done[verb][:3])}" if verb in EXERCISE_LABELS else ""
            parts.append(f"{len(done[verb])} {EXERCISE_LABELS.get(verb, verb)}{names}")
    return [f"exercises: {'; '.join(parts)}"] if parts else []


def provision_hosts(room: Classroom, machines: list[Machine], passwords: dict[str, str],
                    access: AdminAccess, course: Course | None = None,
                    swarm_passwords: dict[str, str] | None = None) -> list[HostReport]:
    """`passwords` open the students' own hosts; `swarm_passwords` the shared Swarm nodes, where
    every student is root: a Swarm node never gets the hash of a password that opens a student's host."""
    progress = room.progress
    running = [m for m in machines if m.running]
    limit = room.config.preload.parallel
    hashes = room.state.password_hashes(passwords)
    swarm_hashes = room.state.password_hashes(swarm_passwords or {}, swarm=True)
    progress.start("provision", f"Provisioning {len(running)} host(s)", total=len(running))
    course = course or Course()
    outcomes = in_parallel(running, lambda m: room.remote.provision(
                               m, hashes if m.role == Role.STUDENT else swarm_hashes, access, course, room.backend),
                           limit=limit,
                           on_done=lambda m, _r, _e: progress.advance("provision", detail=m.name))
    progress.finish("provision")

    progress.start("verify", "Checking every host as its students", total=len(running))
    # The hosts just changed: each student's password is also tried for real, up to authentication.
    verified = room.remote.check_all(room, running, passwords, password_login=True, swarm_passwords=swarm_passwords,
                                     on_done=lambda m: progress.advance("verify", detail=m.name))
    progress.finish("verify")

    reports = []
    for machine, changes, error in outcomes:
        checks, detail = verified.get(machine.name, ({}, None))
        if error is None and not all(checks.values()):
            failing = ", ".join(name for name, ok in checks.items() if not ok)
            error = RuntimeError(f"check failed: {failing}" + (f" ({detail})" if detail else ""))
        reports.append(HostReport(machine.name, machine.role, machine.public_host, machine.public_port,
                                  ok=error is None, error=None if error is None else last_line(error),
                                  changes=changes or [], needs_replacing=isinstance(error, HostKeyMismatch)))
    for machine in machines:
        if not machine.running:
            reports.append(HostReport(machine.name, machine.role, machine.public_host, machine.public_port,
                                      ok=False, error=f"machine is {machine.state}"))
    return reports
