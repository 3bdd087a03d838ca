"""The commands of the contract, as functions that return data. They never print.

    config -> backend (machines) -> hosts (SSH) -> provisioning (Fabric) -> sheets (Jinja2)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from .backends import get_backend
from .backends.base import Backend
from .config import ClassroomConfig
from .errors import BadInput, last_line
from .hostwork import HostWork, SshHostWork
from .progress import NULL_PROGRESS, Progress
from .model import HostReport, HostSpec, Leftover, Machine, MachineState, Role, Strategy
from .roster import RosterEntry, SwarmAccess, host_order, plan_hosts, published_ports, student_names
from .state import META_FILE, ClassroomState, CourseRecord, LostSecrets, fingerprint

if TYPE_CHECKING:
    from .swarm import SwarmLayout, SwarmReport, SwarmStatus


@dataclass
class Classroom:
    """One classroom: its settings, its state folder, its backend (made on first use unless
    given), and what is done on its hosts (`remote`: over SSH unless given)."""

    config: ClassroomConfig
    state: ClassroomState
    progress: Progress = NULL_PROGRESS
    _backend: Backend | None = None
    remote: HostWork = field(default_factory=SshHostWork)

    @classmethod
    def open(cls, config: ClassroomConfig, progress: Progress = NULL_PROGRESS, *,
             backend: Backend | None = None, remote: HostWork | None = None,
             state: ClassroomState | None = None) -> Classroom:
        return cls(config, state or ClassroomState(config.name), progress, backend, remote or SshHostWork())

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def backend_name(self) -> str:
        """The backend the classroom was created with wins over the file's default."""
        recorded = self.state.meta().backend
        if recorded is None and (self.state.path / "pulumi").is_dir():
            recorded = "aws"  # `down` with a damaged classroom.json: the Pulumi stack says where it runs
        return recorded or self.config.backend

    @property
    def preload_strategy(self) -> Strategy:
        """push or pull: the file's choice, else the default of the backend the classroom runs on
        (`push` on local; `pull` on aws, so a cloud classroom never needs the trainer's engine)."""
        return self.config.preload.strategy or (Strategy.PUSH if self.backend_name == "local" else Strategy.PULL)

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = get_backend(self.backend_name, self.config, self.state)
        return self._backend

    def planned_hosts(self) -> list[HostSpec]:
        """The hosts the last `up` asked for (the file's count before any `up`)."""
        meta = self.state.meta()
        config = self.config
        if meta.students is not None:
            config = config.model_copy(update={
                "students": meta.students,
                "swarm": config.swarm.model_copy(update={"nodes": meta.swarm_nodes or 0}),
            })
        return plan_hosts(config)

    def expires_at(self) -> datetime | None:
        return self.state.meta().expires_at

    def swarm_layout(self) -> SwarmLayout:
        """Which machines form which Swarm cluster: the file's settings, the count the classroom has."""
        from .swarm import SwarmLayout

        return SwarmLayout.of(self.config.swarm, self.state.meta().swarm_nodes)

    def roster(self, machines: list[Machine] | None = None) -> list[RosterEntry]:
        machines = self.backend.machines() if machines is None else machines
        by_student = {m.student: m for m in machines if m.role == Role.STUDENT}
        passwords = self.state.known_passwords()
        planned = self.planned_hosts()
        swarm_passwords = self.state.known_passwords(swarm=True) if any(h.is_shared_node for h in planned) else {}
        host_keys = self.state.host_keys()
        nodes = self.swarm_access(machines)
        entries = []
        for spec in planned:
            machine = by_student.get(spec.student) if spec.student else None
            if spec.role != Role.STUDENT or machine is None or spec.student not in passwords:
                continue
            key = host_keys.get(machine.name)
            entries.append(RosterEntry(spec.student, machine.name, machine.public_host,
                                       machine.public_port, spec.student, passwords[spec.student],
                                       fingerprint(key) if key else None, swarm_passwords.get(spec.student),
                                       ports=published_ports(machine.public_host, machine.ports),
                                       swarm=tuple(n for n in nodes if n.student in (None, spec.student))))
        return entries

    def admin_access(self):
        """The tool's key and every host's pinned host key: what each SSH session needs."""
        from .ssh import AdminAccess

        key = self.state.admin_key()
        return AdminAccess(key.private_path, self.state.host_keys(), key.public_line)

    def swarm_access(self, machines: list[Machine]) -> list[SwarmAccess]:
        """Every Swarm node a student logs into, in node order: the shared ones (no `student`), or
        each student's own (their host first: it is node 1 of their cluster)."""
        from .swarm import swarm_clusters

        layout = self.swarm_layout()
        roles = {h.name: h.role for h in self.planned_hosts()}
        first = Role.SWARM_MANAGER if layout.formed else Role.SWARM_NODE  # a student's host, node 1
        return [SwarmAccess(m.name, roles.get(m.name, m.role) if m.role != Role.STUDENT else first,
                            m.public_host, m.public_port, m.student, m.private_address)
                for cluster in swarm_clusters(machines, layout) for m in cluster]


# --- up --------------------------------------------------------------------------------------------
@dataclass
class UpResult:
    classroom: str
    backend: str
    hosts: list[HostReport]
    created: list[str]  # hosts that did not exist before this run
    sheets: list[Path]
    sheets_dir: Path | None
    expires_at: datetime | None
    swarm: SwarmReport | None = None
    renewed: list[str] = field(default_factory=list)  # secrets made anew (`up --new-secrets`)
    isolates_students: bool = True  # False: a student can reach the machine that runs the hosts
    swarm_mode: str | None = None  # per-student | shared; None: no Swarm
    swarm_formed: bool = True  # false: blank nodes, the students form their clusters
    routing_mesh: bool | None = None  # False: the hosts' kernel lacks IPVS (publish in host mode); None: unknown

    @property
    def failed(self) -> list[HostReport]:
        return [h for h in self.hosts if not h.ok]

    @property
    def to_replace(self) -> list[str]:
        """Failed hosts that another `up` cannot repair: `classroom reset --hard` them."""
        return [h.name for h in self.failed if h.needs_replacing]

    @property
    def to_repair(self) -> list[str]:
        """Failed hosts that another `up` may repair."""
        return [h.name for h in self.failed if not h.needs_replacing]


def up(room: Classroom, confirm: Callable[[str], bool] | None = None, *, new_secrets: bool = False) -> UpResult:
    """Create or converge the classroom. `confirm(cost line)` is asked before paid hosts are
    created (cloud backends only); None means go ahead. `new_secrets`: the trainer knows that
    secrets of existing hosts are lost and wants new ones (otherwise that is refused).

    Nothing is written to the state folder until the course is ready (images built or found,
    exercises packed): a refused `up` leaves the classroom as it was.
    """
    from .provisioning import check_course, prepare_course, provision_hosts

    config, state = room.config, room.state
    with state.lock("up"):
        # Never shrink: hosts beyond a smaller count keep their students' work until `down`.
        # The preflight (quota) and the cost are for every host the classroom will have.
        meta = state.meta()
        students = max(config.students, meta.students or 0)
        swarm_nodes = max(config.swarm.nodes, meta.swarm_nodes or 0)
        hosts = plan_hosts(config.model_copy(update={
            "students": students, "swarm": config.swarm.model_copy(update={"nodes": swarm_nodes})}))
        backend = room.backend
        found = backend.preflight(hosts)
        check_course(room)
        existing = [m for m in backend.machines() if m.state not in NEVER_STARTED]
        refuse_other_swarm_mode(room, existing)
        record_lost = bool(existing) and not state.exists
        if record_lost:  # classroom.json deleted while hosts run: the counts are read back from them
            students = max(students, *_host_numbers(existing, "student"))
            swarm_nodes = max(swarm_nodes, *_host_numbers(existing, "swarm"))
            hosts = plan_hosts(config.model_copy(update={
                "students": students, "swarm": config.swarm.model_copy(update={"nodes": swarm_nodes})}))
            backend.preflight(hosts)
        before = {m.name for m in existing if m.running}
        if existing and not new_secrets:
            state.known_passwords(missing_ok=True)  # a damaged file is refused, naming it; a lost one below
            state.known_passwords(swarm=True)
        lost = state.lost_secrets([m.name for m in existing], [m.student for m in existing if m.student],
                                  swarm_nodes=any(m.is_shared_node for m in existing))
        if lost:
            refuse_lost_secrets(room, lost, new_secrets)
        new_hosts = [h for h in hosts if h.name not in before]
        estimate = backend.estimate(len(hosts)) if confirm is not None and new_hosts else None  # None: free
        capacity = backend.capacity_note(hosts, new_hosts)
        if capacity:
            room.progress.note(capacity)
        if estimate is not None and not confirm(estimate.line()):
            raise BadInput("nothing was created")
        course = prepare_course(room)  # a missing image fails here, before any state is written
        key = state.admin_key(create=True)
        now = datetime.now(timezone.utc)
        if meta.created_at is None:
            state.update_meta(created_at=now.isoformat(timespec="seconds"),
                              expires_at=(now + config.ttl_delta).replace(microsecond=0))
        state.update_meta(backend=backend.name, students=students, swarm_nodes=swarm_nodes,
                          course=course_record(config),
                          cache=sorted(set(meta.cache) | set(course.cache_files())))
        hosts = room.planned_hosts()
        passwords = state.passwords(student_names(students), replace_damaged=new_secrets or not existing)
        # Separate passwords for the shared Swarm nodes: one captured there opens no student's host.
        # A student's own nodes take their own password: nobody else has an account there.
        swarm_passwords = state.passwords(student_names(students), replace_damaged=new_secrets or not existing,
                                          swarm=True) if any(h.is_shared_node for h in hosts) else {}
        ensured = backend.ensure(hosts, key.public_line, room.progress, found)
        machines = ensured.machines
        made_before = {m.name for m in existing}  # new hosts got the new secrets when they were made
        renewed = restore_access(room, [m for m in machines if m.name in made_before], lost, key.public_line)
        if record_lost:
            renewed.append(f"the classroom's record {state.path / META_FILE}, which was missing: rebuilt from its "
                           f"{len(existing)} host(s); its expiry could not be read back and restarted from now")
        access = room.admin_access()  # after `ensure`: new hosts' keys are made with them
        reports = provision_hosts(room, machines, passwords, access, course, swarm_passwords,
                                  new_hosts={m.name for m in machines} - made_before)
        present = {m.name for m in machines}
        reports += [HostReport(h.name, h.role, "-", 0, ok=False,
                               error=ensured.failures.get(h.name, "the machine was not created"))
                    for h in hosts if h.name not in present]
        layout = room.swarm_layout()
        swarm = room.remote.converge_swarm(machines, access, layout, room.progress)
        swarm.apply_to(reports)
        if layout.nodes and state.meta().routing_mesh is None:  # asked once: the kernel does not change
            state.update_meta(routing_mesh=room.remote.routing_mesh(machines, access))
        entries = room.roster(machines)
        # No student host made at all (every one failed): exit 3 naming them, no sheets to print.
        sheet_files, sheets_dir = render_sheets(room, entries, machines) if entries else ([], None)
    return UpResult(room.name, backend.name, reports, sorted({m.name for m in machines} - before,
                                                                key=host_order),
                    sheet_files, sheets_dir, room.expires_at(), swarm, renewed,
                    isolates_students=backend.isolates_students, swarm_mode=config.swarm.mode if layout.nodes else None,
                    routing_mesh=state.meta().routing_mesh, swarm_formed=layout.formed)


def _host_numbers(machines: list[Machine], role: str) -> list[int]:
    """The numbers of the `role` hosts among `machines` (student-03 -> 3; a student's node
    student-03-node-2 counts as node 2), and 0."""
    from stacks import host_numbers

    if role == "student":
        return [0] + [host_numbers(m.name)[0] for m in machines if m.name.startswith("student-")]
    return [0] + [host_numbers(m.name)[0] for m in machines if m.name.startswith("swarm-")] \
        + [host_numbers(m.name)[1] for m in machines if m.name.startswith("student-")]


def refuse_other_swarm_mode(room: Classroom, existing: list[Machine]) -> None:
    """BadInput when the classroom's Swarm nodes are of the other `swarm.mode`: switching would
    leave one kind of nodes behind, unconverged, with accounts of the other kind."""
    per_student = room.config.swarm.per_student
    other = [m.name for m in existing if m.role != Role.STUDENT and (m.student is None) == per_student]
    if other:
        made = "shared" if per_student else "per-student"
        raise BadInput(f"swarm.mode: classroom {room.name!r} was made with {made} Swarm nodes ({other[0]}, …): "
                       f"keep `mode: {made}`, or `classroom down` then `classroom up`")


# A container made by an `up` that was interrupted before it started: it is made again.
NEVER_STARTED = (MachineState.CREATED, MachineState.MISSING)


def refuse_lost_secrets(room: Classroom, lost: LostSecrets, new_secrets: bool) -> None:
    """BadInput unless the trainer asked for new secrets and the backend can install them."""
    where = room.state.path
    if not new_secrets:
        raise BadInput(f"classroom {room.name!r} has hosts whose secrets are gone from {where} ({lost.describe()}): "
                       "restore them, or run `classroom up --new-secrets` to make new ones "
                       "(new passwords void the printed sheets), or `classroom down` then `classroom up`")
    backend = room.backend
    if (lost.admin_key or lost.host_keys) and not backend.can_repair_access:
        what = "the admin key" if lost.admin_key else f"the host keys of {', '.join(lost.host_keys)}"
        way_out = ("`classroom down` then `classroom up`" if lost.admin_key else
                   f"`classroom reset --hard {' '.join(lost.host_keys)}` (new machines), or `classroom down` "
                   "then `classroom up`")
        raise BadInput(f"{what} of classroom {room.name!r} cannot be installed anew on {backend.name} hosts "
                       f"without the old one: {way_out}")


def restore_access(room: Classroom, machines: list[Machine], lost: LostSecrets, admin_public_key: str) -> list[str]:
    """`up --new-secrets` on hosts that outlived their secrets: install the new admin key and host
    keys through the backend (not SSH: the tool can no longer log in, or no longer trusts the
    host). New passwords need nothing here: provisioning sets them. Returns what was renewed."""
    backend = room.backend
    running = [m for m in machines if m.running]
    renewed = []
    if lost.admin_key:
        for machine in running:
            backend.repair_access(machine, admin_public_key)
        renewed.append(f"a new admin key, installed on {len(running)} host(s)")
    for machine in running:
        if machine.name in lost.host_keys:
            backend.restore_host_key(machine, room.state.host_key(machine.name))
    if lost.host_keys:
        renewed.append(f"new host keys for {', '.join(lost.host_keys)}")
    if lost.passwords:
        renewed.append(f"new passwords for {', '.join(lost.passwords)}: the sheets printed before are void, "
                       "print the new ones")
    if lost.swarm_passwords:
        renewed.append("new Swarm passwords for every student: the sheets printed before are void, "
                       "print the new ones")
    return renewed


def course_record(config: ClassroomConfig) -> CourseRecord:
    """What `up` made the classroom from: reset, status and sheets refuse another course."""
    return CourseRecord(file=str(config.source) if config.source else None, digest=config.source_digest)


def require_recorded_course(room: Classroom) -> None:
    """BadInput when the classroom file given now is not the one the last `up` applied (or is
    missing): reset would restore the wrong exercises, status would check the wrong images."""
    recorded = room.state.meta().course
    if recorded is None:
        return  # made before courses were recorded: nothing to compare with
    made_from, digest = recorded.file, recorded.digest
    config = room.config
    if config.source_digest == digest:
        return
    name = room.name
    if made_from is None:
        raise BadInput(f"classroom {name!r} was made without a classroom file, not from {config.source}: "
                       "`classroom up` applies a file")
    if config.source is None:
        if Path(made_from).is_file():
            raise BadInput(f"classroom {name!r} was made from {made_from}: add `-f {made_from}`")
        raise BadInput(f"classroom {name!r} was made from {made_from}, which is missing: restore it "
                       "(`classroom -f FILE up` applies another course)")
    if not Path(made_from).is_file() or config.source != Path(made_from):
        raise BadInput(f"classroom {name!r} was made from {made_from}, not {config.source}: add `-f {made_from}`, "
                       "or `classroom up` applies this file")
    raise BadInput(f"{made_from} changed since classroom {name!r} was made from it: `classroom up` applies "
                   "a changed file")


# --- sheets ----------------------------------------------------------------------------------------
def default_sheets_dir(room: Classroom) -> Path:
    return room.state.path / "sheets"


def render_sheets(room: Classroom, entries: list[RosterEntry] | None = None,
                  machines: list[Machine] | None = None, *, formats: tuple[str, ...] = ("html", "md"),
                  lang: str | None = None, out_dir: Path | None = None) -> tuple[list[Path], Path]:
    from .sheets import SheetCourse
    from .sheets import render_sheets as render

    machines = room.backend.machines() if machines is None else machines
    entries = room.roster(machines) if entries is None else entries
    if not entries:
        raise BadInput(f"classroom {room.name!r} has no students yet: run `classroom up` first")
    course = SheetCourse(
        classroom=room.name,
        images=[image.name for image in room.config.images],
        exercises="~/exercises" if room.config.exercises else None,
        swarm=[node for node in room.swarm_access(machines) if node.student is None],  # shared: on every sheet
        expires_at=room.expires_at(),
        backend=room.backend_name,
        timezone=room.config.timezone,
        swarm_formed=room.config.swarm.formed,
        routing_mesh=room.state.meta().routing_mesh,
    )
    out = out_dir or default_sheets_dir(room)
    try:
        return render(entries, course, formats=list(formats), lang=lang or room.config.sheets.lang, out_dir=out), out
    except OSError as exc:
        if out_dir is None:
            raise
        raise BadInput(f"--out: cannot write the sheets to {out}: {exc.strerror or exc}") from None


# --- status ----------------------------------------------------------------------------------------
@dataclass
class HostStatus:
    name: str
    role: Role
    student: str | None
    address: str | None
    port: int | None
    state: str  # ready | failed | missing | stopped | ...
    checks: dict[str, bool]
    detail: str | None = None

    def as_json(self) -> dict:
        return {"name": self.name, "role": self.role, "student": self.student, "address": self.address,
                "port": self.port, "state": self.state, "checks": self.checks, "detail": self.detail}


@dataclass
class StatusResult:
    classroom: str
    backend: str
    hosts: list[HostStatus]
    exists: bool
    swarm: SwarmStatus | None = None

    @property
    def not_ready(self) -> list[HostStatus]:
        return [h for h in self.hosts if h.state != "ready"]

    def as_json(self) -> dict:
        return {"classroom": self.classroom, "backend": self.backend, "hosts": [h.as_json() for h in self.hosts]}


def status(room: Classroom) -> StatusResult:
    from .workers import worker_pool

    if room.state.exists:
        require_recorded_course(room)
    machines = room.backend.machines()
    exists = bool(machines) or room.state.exists
    by_name = {m.name: m for m in machines}
    planned = room.planned_hosts() if exists else []
    passwords = room.state.known_passwords()
    present = [by_name[h.name] for h in planned if h.name in by_name]
    swarm = None
    with worker_pool(1) as pool:  # the Swarm view (admin) while the students' checks run
        from .swarm import is_swarm_node

        layout = room.swarm_layout()
        nodes = [m for m in present if is_swarm_node(m, layout) and m.running]
        future = pool.submit(room.remote.swarm_status, nodes, room.admin_access(), layout) if nodes else None
        checked = room.remote.check_all(room, present, passwords)
        swarm = future.result() if future else None
    hosts = []
    for spec in planned + [m for m in machines if m.name not in {h.name for h in planned}]:
        machine = by_name.get(spec.name)
        if machine is None:
            hosts.append(HostStatus(spec.name, spec.role, spec.student, None, None, "missing", {}))
            continue
        checks, detail = checked.get(machine.name, ({}, None))
        if swarm is not None and machine.name in swarm.checks:
            checks = {**checks, **swarm.checks[machine.name]}
            detail = detail or swarm.detail_for(machine.name)
        state = machine.state if not machine.running else ("ready" if checks and all(checks.values())
                                                            else "failed")
        hosts.append(HostStatus(machine.name, observed_role(spec.role, machine, swarm), machine.student,
                                machine.public_host, machine.public_port, state, checks, detail))
    return StatusResult(room.name, room.backend_name, hosts, exists, swarm)


def observed_role(planned: Role, machine: Machine, swarm: SwarmStatus | None) -> Role:
    """A Swarm node's role as its cluster lists it (a student may have promoted or formed one), else
    `swarm-node` while it is in no cluster and none is expected (`formed: false`), else as planned."""
    node = swarm.node(machine.name) if swarm is not None and machine.role != Role.STUDENT else None
    if node is None:
        return planned if machine.role != Role.STUDENT else Role.STUDENT
    if node.in_cluster and node.role is not None:
        return Role.SWARM_MANAGER if node.role == "manager" else Role.SWARM_WORKER
    return Role.SWARM_NODE if not swarm.formed else planned


# --- down ------------------------------------------------------------------------------------------
@dataclass
class DownResult:
    classroom: str
    removed: list[Leftover]
    leftovers: list[Leftover]
    already_gone: bool
    cleared: list[Path] = field(default_factory=list)  # cache files removed (`--clear-cache`)


def down(room: Classroom, clear_cache: bool = False) -> DownResult:
    """Remove everything of the classroom. Never blocked by its state folder: a damaged file
    reads as empty (the backend finds the machines by label or tag, not from the folder), and
    the folder goes at the end. `clear_cache`: also the cached files only this classroom used."""
    room.state.salvage = True
    backend = room.backend
    with room.state.lock("down"):
        existed = bool(backend.leftovers()) or room.state.exists
        # Nothing of it anywhere: nothing to destroy (and no engine needed, e.g. no `pulumi`).
        removed = backend.destroy(room.progress) if existed else []
        left = backend.leftovers()
        cleared = clear_course_cache(room) if clear_cache and not left else []
        if not left:
            room.state.remove()
    return DownResult(room.name, removed, left, already_gone=not existed and not removed, cleared=cleared)


def course_cache(room: Classroom) -> list[Path]:
    """The cached files (saved images, exercise archives) this classroom's `up`s used and no
    other classroom here records: the cache is shared by image ID, so another classroom's stay."""
    mine = {Path(p) for p in room.state.meta().cache}
    root = room.state.path.parent
    for other in root.iterdir() if mine and root.is_dir() else []:
        if other.name != room.name and other.is_dir():
            mine -= {Path(p) for p in ClassroomState(other.name, root).salvaged_meta().cache}
    return sorted(path for path in mine if path.is_file())


def clear_course_cache(room: Classroom) -> list[Path]:
    cleared = course_cache(room)
    for path in cleared:
        path.unlink(missing_ok=True)
    return cleared


def down_preview(room: Classroom) -> list[Leftover]:
    """What `down` would delete, as found now (for the confirmation)."""
    return room.backend.leftovers()


# --- extend ----------------------------------------------------------------------------------------
@dataclass
class ExtendResult:
    classroom: str
    backend: str
    previous: datetime | None
    expires_at: datetime
    hosts: list[str]  # the hosts told (none where the backend enforces no expiry)
    sheets_dir: Path | None

    @property
    def summary(self) -> str:
        """The line `extend` shows (the CLI and the web dashboard)."""
        told = (f"{len(self.hosts)} host(s) told" if self.backend != "local"
                else "local hosts enforce no expiry: remove them with `classroom down`")
        return f"classroom {self.classroom}: expires {self.expires_at:%Y-%m-%d %H:%M} UTC ({told})."


def extend(room: Classroom, duration: timedelta) -> ExtendResult:
    """Move the classroom's expiry to max(now, current expiry) + duration: on every host that
    enforces it (aws), in the state, and on the sheets."""
    require_record(room)
    with room.state.lock("extend"):
        now = datetime.now(timezone.utc).replace(microsecond=0)
        previous = room.expires_at()
        expires_at = max(now, previous) + duration if previous else now + duration
        hosts = room.backend.set_expiry(expires_at)
        room.state.update_meta(expires_at=expires_at)
        sheets_dir = None
        if room.state.known_passwords(missing_ok=True):  # the expiry moves even when the sheets cannot
            _files, sheets_dir = render_sheets(room)
    return ExtendResult(room.name, room.backend_name, previous, expires_at, hosts, sheets_dir)


# --- reset -----------------------------------------------------------------------------------------
@dataclass
class ResetReport:
    name: str
    hard: bool
    ok: bool
    seconds: float
    error: str | None = None
    changes: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        """The line `reset` shows (the CLI and the web dashboard)."""
        if self.ok:
            return f"{self.name}: clean ({'replaced' if self.hard else 'reset'} in {self.seconds:.1f} s)"
        return f"{self.name}: {self.error}"


def require_record(room: Classroom) -> None:
    """BadInput unless the classroom's record (classroom.json: counts, expiry, course) exists.
    Hosts that run without it are still the classroom's (the engine's labels say so)."""
    if room.state.exists:
        return
    try:
        hosts = room.backend.machines()
    except Exception:  # no engine or cloud to ask: nothing says the classroom exists
        hosts = []
    if hosts:
        raise BadInput(f"{room.state.path / META_FILE} is missing, though classroom {room.name!r} has hosts: "
                       "`classroom up` rebuilds it from them (the expiry restarts); "
                       "`classroom down` still removes the classroom")
    raise BadInput(f"no classroom named {room.name!r} here: create it with `classroom up`")


def resolve_targets(room: Classroom, targets: list[str]) -> list[HostSpec]:
    """`student-12`, `12`, `swarm-2` -> the planned hosts; BadInput before anything is touched."""
    from .roster import resolve_host

    require_record(room)
    planned = {h.name: h for h in room.planned_hosts()}
    names = []
    for target in targets:
        name = resolve_host(target, list(planned))
        if name not in names:
            names.append(name)
    return [planned[n] for n in names]


def check_reset_options(*, hard: bool, keep_home: bool) -> None:
    if keep_home and hard:
        raise BadInput("--keep-home keeps the home folder in a soft reset: --hard replaces the whole machine")


def reset(room: Classroom, targets: list[str], *, hard: bool = False, keep_home: bool = False) -> list[ResetReport]:
    """Give each named student a clean machine; nobody else is touched. `keep_home` (soft only):
    their home folder stays, ~/exercises included (only missing course files come back)."""
    import time

    from .provisioning import prepare_course
    from .ssh import in_parallel
    from .swarm import swarm_clusters

    check_reset_options(hard=hard, keep_home=keep_home)
    specs = with_own_nodes(room, resolve_targets(room, targets))
    if not hard and any(spec.is_shared_node for spec in specs):
        raise BadInput("a Swarm node is shared by every student: reset it with --hard")
    require_recorded_course(room)
    unknown = [spec.student for spec in specs if spec.student and spec.student not in room.state.known_passwords()]
    if unknown:
        raise BadInput(f"the password of {', '.join(unknown)} is gone from {room.state.path}: restore it, or "
                       "`classroom up --new-secrets` makes new ones (the printed sheets become void)")
    swarm_specs = [spec for spec in specs if spec.is_shared_node]
    if swarm_specs and not room.state.known_passwords(swarm=True):
        raise BadInput(f"the students' Swarm passwords are gone from {room.state.path}: restore them, or "
                       "`classroom up --new-secrets` makes new ones (the printed sheets become void)")
    with room.state.lock("reset"):
        backend = room.backend
        key = room.state.admin_key()
        passwords = room.state.known_passwords()
        # Only the hashes these hosts take (each kept hash is checked against its password).
        hashes = room.state.password_hashes({spec.student: passwords[spec.student] for spec in specs if spec.student})
        swarm_passwords = room.state.known_passwords(swarm=True) if swarm_specs else {}
        swarm_hashes = room.state.password_hashes(swarm_passwords, swarm=True)
        course = prepare_course(room, rebuild=False)
        machines = {m.name: m for m in backend.machines()}
        # Before anything is removed: a replaced host takes its kept key; a lost one would leave
        # a machine whose sshd never starts (or one the tool no longer recognises).
        lost_keys = room.state.lost_host_keys([spec.name for spec in specs if spec.name in machines])
        if lost_keys:
            raise BadInput(f"the host keys of {', '.join(lost_keys)} are missing or damaged in {room.state.path}: "
                           "restore them, or `classroom up --new-secrets` installs new ones")
        if swarm_specs:  # hard only (refused above otherwise): hand managers' roles over first
            room.remote.release_nodes(list(machines.values()), room.admin_access(), [s.name for s in swarm_specs],
                                      room.progress)
        remote = room.remote
        layout = room.swarm_layout()
        # Students' own clusters: those of the named students (a node alone: its owner's, not cleaned).
        owners = {spec.student for spec in specs if spec.student and layout.per_student and layout.nodes}
        keep_swarm = layout.formed and bool(owners)  # a formed cluster of their own keeps its ID
        whole = {spec.student for spec in specs if spec.role == Role.STUDENT} & owners
        cleaned: list[str] = []
        if keep_swarm and not hard:  # services first, or their tasks come back on the wiped nodes
            clusters = [c for c in swarm_clusters(machines.values(), layout) if c[0].student in whole]
            for _cluster, done, error in in_parallel(clusters, lambda c: remote.clean_swarm(
                    c, room.admin_access(), backend)):
                cleaned += done if error is None else [f"Swarm services not removed: {last_line(error)}"]
        room.progress.start("reset", f"{'Replacing' if hard else 'Resetting'} {len(specs)} host(s)",
                            total=len(specs))

        def reset_one(spec: HostSpec) -> ResetReport:
            started = time.monotonic()
            machine = machines.get(spec.name)
            replaced = hard or machine is None or not machine.running
            if replaced:
                machine = backend.replace(spec, key.public_line)
            own, own_hashes = (swarm_passwords, swarm_hashes) if spec.is_shared_node else (passwords, hashes)
            # Soft: the wipe starts the engine first, fails on any Docker error, looks for leftovers.
            changes, (checks, detail) = remote.provision_and_check(
                machine, own_hashes, room.admin_access(), course, backend, own, fresh_exercises=not keep_home,
                new_host=replaced, wipe=None if replaced else spec.student or "", keep_home=keep_home,
                keep_swarm=keep_swarm and spec.student in owners, repairable=backend.can_repair_access)
            failing = [name for name, ok in checks.items() if not ok]
            error = f"check failed: {', '.join(failing)}" + (f" ({detail})" if detail else "") if failing else None
            return ResetReport(spec.name, hard, not failing, time.monotonic() - started, error, changes)

        outcomes = in_parallel(specs, reset_one, limit=room.config.preload.parallel,
                               on_done=lambda s, _r, _e: room.progress.advance("reset", detail=s.name))
        room.progress.finish("reset")
        reports = []
        for spec, report, error in outcomes:
            reports.append(report or ResetReport(spec.name, hard, False, 0.0, last_line(error)))
        if cleaned and reports:
            reports[0].changes += cleaned
        if swarm_specs:
            remote.converge_swarm(backend.machines(), room.admin_access(), layout, room.progress).apply_to(reports)
        elif owners and layout.formed:  # their own clusters only: rejoined, re-formed after --hard
            mine = [m for m in backend.machines() if m.student in owners]
            remote.converge_swarm(mine, room.admin_access(), layout, room.progress).apply_to(reports)
    return reports


def with_own_nodes(room: Classroom, specs: list[HostSpec]) -> list[HostSpec]:
    """A student's host brings their own Swarm nodes along (their whole cluster is reset)."""
    students = {spec.student for spec in specs if spec.role == Role.STUDENT}
    nodes = [h for h in room.planned_hosts() if h.node and h.student in students and h not in specs]
    return sorted([*specs, *nodes], key=lambda h: host_order(h.name))


# --- exec ------------------------------------------------------------------------------------------
@dataclass
class ExecResult:
    name: str
    ok: bool
    exit_code: int
    stdout: str
    stderr: str


def exec_on_hosts(room: Classroom, command: str, pattern: str = "*") -> list[ExecResult]:
    """Run a command as the admin on every host whose name matches `pattern`, in parallel."""
    from fnmatch import fnmatch

    from .ssh import admin_connection, in_parallel, opened, run

    machines = [m for m in room.backend.machines() if fnmatch(m.name, pattern) and m.running]
    if not machines:
        raise BadInput(f"no running host of classroom {room.name!r} matches {pattern!r}")
    access = room.admin_access()

    def run_one(machine: Machine) -> ExecResult:
        with opened(admin_connection(machine, access), 20) as connection:
            result = run(connection, command, timeout=3600)
        return ExecResult(machine.name, result.ok, result.exit_code, result.stdout, result.stderr)

    results = []
    for machine, result, error in in_parallel(machines, run_one, limit=room.config.preload.parallel):
        results.append(result or ExecResult(machine.name, False, -1, "", last_line(error)))
    return results


def ssh_argv(room: Classroom, target: str) -> list[str]:
    """The `ssh` command line that opens an admin session on one host."""
    (spec,) = resolve_targets(room, [target])
    machine = next((m for m in room.backend.machines() if m.name == spec.name and m.running), None)
    if machine is None:
        raise BadInput(f"{spec.name} is not running: `classroom up` brings it back")
    key = room.state.admin_key()
    if spec.name not in room.state.host_keys():
        raise BadInput(f"{spec.name} has no known host key in {room.state.path}: `classroom up` gives it one")
    # The classroom's own known_hosts, looked up by host name (HostKeyAlias): the trainer's
    # ~/.ssh/known_hosts is neither read nor written, and a mismatch stops ssh.
    return ["ssh", "-i", str(key.private_path), "-p", str(machine.ssh_port),
            "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={room.state.known_hosts_path}", "-o", f"HostKeyAlias={spec.name}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            f"{machine.admin_user}@{machine.ssh_host}"]
