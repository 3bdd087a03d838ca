"""Provisioning over SSH, the same for every backend: engine up, accounts, images, exercises.

One host's failure never stops the others: each host gets a report, and the caller decides
the exit code from them. Every step checks before it acts, so a re-run on a healthy host
transfers nothing and changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import paramiko
from fabric import Connection

from .accounts import ensure_accounts
from .backends.base import Backend
from .model import HostReport, Machine, MachineState, Role, Strategy
from .errors import BadInput, last_line
from .hosttools import ensure_host_tools
from .exercises import ExerciseChange, ExerciseChanges, ExercisePack, sync_exercises
from .images import CourseImage
from .preload import pull_images, push_images, upload_early
from .ssh import AdminAccess, HostKeyMismatch, RemoteError, admin_connection, check, in_parallel, open_with_retry, \
    script_command
from .workers import worker_pool

if TYPE_CHECKING:
    from .commands import Classroom
    from .hostwork import Checks

START_DOCKER = "/usr/local/sbin/classroom-start-docker"


@dataclass(frozen=True)
class Course:
    """What every host gets besides accounts: prepared once on the instructor's side."""

    images: list[CourseImage] = field(default_factory=list)
    exercises: ExercisePack | None = None
    strategy: Strategy = Strategy.PUSH
    students_sudo: bool = True  # each student may sudo on their own host (hosttools.py)

    def cache_files(self) -> list[str]:
        """The files of the trainer's cache this course uses: `down --clear-cache` removes them."""
        paths = [image.archive for image in self.images if image.archive is not None]
        paths += [self.exercises.archive] if self.exercises is not None else []
        return sorted(str(path) for path in paths)


def prepare_course(room: Classroom, rebuild: bool = True) -> Course:
    """Build/pull/save the images and pack the exercises, before any host is touched.

    `rebuild=False` (reset) reuses a course image already built rather than building it again.
    """
    from .exercises import kept_from_students, pack_exercises
    from .images import CourseImage, prepare_images, reference

    config = room.config
    strategy = room.preload_strategy
    if strategy == Strategy.PUSH:
        images = prepare_images(config, room.progress, rebuild=rebuild)
    else:  # each host pulls: the trainer's engine is never asked
        images = [CourseImage(reference(image.name), "-", None) for image in config.images]
    folder = config.exercises_dir
    pack = pack_exercises(folder, kept_from_students(folder, config.solutions_dir)) if folder is not None else None
    return Course(images, pack, strategy, config.students_sudo)


def check_course(room: Classroom) -> None:
    """Refuse a course its preload strategy cannot deliver, or that would hand students files
    nobody meant them to have, before any host is created: with `pull` each host pulls from a
    registry, so an image built from the course folder would fail on every host."""
    from .exercises import kept_from_students, private_files, refuse_private_files

    folder = room.config.exercises_dir
    if folder is not None:
        refuse_private_files(private_files(folder, kept_from_students(folder, room.config.solutions_dir)))
    if room.preload_strategy != Strategy.PULL:
        return
    for index, image in enumerate(room.config.images):
        if image.build is not None:
            raise BadInput(f"images.{index}: {image.name} is built from {image.build}, but hosts on "
                           f"{room.backend_name} pull their images: set `preload: {{strategy: push}}` in the "
                           "classroom file (your Docker engine builds it and sends it over SSH), or push it "
                           "to a registry and remove its `build`")


def accounts_for(machine: Machine, hashes: dict[str, str]) -> dict[str, str]:
    """A student's host or own Swarm node has its student only; a shared Swarm node has every
    student (`hashes`: their Swarm passwords')."""
    if machine.student:
        return {machine.student: hashes[machine.student]} if machine.student in hashes else {}
    return dict(hashes)


def ensure_engine(connection) -> bool:
    """Start the host's Docker engine if it stopped; True when it had to."""
    out = check(connection, script_command("docker_start.sh", START_DOCKER), what="starting Docker")
    # A new local host's engine may still be starting when its sshd answers: the host's script
    # waits for that start and says "waited" before docker_start.sh's "started". Only an engine
    # that this call started is a change.
    return out.split() == ["started"]


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
                   fresh_exercises: bool = False, new_host: bool = False,
                   first: Callable[[Connection], list[str]] | None = None,
                   then: Callable[[Connection, list[str]], None] | None = None) -> list[str]:
    """Converge one host; returns what changed (empty when it was already right). On the same
    admin session (one handshake), `first(session)` runs before (a soft reset's wipe: what it
    returns counts as changes) and `then(session, changes)` once the host is provisioned (the checks).

    `hashes` are the students' password hashes (state.py): a host never gets a password.
    `new_host`: made by this run, so it has no image yet: the saved images go to it through the
    backend's fast path (if it has one) while its SSH and engine are still starting."""
    course = course or Course()
    changes: list[str] = []
    early = new_host and backend is not None and bool(course.images) and course.strategy == Strategy.PUSH
    try:
        with worker_pool(1) as pool:
            upload = pool.submit(upload_early, backend, machine, course.images) if early else None
            with admin_session(machine, access, backend, changes) as connection:
                if first is not None:
                    changes += first(connection)
                changes += _converge(connection, machine, hashes, course, backend, fresh_exercises,
                                     sent=lambda: _sent(upload))
                if then is not None:
                    then(connection, changes)
                return changes
    except Exception as exc:
        reason = stopped_meanwhile(machine_gone(backend, machine))
        if reason:  # the real cause, rather than a closed socket's last words
            raise RemoteError(f"{reason} while provisioning ({last_line(exc)})") from exc
        raise


def _converge(connection: Connection, machine: Machine, hashes: dict[str, str], course: Course,
              backend: Backend | None, fresh_exercises: bool, sent: Callable[[], dict[str, str]]) -> list[str]:
    """Engine, accounts, images, exercises, in that order, on an open admin session: the engine
    first, so that a host whose root shell fails says so at once (the accounts' step sends stdin,
    which such a shell never reads). `sent()`: the images' tars already sent early (waited for
    only when the images' turn comes)."""
    changes = ["docker engine started"] if ensure_engine(connection) else []
    accounts = accounts_for(machine, hashes)
    changes += ensure_accounts(connection, accounts)
    changes += ensure_host_tools(connection, machine, course.students_sudo)
    if course.images:
        if course.strategy == Strategy.PUSH:
            loaded = push_images(connection, backend, machine, course.images, sent())
        else:
            loaded = pull_images(connection, course.images)
        changes += [f"image {name}" for name in loaded]
    if course.exercises is not None and machine.role == Role.STUDENT and machine.student in accounts:
        done = sync_exercises(connection, backend, machine, machine.student, course.exercises,
                              fresh=fresh_exercises)
        changes += summarize_exercise_changes(done)
    return changes


def _sent(upload: Future | None) -> dict[str, str]:
    """What the early upload put on the host (waited for); nothing when it failed (push_images
    sends it again)."""
    if upload is None:
        return {}
    try:
        return upload.result()
    except Exception:
        return {}


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
                    swarm_passwords: dict[str, str] | None = None, new_hosts: Collection[str] = ()) -> list[HostReport]:
    """`passwords` open the students' own hosts and nodes; `swarm_passwords` the shared Swarm nodes, where
    every student is root: a shared node never gets the hash of a password that opens a student's host.
    `new_hosts`: the names of the machines this run made (see provision_host)."""
    progress = room.progress
    running = [m for m in machines if m.running]
    limit = room.config.preload.parallel
    hashes = room.state.password_hashes(passwords)
    swarm_hashes = room.state.password_hashes(swarm_passwords or {}, swarm=True)
    course = course or Course()
    verified: dict[str, Checks] = {}

    def provision_and_check(machine: Machine) -> list[str]:
        """Each host is checked as its students as soon as it is provisioned, on the same admin
        session: no wait for the slowest host in between, one handshake less per host. On a host
        that changed, each student's password is also tried for real, up to authentication."""
        shared = machine.is_shared_node
        changes, verified[machine.name] = room.remote.provision_and_check(
            machine, swarm_hashes if shared else hashes, access, course, room.backend,
            (swarm_passwords or {}) if shared else passwords, new_host=machine.name in new_hosts,
            password_login=True, repairable=room.backend.can_repair_access)
        return changes

    progress.start("provision", f"Provisioning and checking {len(running)} host(s)", total=len(running))
    outcomes = in_parallel(running, provision_and_check, limit=limit,
                           on_done=lambda m, _r, _e: progress.advance("provision", detail=m.name))
    progress.finish("provision")

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
