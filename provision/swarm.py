"""The classroom's small Docker Swarm cluster: formed, repaired and inspected over SSH.

Everything runs as the admin (root, the classroom's key) through Fabric, so the local and the
cloud backend share this code. `converge_swarm` is idempotent:

- a cluster that exists is kept (never re-initialised: its ID does not change);
- a node that is not in it (a replaced machine, a node that left) joins it;
- entries of the node list that belonged to a previous life of one of our machines (same
  hostname or address, another node ID: `Down` after a `reset --hard`) are removed;
- exactly `managers` nodes (an odd number; swarm-1 … swarm-k) are managers;
- only when no manager is left (the only manager was replaced, or it left the swarm) is a new
  cluster formed on swarm-1, and the report says so. When more than half of the managers were
  replaced at once, the survivor recovers the cluster with `--force-new-cluster` (its ID and
  its services are kept).

`release_node` is the step before a `reset --hard` of a node: it hands a manager's role over, so
that replacing even the only manager keeps the cluster. `swarm_status` is what `status` shows.

Networking, as measured on the local backend (Docker-in-Docker, Debian's 20.10): overlay
networks work across nodes (VXLAN), and so do DNS round-robin (`endpoint_mode: dnsrr`) and
`--publish mode=host`; the ingress routing mesh and service VIPs do not, for the kernel there
has no IPVS (no ip_vs module in this VM's kernel). Cloud hosts (EC2, stock kernels) have IPVS.

Join tokens are read over SSH into this process's memory and handed to the remote shell on the
session's stdin (`read -r token`): they never appear in this tool's process arguments, its
logs, its reports or on screen (error texts are scrubbed). On the node, `docker swarm join`
receives the token as an argument, which cannot be avoided with the Docker CLI; it lives for the
duration of the join, and a student on that node could read it with `ps`. That discloses nothing
new: students are in the `docker` group on every node, so they can already run
`docker swarm join-token` on a manager.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from fabric import Connection

from .backends.base import Machine
from .errors import ClassroomError, last_line
from .progress import NULL_PROGRESS, Progress
from .ssh import AdminAccess, Result, admin_connection, in_parallel, open_with_retry, run
from .untrusted import clean

log = logging.getLogger(__name__)

SWARM_PORT = 2377
READY_TIMEOUT = 40.0  # seconds for joined nodes to report Ready
STATUS_CONNECT_SECONDS = 8.0  # `status` must not hang on a dead host
JOIN_TIMEOUT = 90  # `docker swarm join` waits for the manager itself; bound the session anyway

# One line of JSON per node of the node list (run on a manager).
NODE_LIST = (
    "ids=$(docker node ls -q) && docker node inspect --format "
    + shlex.quote(
        '{"id":{{json .ID}},"hostname":{{json .Description.Hostname}},"state":{{json .Status.State}},'
        '"addr":{{json .Status.Addr}},"role":{{json .Spec.Role}},"availability":{{json .Spec.Availability}},'
        '"manager":{{json .ManagerStatus}}}'
    )
    + " $ids"
)
LOCAL_INFO = "docker info --format '{{json .Swarm}}'"
# The token arrives on stdin: the shell's `read` builtin keeps it out of every command line we send.
JOIN = 'read -r token && exec docker swarm join --token "$token" {advertise}{address}'


class SwarmError(ClassroomError):
    """The cluster could not be formed or repaired; the message says why (never a token)."""


# --- what converge and status return ------------------------------------------------------------
@dataclass
class SwarmNodeReport:
    """What `converge_swarm` did to one node."""

    name: str  # swarm-1
    ok: bool
    role: str | None = None  # manager | worker, once converged
    node_id: str | None = None
    error: str | None = None
    changes: list[str] = field(default_factory=list)  # "joined as worker", "promoted", ...


@dataclass
class SwarmReport:
    """The outcome of `converge_swarm`, for the CLI's `up`/`reset` report."""

    cluster_id: str | None
    manager: str | None  # the node the tool drove the cluster through
    nodes: list[SwarmNodeReport]
    formed: bool = False  # a new cluster was initialised during this run
    lost: bool = False  # ... because the previous one had no manager left (say so on screen)
    recovered: bool = False  # a manager without quorum was forced into a new cluster (ID kept)
    removed: list[str] = field(default_factory=list)  # stale entries removed: "swarm-3 (ab12cd34ef56)"
    notes: list[str] = field(default_factory=list)  # lines worth showing the trainer
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(node.ok for node in self.nodes)

    @property
    def failed(self) -> list[SwarmNodeReport]:
        return [node for node in self.nodes if not node.ok]

    @property
    def changed(self) -> bool:
        return self.formed or self.recovered or bool(self.removed) or any(n.changes for n in self.nodes)

    def changes_for(self, name: str) -> list[str]:
        """Lines to add to that host's HostReport.changes."""
        return next((n.changes for n in self.nodes if n.name == name), [])

    def error_for(self, name: str) -> str | None:
        return next((n.error for n in self.nodes if n.name == name), None)

    def apply_to(self, host_reports: list) -> None:
        """Merge into `up`'s HostReports (anything with name, ok, error, changes): changes, failures."""
        for host in host_reports:
            node = next((n for n in self.nodes if n.name == host.name), None)
            if node is None:
                continue
            host.changes.extend(node.changes)
            if not node.ok:
                host.ok = False
                host.error = host.error or f"swarm: {node.error or 'not in the cluster'}"

    def as_json(self) -> dict:
        return asdict(self)


@dataclass
class SwarmNodeStatus:
    """One Swarm node as `status` shows it."""

    name: str
    state: str  # the engine's view: active | inactive | pending | error | locked | unreachable
    node_id: str | None = None
    role: str | None = None  # manager | worker (from the cluster's node list)
    availability: str | None = None  # active | pause | drain
    status: str | None = None  # ready | down | unknown | disconnected
    reachability: str | None = None  # managers: reachable | unreachable
    leader: bool = False
    in_cluster: bool = False  # listed in the node list of the reachable manager
    detail: str | None = None

    @property
    def ok(self) -> bool:
        return (self.state == "active" and self.in_cluster and self.status == "ready"
                and (self.role != "manager" or self.reachability == "reachable"))

    def as_json(self) -> dict:
        return {**asdict(self), "ok": self.ok}


@dataclass
class SwarmStatus:
    """The cluster as `status` shows it: per node, plus the manager that answered."""

    nodes: list[SwarmNodeStatus]
    cluster_id: str | None = None
    manager: str | None = None  # the manager that answered `docker node ls`, None if none did
    ready_nodes: int = 0  # nodes Ready in that manager's list
    listed_nodes: int = 0  # entries in the list (ours and any other)
    stale: list[str] = field(default_factory=list)  # entries not matching a current node (`Down`)

    @property
    def manager_reachable(self) -> bool:
        return self.manager is not None

    @property
    def checks(self) -> dict[str, dict[str, bool]]:
        """{"swarm-1": {"swarm": True}, ...}: merge into each host's status checks."""
        return {node.name: {"swarm": self.manager_reachable and node.ok} for node in self.nodes}

    def node(self, name: str) -> SwarmNodeStatus | None:
        return next((n for n in self.nodes if n.name == name), None)

    def detail_for(self, name: str) -> str | None:
        """Why that node's `swarm` check fails (None when it passes or is not a node)."""
        node = self.node(name)
        if node is None or self.checks[name]["swarm"]:
            return None
        if self.manager is None:
            return "swarm: no manager reachable"
        if node.in_cluster and node.status != "ready":
            return f"swarm: node is {clean(node.status or '')}"
        if node.role == "manager" and node.reachability != "reachable":
            return f"swarm: manager is {clean(node.reachability or 'unknown')}"
        return f"swarm: {clean(node.detail or node.state)}"  # the node's own words (docker info)

    @property
    def summary(self) -> str:
        """One line for the status screen."""
        if not self.nodes:
            return "no Swarm nodes"
        if self.manager is None:
            return f"Swarm: no manager reachable ({len(self.nodes)} node(s))"
        stale = f", {len(self.stale)} stale entr{'y' if len(self.stale) == 1 else 'ies'}" if self.stale else ""
        return f"Swarm: manager {self.manager} reachable, {self.ready_nodes}/{len(self.nodes)} node(s) Ready{stale}"

    def as_json(self) -> dict:
        return {"cluster_id": self.cluster_id, "manager": self.manager,
                "manager_reachable": self.manager_reachable, "ready_nodes": self.ready_nodes,
                "listed_nodes": self.listed_nodes, "stale": self.stale,
                "nodes": [n.as_json() for n in self.nodes]}


# --- internal views ---------------------------------------------------------------------------------
@dataclass
class _Local:
    """`docker info .Swarm` of one node."""

    state: str = "inactive"
    node_id: str = ""
    control: bool = False  # a manager
    cluster_id: str | None = None
    error: str = ""

    @classmethod
    def parse(cls, text: str) -> _Local:
        data = json.loads(text.strip() or "{}")
        cluster = data.get("Cluster") or {}
        return cls(state=data.get("LocalNodeState") or "inactive", node_id=data.get("NodeID") or "",
                   control=bool(data.get("ControlAvailable")), cluster_id=cluster.get("ID"),
                   error=data.get("Error") or "")


@dataclass
class _Entry:
    """One entry of a manager's node list."""

    id: str
    hostname: str
    state: str  # ready | down | unknown | disconnected
    addr: str
    role: str  # manager | worker
    availability: str
    reachability: str | None
    leader: bool
    manager_addr: str | None

    @classmethod
    def parse(cls, line: str) -> _Entry:
        data = json.loads(line)
        manager = data.get("manager") or {}
        return cls(id=data["id"], hostname=data.get("hostname") or "", state=(data.get("state") or "").lower(),
                   addr=data.get("addr") or "", role=(data.get("role") or "").lower(),
                   availability=(data.get("availability") or "").lower(),
                   reachability=manager.get("Reachability"), leader=bool(manager.get("Leader")),
                   manager_addr=manager.get("Addr"))

    def addresses(self) -> set[str]:
        found = {self.addr}
        if self.manager_addr:
            found.add(self.manager_addr.rsplit(":", 1)[0])
        return found - {"", "0.0.0.0"}


class _Secrets:
    """Tokens read during this run: scrubbed from every text that leaves this module."""

    def __init__(self) -> None:
        self._values: set[str] = set()

    def add(self, value: str) -> str:
        if value:
            self._values.add(value)
        return value

    def scrub(self, text: str) -> str:
        for value in self._values:
            text = text.replace(value, "<token>")
        # Belt and braces: anything shaped like a join token, whatever its origin.
        return re.sub(r"SWMTKN-[0-9A-Za-z-]+", "<token>", text)


@dataclass
class _Node:
    machine: Machine
    connection: Connection | None = None
    local: _Local | None = None
    report: SwarmNodeReport | None = None

    @property
    def name(self) -> str:
        return self.machine.name

    @property
    def usable(self) -> bool:
        return self.connection is not None and self.local is not None and self.report is not None \
            and self.report.error is None


def swarm_machines(machines: Iterable[Machine]) -> list[Machine]:
    """The Swarm nodes among a classroom's machines, swarm-1 first."""
    return sorted((m for m in machines if m.role != "student"), key=_index)


def desired_manager_count(managers: int, nodes: int) -> int:
    """`managers`, capped to the nodes there are, kept odd (a Raft quorum), at least one."""
    count = max(1, min(managers, nodes))
    return count if count % 2 else count - 1


# --- converge ---------------------------------------------------------------------------------------
def converge_swarm(machines: list[Machine], access: AdminAccess, managers: int = 1,
                   progress: Progress = NULL_PROGRESS) -> SwarmReport:
    """Form the cluster, or repair it, so that every running Swarm node is in it and Ready.

    `machines` may include the student hosts (ignored). Never raises for a node's failure, nor
    when no cluster can be had at all (swarm-1 unreachable and no manager left): each node's
    report says what went wrong; see `report.ok` and `report.failed`.
    """
    started = time.monotonic()
    secrets = _Secrets()
    nodes = [_Node(m) for m in swarm_machines(machines)]
    report = SwarmReport(cluster_id=None, manager=None, nodes=[])
    if not nodes:
        return report
    wanted = desired_manager_count(managers, len(nodes))
    manager_names = {n.name for n in nodes[:wanted]}
    progress.start("swarm", f"Swarm cluster ({len(nodes)} node(s))", total=len(nodes))
    try:
        _open_and_inspect(nodes, access, secrets)
        try:
            _converge(nodes, manager_names, report, secrets, progress)
        except Exception as exc:  # no cluster at all: every node that is not done says why
            reason = secrets.scrub(last_line(exc))
            for node in nodes:
                if node.report and node.report.error is None and not node.report.ok:
                    node.report.error = reason
        for node in nodes:
            if node.report and node.report.error is None and not node.report.ok:
                node.report.error = "not in the cluster"
            progress.advance("swarm", detail=node.name)
    finally:
        for node in nodes:
            if node.connection is not None:
                node.connection.close()
        progress.finish("swarm")
    for node in nodes:
        if node.report and node.report.error:
            node.report.error = secrets.scrub(node.report.error)
            node.report.ok = False
    report.nodes = [n.report for n in nodes if n.report]
    report.notes = [secrets.scrub(note) for note in report.notes]
    for note in report.notes:
        progress.note(note)
    report.seconds = round(time.monotonic() - started, 2)
    return report


def _open_and_inspect(nodes: list[_Node], access: AdminAccess, secrets: _Secrets,
                      connect_seconds: float | None = None) -> None:
    def work(node: _Node) -> None:
        node.report = SwarmNodeReport(node.name, ok=False)
        if not node.machine.running:
            node.report.error = f"machine is {node.machine.state}"
            return
        connection = admin_connection(node.machine, access)
        if connect_seconds is None:
            open_with_retry(connection)
        else:
            open_with_retry(connection, connect_seconds)
        node.connection = connection
        node.local = _inspect(node)

    for node, _result, error in in_parallel(nodes, work):
        if error is not None:
            if node.report is None:
                node.report = SwarmNodeReport(node.name, ok=False)
            node.report.error = secrets.scrub(last_line(error))


def _inspect(node: _Node) -> _Local:
    assert node.connection is not None
    result = _run(node, LOCAL_INFO, timeout=30)
    if not result.ok:
        raise SwarmError(f"docker info failed: {last_line(result.stderr or result.stdout)}")
    return _Local.parse(result.stdout)


def _converge(nodes: list[_Node], manager_names: set[str], report: SwarmReport, secrets: _Secrets,
              progress: Progress) -> None:
    usable = [n for n in nodes if n.usable]
    try:
        control = _find_control(nodes, report)
    except SwarmError as exc:  # the managers could not be brought back: a new cluster it is
        report.notes.append(f"{last_line(exc)}: forming a new cluster")
        control = None
    if control is None:
        first = nodes[0]
        if not first.usable:
            raise SwarmError(f"no manager is left and {first.name} cannot form the cluster "
                             f"({first.report.error if first.report else 'unreachable'})")
        lost = any(n.local and n.local.state != "inactive" for n in usable)
        silent = [n.name for n in nodes if n.machine.running and not n.usable]
        if lost and silent:  # one of them may still be the manager: two clusters would be worse
            raise SwarmError(f"no manager answers and {', '.join(silent)} cannot be reached: not forming a new "
                             "cluster while the old one may still be alive")
        _init(first, secrets)
        report.formed, report.lost = True, lost
        if lost:
            report.notes.append(f"the Swarm cluster had no manager left (its only manager was replaced "
                                f"or left): a new cluster was formed on {first.name}; services must be "
                                "created again")
        control = first
    assert control.local is not None
    report.manager = control.name
    entries = _node_list(control)
    listed = {e.id for e in entries}

    # Which of our nodes are members; the others (re)join.
    members = [n for n in usable if n.local and n.local.node_id in listed and n.local.state == "active"]
    joiners = [n for n in usable if n not in members]

    # Stale entries: an earlier life of one of our machines (same hostname or address, another ID).
    current = {n.local.node_id for n in members if n.local}
    stale = []
    for entry in entries:
        owner = _owner(entry, nodes)
        if owner is None or entry.id in current or entry.id == control.local.node_id:
            continue
        if owner.usable or entry.state != "ready":  # a live machine has one node ID: this one is an orphan
            stale.append((entry, owner))
    # Stale managers first (demote then remove), so that quorum arithmetic counts live managers only.
    for entry, owner in sorted(stale, key=lambda pair: pair[0].role != "manager"):
        if entry.role == "manager":
            try:
                _manage(control, f"docker node demote {entry.id}", f"demoting the stale entry of {owner.name}", secrets)
            except SwarmError:
                pass  # no longer in Raft (after --force-new-cluster): `rm --force` below takes it
        _manage(control, f"docker node rm --force {entry.id}", f"removing the stale entry of {owner.name}", secrets)
        report.removed.append(f"{owner.name} ({entry.id[:12]})")
        if owner.report is not None:
            owner.report.changes.append(f"stale Swarm entry {entry.id[:12]} removed")

    # Joins: managers one at a time (Raft membership), workers in parallel.
    if joiners:
        address = _advertised(control)
        tokens: dict[str, str] = {}

        def token(role: str) -> str:
            if role not in tokens:
                out = _manage(control, f"docker swarm join-token -q {role}", f"reading the {role} join token", secrets)
                tokens[role] = secrets.add(out.strip())
            return tokens[role]

        def join(node: _Node, role: str) -> None:
            _join(node, address, token(role), role, secrets)

        for node in [n for n in joiners if n.name in manager_names]:
            try:
                join(node, "manager")
            except Exception as exc:
                assert node.report is not None
                node.report.error = secrets.scrub(last_line(exc))
        workers = [n for n in joiners if n.name not in manager_names]
        if workers:
            token("worker")
            for node, _r, error in in_parallel(workers, lambda n: join(n, "worker")):
                if error is not None and node.report is not None:
                    node.report.error = secrets.scrub(last_line(error))
        entries = _node_list(control)

    # Roles: exactly the wanted managers (promote first, then demote: quorum never shrinks below need).
    by_id = {e.id: e for e in entries}
    live = [n for n in usable if n.report and n.report.error is None and n.local and n.local.node_id in by_id]
    promote = [n for n in live if n.name in manager_names and by_id[n.local.node_id].role != "manager"]
    demote = [n for n in live if n.name not in manager_names and by_id[n.local.node_id].role == "manager"]
    if promote:
        _manage(control, "docker node promote " + " ".join(n.local.node_id for n in promote), "promoting", secrets)
        for node in promote:
            node.report.changes.append("promoted to manager")
        # Promotion is asynchronous: let the new managers join Raft before anyone is demoted.
        entries = _wait_ready(control, promote, manager_names)
    if demote:
        # Drive from a manager that stays one: the control node may be about to lose its role.
        if control in demote:
            by_id = {e.id: e for e in entries}
            keeper = next((n for n in live if n.name in manager_names
                           and _settled(by_id.get(n.local.node_id), True)), None)
            if keeper is None:
                raise SwarmError("no other node is a reachable manager: cannot demote " + control.name)
            control = keeper
            report.manager = keeper.name
        others = [n for n in live if n.name in manager_names and n is not control]
        _manage([control, *others], "docker node demote " + " ".join(n.local.node_id for n in demote),
                "demoting", secrets)
        for node in demote:
            node.report.changes.append("demoted to worker")

    entries = _wait_ready(control, live, manager_names)
    by_id = {e.id: e for e in entries}
    report.cluster_id = _cluster_id(control)
    for node in nodes:
        if node.report is None or node.report.error is not None or node.local is None:
            continue
        entry = by_id.get(node.local.node_id)
        if entry is None:
            node.report.error = "not in the node list after joining"
        elif entry.state != "ready":
            node.report.error = f"node is {entry.state}, not ready"
        elif not _settled(entry, node.name in manager_names):
            node.report.error = (f"not yet a reachable manager ({entry.reachability or entry.role})"
                                 if node.name in manager_names else "still a manager")
        else:
            node.report.ok = True
            node.report.role = entry.role
            node.report.node_id = entry.id


def _find_control(nodes: list[_Node], report: SwarmReport) -> _Node | None:
    """A manager that answers for the cluster: the one with the most of our nodes, swarm-1 first.

    When the managers that can still be alive are not a majority of the Raft members (more than
    half of them were replaced), the cluster can never elect a leader again: it is recovered
    from a surviving manager with `--force-new-cluster` (same ID, same services). Members of a
    different cluster than the chosen one leave and rejoin later.
    """
    usable = [n for n in nodes if n.usable]
    candidates = [n for n in usable if n.local and n.local.state == "active" and n.local.control]
    answering: list[tuple[_Node, set[str]]] = []
    without_quorum: list[_Node] = []
    for node in candidates:
        try:
            entries = _node_list(node)
        except Exception:  # no leader (yet), a timeout: try the next manager
            continue
        members = [e for e in entries if e.role == "manager"]
        alive = [e for e in members if _may_be_alive(e, nodes)]
        if 2 * len(alive) > len(members):
            answering.append((node, {e.id for e in entries}))
        else:
            without_quorum.append(node)
    if answering:
        ids = {n.local.node_id for n in usable if n.local}
        best = max(answering, key=lambda pair: (len(pair[1] & ids), -usable.index(pair[0])))
        return best[0]
    if without_quorum:
        candidates = without_quorum
    if candidates:
        node = candidates[0]
        # The daemon may report an error after it did recover (it then fails to update the cluster's
        # settings): what counts is whether the node answers for the cluster afterwards.
        outcome = _run(node, "docker swarm init --force-new-cluster >/dev/null", timeout=60)
        deadline = time.monotonic() + 15
        while True:
            try:
                _node_list(node)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise SwarmError(f"{node.name}: recovering the cluster (--force-new-cluster) failed: "
                                     f"{last_line(outcome.stderr or outcome.stdout)}") from None
                time.sleep(0.5)
        node.local = _inspect(node)
        report.recovered = True
        report.notes.append(f"the Swarm managers had lost their quorum: the cluster was recovered from "
                            f"{node.name} (--force-new-cluster; its ID and services are kept)")
        assert node.report is not None
        node.report.changes.append("cluster recovered from this node (--force-new-cluster)")
        return node
    return None


def _owner(entry: _Entry, nodes: list[_Node]) -> _Node | None:
    """Which of our machines a node-list entry is (or was): same hostname, or same address."""
    for node in nodes:
        if entry.hostname == node.name:
            return node
    for node in nodes:
        if node.machine.private_address and node.machine.private_address in entry.addresses():
            return node
    return None


def _may_be_alive(entry: _Entry, nodes: list[_Node]) -> bool:
    """False when the entry is provably an earlier life of one of our machines (it has another ID now)."""
    owner = _owner(entry, nodes)
    if owner is None or not owner.usable or owner.local is None:
        return True  # not ours, or we cannot tell
    return owner.local.node_id == entry.id


def _init(node: _Node, secrets: _Secrets) -> None:
    assert node.local is not None and node.report is not None
    if node.local.state != "inactive":
        _check(node, "docker swarm leave --force", "leaving a lost cluster")
    address = node.machine.private_address
    flag = f" --advertise-addr {shlex.quote(address)}" if address else ""
    _check(node, f"docker swarm init{flag} >/dev/null", "docker swarm init")
    node.local = _inspect(node)
    node.report.changes.append("Swarm cluster initialised")


def _join(node: _Node, address: str, token: str, role: str, secrets: _Secrets) -> None:
    assert node.local is not None and node.report is not None and node.connection is not None
    if node.local.state != "inactive":  # a member of a cluster that is gone, or of another one
        _check(node, "docker swarm leave --force", "leaving a former cluster")
    own = node.machine.private_address
    command = JOIN.format(advertise=f"--advertise-addr {shlex.quote(own)} " if own else "",
                          address=f"{address}:{SWARM_PORT}")
    result = _run(node, command, stdin=token + "\n", timeout=JOIN_TIMEOUT)
    if not result.ok:
        raise SwarmError(f"docker swarm join failed: {secrets.scrub(last_line(result.stderr or result.stdout))}")
    node.local = _inspect(node)
    node.report.changes.append(f"joined as {role}")


def _wait_ready(control: _Node | list[_Node], nodes: list[_Node], manager_names: set[str]) -> list[_Entry]:
    """The node list once every one of `nodes` is Ready in its wanted role (or the timeout passed).

    A promotion is asynchronous: the node joins Raft a moment after `docker node promote` returns,
    and only answers manager commands (it holds the cluster's CA signer) a moment later still.
    Until then it would not keep the cluster alive if the old manager went away. `control` may be
    a list: the first that answers gives the node list.
    """
    controls = control if isinstance(control, list) else [control]
    deadline = time.monotonic() + READY_TIMEOUT
    wanted = {n.local.node_id: n.name in manager_names for n in nodes if n.local}
    confirmed: set[str] = set()
    while True:
        entries, error = None, None
        for candidate in controls:
            try:
                entries = _node_list(candidate)
                confirmed.add(candidate.name)
                break
            except SwarmError as exc:
                error = exc
        if entries is None:
            if time.monotonic() > deadline:
                raise error or SwarmError("no manager answers")
            time.sleep(0.25)
            continue
        by_id = {e.id: e for e in entries}
        waiting = [i for i, manager in wanted.items() if not _settled(by_id.get(i), manager)]
        if waiting:
            log.debug("waiting for %s", [(by_id[i].hostname, by_id[i].state, by_id[i].role, by_id[i].reachability)
                                         if i in by_id else i for i in waiting])
        else:
            for node in nodes:
                if node.name in manager_names and node.name not in confirmed and node.connection is not None \
                        and _run(node, "docker node ls -q >/dev/null", timeout=20).ok:
                    confirmed.add(node.name)
            if all(n.name in confirmed for n in nodes if n.name in manager_names):
                return entries
        if time.monotonic() > deadline:
            return entries
        time.sleep(0.25)


def _settled(entry: _Entry | None, manager: bool) -> bool:
    if entry is None or entry.state != "ready":
        return False
    return entry.reachability == "reachable" if manager else entry.role == "worker"


def _node_list(node: _Node) -> list[_Entry]:
    assert node.connection is not None
    result = _run(node, NODE_LIST, timeout=30)
    if not result.ok:
        raise SwarmError(f"{node.name}: docker node ls failed: {last_line(result.stderr or result.stdout)}")
    return [_Entry.parse(line) for line in result.stdout.splitlines() if line.strip().startswith("{")]


def _cluster_id(node: _Node) -> str | None:
    assert node.connection is not None
    result = _run(node, "docker info --format '{{.Swarm.Cluster.ID}}'", timeout=30)
    value = result.stdout.strip()
    return value if result.ok and value and value != "<no value>" else None


def _advertised(node: _Node) -> str:
    """The address other nodes join: the manager's address on the classroom's network."""
    if node.machine.private_address:
        return node.machine.private_address
    assert node.connection is not None
    value = _run(node, "docker info --format '{{.Swarm.NodeAddr}}'", timeout=30).stdout.strip()
    if not value:
        raise SwarmError(f"{node.name}: its Swarm address is unknown")
    return value


# Answers of a manager that is still joining Raft, or of a cluster electing its leader: worth a retry.
_TRANSIENT = re.compile(r"being prepared|does not have a leader|deadline exceeded|not a swarm manager|"
                        r"code = Unavailable|trouble connecting", re.IGNORECASE)


def _run(node: _Node, command: str, *, stdin: str | None = None, timeout: int = 60) -> Result:
    """One command on a node, timed in the debug log (commands never hold a token; stdin is not logged)."""
    assert node.connection is not None
    started = time.monotonic()
    result = run(node.connection, command, stdin=stdin, timeout=timeout)
    log.debug("%s: %s -> %s in %.2fs", node.name, command[:80], result.exit_code, time.monotonic() - started)
    return result


def _manage(nodes: _Node | list[_Node], command: str, what: str, secrets: _Secrets,
            retry_seconds: float = 20.0) -> str:
    """Run a manager command on the first of `nodes` that accepts it, retrying transient refusals."""
    candidates = nodes if isinstance(nodes, list) else [nodes]
    deadline = time.monotonic() + retry_seconds
    while True:
        error: SwarmError | None = None
        for node in candidates:
            try:
                return _check(node, command, what, secrets)
            except SwarmError as exc:
                if not _TRANSIENT.search(str(exc)):
                    raise
                error = exc
        if error is None or time.monotonic() > deadline:
            raise error or SwarmError(f"{what}: no manager to run it on")
        time.sleep(0.5)


def _check(node: _Node, command: str, what: str, secrets: _Secrets | None = None) -> str:
    assert node.connection is not None
    result = _run(node, command, timeout=60)
    if not result.ok:
        detail = last_line(result.stderr or result.stdout) or f"exit {result.exit_code}"
        if secrets is not None:
            detail = secrets.scrub(detail)
        raise SwarmError(f"{node.name}: {what} failed: {detail}")
    return result.stdout


# --- before a machine is replaced -----------------------------------------------------------------
def release_node(machines: list[Machine], access: AdminAccess, name: str,
                 progress: Progress = NULL_PROGRESS) -> list[str]:
    """`release_nodes` for one node."""
    return release_nodes(machines, access, [name], progress)


def release_nodes(machines: list[Machine], access: AdminAccess, names: Iterable[str],
                  progress: Progress = NULL_PROGRESS) -> list[str]:
    """Prepare Swarm nodes for `reset --hard` (call it once, just before the `backend.replace`s).

    Best effort, never raises. A worker needs nothing (`converge_swarm` removes its stale entry
    afterwards). A manager is demoted, so that the cluster keeps its quorum and its leader; when
    no manager outside `names` would be left, another Ready node (never one of `names`) is
    promoted first, so the cluster, its ID and its services survive the replacement, and
    `converge_swarm` afterwards gives the roles back. A node that does not answer (the usual
    reason for a hard reset) is left alone: converge will remove its stale entry, or form a new
    cluster if it was the only manager (and say so). Promoting a node that was demoted in the
    last minute or so takes Docker about 30 s (measured); otherwise this takes 1-3 s.
    Returns lines worth showing the trainer.
    """
    secrets = _Secrets()
    nodes = [_Node(m) for m in swarm_machines(machines)]
    leaving = [n for n in nodes if n.name in set(names) and n.machine.running]
    if not leaving:
        return []
    notes: list[str] = []
    progress.start("swarm-release", f"Preparing {', '.join(n.name for n in leaving)} for replacement",
                   total=None)
    try:
        _open_and_inspect(nodes, access, secrets, connect_seconds=STATUS_CONNECT_SECONDS)
        staying = [n for n in nodes if n not in leaving and n.usable and n.local]
        managers = [n for n in nodes if n.usable and n.local and n.local.state == "active" and n.local.control]
        # Drive from a manager that stays one when there is one: the others are about to lose their role.
        control, entries = None, []
        for node in sorted(managers, key=lambda n: n in leaving):
            try:
                entries, control = _node_list(node), node
                break
            except Exception:
                continue
        if control is None:
            return notes
        by_id = {e.id: e for e in entries}
        outgoing = [by_id[n.local.node_id] for n in leaving
                    if n.usable and n.local and n.local.node_id in by_id and by_id[n.local.node_id].role == "manager"]
        if not outgoing:
            return notes
        kept = [n for n in staying if n.local.node_id in by_id and by_id[n.local.node_id].role == "manager"
                and by_id[n.local.node_id].reachability == "reachable"]
        if not kept:
            helper = next((n for n in staying if n.local.node_id in by_id and by_id[n.local.node_id].state == "ready"
                           and by_id[n.local.node_id].availability == "active"), None)
            if helper is None:
                return notes
            _manage(control, f"docker node promote {helper.local.node_id} >/dev/null", f"promoting {helper.name}",
                    secrets)
            _wait_ready(control, [helper], {helper.name})
            kept = [helper]
            notes.append(f"{helper.name} stands in as the Swarm manager while "
                         f"{', '.join(n.name for n in leaving)} {'is' if len(leaving) == 1 else 'are'} replaced")
        # A fresh manager may take a moment to accept commands: the old control node can do it too.
        drivers = [*kept, *([control] if control not in kept else [])]
        for entry in outgoing:
            _manage(drivers, f"docker node demote {entry.id} >/dev/null", f"demoting {entry.hostname}", secrets)
        _wait_ready(drivers, [n for n in leaving if n.usable and n.local and n.local.node_id in
                              {e.id for e in outgoing}], set())
        return notes
    except Exception as exc:  # best effort: converge_swarm repairs whatever is left
        notes.append(secrets.scrub(f"could not hand over the Swarm role: {last_line(exc)}"))
        return notes
    finally:
        for node in nodes:
            if node.connection is not None:
                node.connection.close()
        progress.finish("swarm-release")
        for note in notes:
            progress.note(note)


# --- status -------------------------------------------------------------------------------------------
def swarm_status(machines: list[Machine], access: AdminAccess) -> SwarmStatus:
    """Each node's Swarm state and availability, the manager that answers, the Ready count."""
    secrets = _Secrets()
    nodes = [_Node(m) for m in swarm_machines(machines)]
    if not nodes:
        return SwarmStatus(nodes=[])
    try:
        _open_and_inspect(nodes, access, secrets, connect_seconds=STATUS_CONNECT_SECONDS)
        usable = [n for n in nodes if n.usable]
        managers = [n for n in usable if n.local and n.local.state == "active" and n.local.control]
        control, entries = None, []
        for node in managers:
            try:
                entries = _node_list(node)
                control = node
                break
            except Exception:  # no leader, a timeout: the next manager may answer
                continue
        cluster_id = _cluster_id(control) if control else None
    finally:
        for node in nodes:
            if node.connection is not None:
                node.connection.close()
    by_id = {e.id: e for e in entries}
    result = []
    for node in nodes:
        if not node.usable or node.local is None:
            error = node.report.error if node.report else None
            result.append(SwarmNodeStatus(node.name, "unreachable", detail=error))
            continue
        entry = by_id.get(node.local.node_id) if node.local.node_id else None
        status = SwarmNodeStatus(node.name, node.local.state, node_id=node.local.node_id or None,
                                 detail=node.local.error or None)
        if entry is not None:
            status.in_cluster = True
            status.role, status.availability, status.status = entry.role, entry.availability, entry.state
            status.reachability, status.leader = entry.reachability, entry.leader
        elif control is None:
            status.detail = status.detail or "no manager reachable"
        else:
            status.detail = status.detail or "not in the cluster"
        result.append(status)
    current = {n.node_id for n in result if n.in_cluster}
    names = {n.name for n in nodes}
    stale = [f"{e.hostname} ({e.id[:12]})" for e in entries
             if e.id not in current and e.hostname in names and e.state != "ready"]
    return SwarmStatus(nodes=result, cluster_id=cluster_id, manager=control.name if control else None,
                       ready_nodes=sum(1 for e in entries if e.state == "ready"), listed_nodes=len(entries),
                       stale=stale)


# --- helpers --------------------------------------------------------------------------------------------
def _index(machine: Machine) -> tuple[int, str]:
    number = machine.name.rsplit("-", 1)[-1]
    return (int(number) if number.isdigit() else 0, machine.name)
