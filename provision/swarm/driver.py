"""The Swarm driver: observes the nodes over SSH into the planner's model, carries its actions out.

Everything runs as the admin (root, the classroom's key) through Fabric, so the local and the
cloud backend share this code. `converge_swarm` observes, plans (`planner.plan`), carries the
plan out and checks that every node ended Ready in its role; `release_nodes` does the same with
`planner.plan_release` before a `reset --hard`.

Join tokens are read over SSH into this process's memory and handed to the remote shell on the
session's stdin (`read -r token`): they never appear in this tool's process arguments, its
logs, its reports or on screen (error texts are scrubbed). On the node, `docker swarm join`
receives the token as an argument, which cannot be avoided with the Docker CLI; it lives for the
duration of the join, and a student on that node could read it with `ps`. That discloses nothing
new: students are in the `docker` group on every node, so they can already run
`docker swarm join-token` on a manager.

Only a node that does not answer (SSH, a failed or refused command: `UNANSWERED`) is reported
and passed over; any other exception is a bug and propagates.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from enum import Enum
from itertools import groupby
from typing import TypeVar

import paramiko
from fabric import Connection

from ..backends.base import Machine
from ..errors import ClassroomError, last_line
from ..progress import NULL_PROGRESS, Progress
from ..ssh import (CONNECT_RETRY_SECONDS, AdminAccess, RemoteError, Result, admin_connection, in_parallel,
                   open_with_retry, run)
from . import planner
from .planner import (Action, Availability, Cluster, Demote, Entry, ForceNewCluster, Init, Join, LocalState,
                      LocalSwarm, NodeStatus, NodeView, Plan, Promote, Reachability, RemoveStale, StandIn, SwarmRole)
from .report import SwarmNodeReport, SwarmReport

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

# Answers of a manager that is still joining Raft, or of a cluster electing its leader: worth a retry.
_TRANSIENT = re.compile(r"being prepared|does not have a leader|deadline exceeded|not a swarm manager|"
                        r"code = Unavailable|trouble connecting", re.IGNORECASE)


class SwarmError(ClassroomError):
    """The cluster could not be formed or repaired; the message says why (never a token)."""


# A node that did not answer, or refused: reported and passed over. Anything else is a bug.
UNANSWERED = (SwarmError, RemoteError, paramiko.SSHException, OSError, EOFError)


class Secrets:
    """Tokens read during this run: scrubbed from every text that leaves this package."""

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


def swarm_machines(machines: Iterable[Machine]) -> list[Machine]:
    """The Swarm nodes among a classroom's machines, in order (swarm-1, swarm-2, …, swarm-10)."""
    return sorted((m for m in machines if m.role != "student"), key=_index)


def _index(machine: Machine) -> tuple[int, str]:
    number = machine.name.rsplit("-", 1)[-1]
    return (int(number) if number.isdigit() else 0, machine.name)


# --- one node, over SSH ---------------------------------------------------------------------------
@dataclass
class Node:
    """One of our nodes during a run: its session, what it said, what happened to it."""

    machine: Machine
    connection: Connection | None = None
    local: LocalSwarm | None = None
    node_list: tuple[Entry, ...] | None = None
    report: SwarmNodeReport = field(init=False)

    def __post_init__(self) -> None:
        self.report = SwarmNodeReport(self.machine.name, ok=False)

    @property
    def name(self) -> str:
        return self.machine.name

    @property
    def usable(self) -> bool:
        return self.connection is not None and self.local is not None and self.report.error is None

    @property
    def node_id(self) -> str:
        return self.local.node_id if self.local else ""

    def view(self) -> NodeView:
        return NodeView(self.name, self.machine.private_address, self.local if self.usable else None,
                        self.machine.running, self.report.error, self.node_list if self.usable else None)

    def run(self, command: str, *, stdin: str | None = None, timeout: int = 60) -> Result:
        """One command, timed in the debug log (commands never hold a token; stdin is not logged)."""
        if self.connection is None:
            raise SwarmError(f"{self.name}: no session")
        started = time.monotonic()
        result = run(self.connection, command, stdin=stdin, timeout=timeout)
        log.debug("%s: %s -> %s in %.2fs", self.name, command[:80], result.exit_code, time.monotonic() - started)
        return result

    def check(self, command: str, what: str, secrets: Secrets | None = None) -> str:
        """Run a command that must succeed: its stdout, else a SwarmError naming the node and `what`."""
        result = self.run(command, timeout=60)
        if not result.ok:
            detail = last_line(result.stderr or result.stdout) or f"exit {result.exit_code}"
            raise SwarmError(f"{self.name}: {what} failed: {secrets.scrub(detail) if secrets else detail}")
        return result.stdout

    def inspect(self) -> LocalSwarm:
        result = self.run(LOCAL_INFO, timeout=30)
        if not result.ok:
            raise SwarmError(f"docker info failed: {last_line(result.stderr or result.stdout)}")
        self.local = parse_local(result.stdout)
        return self.local

    def list_nodes(self) -> tuple[Entry, ...]:
        result = self.run(NODE_LIST, timeout=30)
        if not result.ok:
            raise SwarmError(f"{self.name}: docker node ls failed: {last_line(result.stderr or result.stdout)}")
        return tuple(parse_entry(line) for line in result.stdout.splitlines() if line.strip().startswith("{"))

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()


# --- parsing, at the edge -------------------------------------------------------------------------
E = TypeVar("E", bound=Enum)


def _word(kind: type[E], value: object) -> E:
    try:
        return kind(str(value or "").lower())
    except ValueError:
        raise SwarmError(f"docker answered an unexpected {kind.__name__}: {str(value)[:40]!r}") from None


def _json(text: str) -> dict:
    try:
        data = json.loads(text.strip() or "{}")
    except ValueError:
        raise SwarmError(f"docker answered something that is not JSON: {last_line(text)[:80]!r}") from None
    if not isinstance(data, dict):
        raise SwarmError("docker answered JSON that is not an object")
    return data


def parse_local(text: str) -> LocalSwarm:
    """`docker info .Swarm` of one node."""
    data = _json(text)
    cluster = data.get("Cluster") or {}
    return LocalSwarm(state=_word(LocalState, data.get("LocalNodeState") or "inactive"), node_id=data.get("NodeID") or "",
                      manager=bool(data.get("ControlAvailable")), cluster_id=cluster.get("ID"),
                      error=data.get("Error") or "")


def parse_entry(line: str) -> Entry:
    """One line of NODE_LIST."""
    data = _json(line)
    manager = data.get("manager") or {}
    if not data.get("id"):
        raise SwarmError("docker listed a node without an ID")
    return Entry(id=data["id"], hostname=data.get("hostname") or "", status=_word(NodeStatus, data.get("state")),
                 addr=data.get("addr") or "", role=_word(SwarmRole, data.get("role")),
                 availability=_word(Availability, data.get("availability")),
                 reachability=_word(Reachability, manager["Reachability"]) if manager.get("Reachability") else None,
                 leader=bool(manager.get("Leader")), manager_addr=manager.get("Addr"))


# --- observing ----------------------------------------------------------------------------------------
def raise_if_bug(error: BaseException) -> None:
    """A node that did not answer is an answer; any other exception is ours and must surface."""
    if not isinstance(error, UNANSWERED):
        raise error


@contextmanager
def sessions(machines: list[Machine], access: AdminAccess, secrets: Secrets,
             connect_seconds: float = CONNECT_RETRY_SECONDS) -> Iterator[list[Node]]:
    """A session on each running node, its `docker info` read, and each manager's node list.

    A node that cannot be reached or asked keeps the reason in `node.report.error`.
    """
    nodes = [Node(m) for m in machines]

    def open_and_inspect(node: Node) -> None:
        if not node.machine.running:
            node.report.error = f"machine is {node.machine.state}"
            return
        node.connection = admin_connection(node.machine, access)
        open_with_retry(node.connection, connect_seconds)
        node.inspect()

    try:
        for node, _result, error in in_parallel(nodes, open_and_inspect):
            if error is not None:
                raise_if_bug(error)
                node.report.error = secrets.scrub(last_line(error))
        read_node_lists(nodes)
        yield nodes
    finally:
        for node in nodes:
            node.close()


def read_node_lists(nodes: list[Node]) -> None:
    """Each manager's node list; a manager that cannot give one (no leader, a timeout) keeps None."""
    managers = [n for n in nodes if n.view().is_manager]
    for node, entries, error in in_parallel(managers, lambda n: n.list_nodes()):
        if error is not None:
            raise_if_bug(error)
            log.debug("%s: no node list: %s", node.name, last_line(error))
        node.node_list = entries


def observed(nodes: list[Node], established: str | None = None) -> Cluster:
    """The planner's model of the nodes as they are in this run."""
    return Cluster(tuple(n.view() for n in nodes), established=established)


def observe(machines: list[Machine], access: AdminAccess, connect_seconds: float = CONNECT_RETRY_SECONDS) -> Cluster:
    """The cluster as it is now (for `status`): nothing changed, every session closed again."""
    with sessions(machines, access, Secrets(), connect_seconds) as nodes:
        return observed(nodes)


# --- commands that touch the cluster --------------------------------------------------------------
def manage(candidates: list[Node], command: str, what: str, secrets: Secrets, retry_seconds: float = 20.0) -> str:
    """Run a manager command on the first of `candidates` that accepts it, retrying transient refusals."""
    deadline = time.monotonic() + retry_seconds
    while True:
        error: SwarmError | None = None
        for node in candidates:
            try:
                return node.check(command, what, secrets)
            except SwarmError as exc:
                if not _TRANSIENT.search(str(exc)):
                    raise
                error = exc
        if error is None or time.monotonic() > deadline:
            raise error or SwarmError(f"{what}: no manager to run it on")
        time.sleep(0.5)


def wait_ready(controls: list[Node], nodes: list[Node], managers: Iterable[str]) -> tuple[Entry, ...]:
    """The node list once every one of `nodes` is Ready in its wanted role (or the timeout passed).

    A promotion is asynchronous: the node joins Raft a moment after `docker node promote` returns,
    and only answers manager commands (it holds the cluster's CA signer) a moment later still.
    Until then it would not keep the cluster alive if the old manager went away. The first of
    `controls` that answers gives the node list.
    """
    deadline = time.monotonic() + READY_TIMEOUT
    managers = set(managers)
    wanted = {n.node_id: n.name in managers for n in nodes if n.local}
    confirmed: set[str] = set()
    while True:
        entries, answered = _first_node_list(controls, deadline)
        confirmed.add(answered.name)
        by_id = {e.id: e for e in entries}
        waiting = [i for i, manager in wanted.items() if i not in by_id or not by_id[i].settled(manager)]
        log.debug("waiting for %s", [(by_id[i].hostname, by_id[i].status, by_id[i].role, by_id[i].reachability)
                                     if i in by_id else i for i in waiting])
        if not waiting and _answer_as_managers([n for n in nodes if n.name in managers], confirmed):
            return entries
        if time.monotonic() > deadline:
            return entries
        time.sleep(0.25)


def _first_node_list(controls: list[Node], deadline: float) -> tuple[tuple[Entry, ...], Node]:
    while True:
        error: SwarmError | None = None
        for control in controls:
            try:
                return control.list_nodes(), control
            except SwarmError as exc:
                error = exc
        if time.monotonic() > deadline:
            raise error or SwarmError("no manager answers")
        time.sleep(0.25)


def _answer_as_managers(managers: list[Node], confirmed: set[str]) -> bool:
    """Whether each of `managers` answers a manager command (`confirmed` holds those that did)."""
    for node in managers:
        if node.name not in confirmed and node.connection is not None \
                and node.run("docker node ls -q >/dev/null", timeout=20).ok:
            confirmed.add(node.name)
    return all(n.name in confirmed for n in managers)


def cluster_id(node: Node) -> str | None:
    result = node.run("docker info --format '{{.Swarm.Cluster.ID}}'", timeout=30)
    value = result.stdout.strip()
    return value if result.ok and value and value != "<no value>" else None


def advertised(node: Node) -> str:
    """The address other nodes join: the manager's address on the classroom's network."""
    if node.machine.private_address:
        return node.machine.private_address
    value = node.run("docker info --format '{{.Swarm.NodeAddr}}'", timeout=30).stdout.strip()
    if not value:
        raise SwarmError(f"{node.name}: its Swarm address is unknown")
    return value


# --- converge ---------------------------------------------------------------------------------------
def converge_swarm(machines: list[Machine], access: AdminAccess, managers: int = 1,
                   progress: Progress = NULL_PROGRESS) -> SwarmReport:
    """Form the cluster, or repair it, so that every running Swarm node is in it and Ready.

    `machines` may include the student hosts (ignored). Never raises for a node's failure, nor
    when no cluster can be had at all (the first node unreachable and no manager left): each
    node's report says what went wrong; see `report.ok` and `report.failed`.
    """
    started = time.monotonic()
    secrets = Secrets()
    ordered = swarm_machines(machines)
    report = SwarmReport(cluster_id=None, manager=None, nodes=[])
    if not ordered:
        return report
    progress.start("swarm", f"Swarm cluster ({len(ordered)} node(s))", total=len(ordered))
    try:
        with sessions(ordered, access, secrets) as nodes:
            report.nodes = [n.report for n in nodes]
            try:
                _Converge(nodes, managers, report, secrets).run()
            except UNANSWERED as exc:  # no cluster at all: every node that is not done says why
                _fail_pending(nodes, last_line(exc))
            _fail_pending(nodes, "not in the cluster")
            for node in nodes:
                progress.advance("swarm", detail=node.name)
    finally:
        progress.finish("swarm")
    for node in report.nodes:
        if node.error:
            node.error, node.ok = secrets.scrub(node.error), False
    report.notes = [secrets.scrub(note) for note in report.notes]
    for note in report.notes:
        progress.note(note)
    report.seconds = round(time.monotonic() - started, 2)
    return report


def _fail_pending(nodes: list[Node], reason: str) -> None:
    for node in nodes:
        if node.report.error is None and not node.report.ok:
            node.report.error = reason


class _Converge:
    """One run of `converge_swarm` over open sessions: establish the cluster, carry the plan out, verify."""

    def __init__(self, nodes: list[Node], managers: int, report: SwarmReport, secrets: Secrets) -> None:
        self.nodes = nodes
        self.by_name = {n.name: n for n in nodes}
        self.managers = managers
        self.wanted = planner.wanted_managers(observed(nodes), managers)
        self.report = report
        self.secrets = secrets
        self.tokens: dict[SwarmRole, str] = {}
        self.control: Node = nodes[0]
        self.entries: tuple[Entry, ...] = ()

    def run(self) -> None:
        plan = self.establish(observed(self.nodes))
        self.control = self.by_name[plan.control or ""]
        self.report.manager = self.control.name
        self.entries = self.control.node_list or ()
        handlers: dict[type, Callable[[list], None]] = {RemoveStale: self.remove_stale, Join: self.join,
                                                        Promote: self.promote, Demote: self.demote}
        for kind, actions in groupby(plan.actions, key=type):
            handlers[kind](list(actions))
        self.verify()

    def establish(self, cluster: Cluster) -> Plan:
        """Plan; carry out the step that establishes the cluster, if any, then observe and plan again."""
        plan = planner.plan(cluster, self.managers)
        if plan.control is None:
            raise SwarmError(plan.problem or "no cluster can be formed")
        first = plan.actions[0] if plan.actions else None
        if isinstance(first, ForceNewCluster):
            try:
                self.recover(first)
            except SwarmError as exc:  # the managers could not be brought back: a new cluster it is
                self.report.notes.append(f"{last_line(exc)}: forming a new cluster")
                return self.establish(replace(cluster, recovery_failed=True))
        elif isinstance(first, Init):
            self.init(first)
        else:
            return plan
        control = self.by_name[plan.control]
        control.node_list = control.list_nodes()
        return planner.plan(observed(self.nodes, established=control.name), self.managers)

    def recover(self, action: ForceNewCluster) -> None:
        node = self.by_name[action.node]
        # The daemon may report an error after it did recover (it then fails to update the cluster's
        # settings): what counts is whether the node answers for the cluster afterwards.
        outcome = node.run("docker swarm init --force-new-cluster >/dev/null", timeout=60)
        deadline = time.monotonic() + 15
        while True:
            try:
                node.list_nodes()
                break
            except SwarmError:
                if time.monotonic() > deadline:
                    raise SwarmError(f"{node.name}: recovering the cluster (--force-new-cluster) failed: "
                                     f"{last_line(outcome.stderr or outcome.stdout)}") from None
                time.sleep(0.5)
        node.inspect()
        self.report.recovered = True
        self.report.notes.append(f"the Swarm managers had lost their quorum: the cluster was recovered from "
                                 f"{node.name} (--force-new-cluster; its ID and services are kept)")
        node.report.changes.append("cluster recovered from this node (--force-new-cluster)")

    def init(self, action: Init) -> None:
        node = self.by_name[action.node]
        if action.leave_first:
            node.check("docker swarm leave --force", "leaving a lost cluster")
        address = node.machine.private_address
        flag = f" --advertise-addr {shlex.quote(address)}" if address else ""
        node.check(f"docker swarm init{flag} >/dev/null", "docker swarm init")
        node.inspect()
        node.report.changes.append("Swarm cluster initialised")
        self.report.formed, self.report.lost = True, action.lost
        if action.lost:
            self.report.notes.append(f"the Swarm cluster had no manager left (its only manager was replaced "
                                     f"or left): a new cluster was formed on {node.name}; services must be "
                                     "created again")

    def remove_stale(self, actions: list[RemoveStale]) -> None:
        for action in actions:
            owner = self.by_name[action.owner]
            if action.demote_first:
                # No longer in Raft (after --force-new-cluster), demoting fails: `rm --force` takes it anyway.
                with suppress(SwarmError):
                    manage([self.control], f"docker node demote {action.node_id}",
                           f"demoting the stale entry of {owner.name}", self.secrets)
            manage([self.control], f"docker node rm --force {action.node_id}",
                   f"removing the stale entry of {owner.name}", self.secrets)
            self.report.removed.append(f"{owner.name} ({action.node_id[:12]})")
            owner.report.changes.append(f"stale Swarm entry {action.node_id[:12]} removed")

    def join(self, actions: list[Join]) -> None:
        """Managers one at a time (Raft membership), workers in parallel; a failure is that node's."""
        address = advertised(self.control)
        for action in (a for a in actions if a.role is SwarmRole.MANAGER):
            try:
                self.join_one(action, address)
            except UNANSWERED as exc:
                self.by_name[action.node].report.error = self.secrets.scrub(last_line(exc))
        workers = [a for a in actions if a.role is SwarmRole.WORKER]
        if workers:
            self.token(SwarmRole.WORKER)  # read once, before the parallel joins
            for action, _result, error in in_parallel(workers, lambda a: self.join_one(a, address)):
                if error is not None:
                    raise_if_bug(error)
                    self.by_name[action.node].report.error = self.secrets.scrub(last_line(error))
        self.entries = self.control.list_nodes()

    def token(self, role: SwarmRole) -> str:
        if role not in self.tokens:
            out = manage([self.control], f"docker swarm join-token -q {role}", f"reading the {role} join token",
                         self.secrets)
            self.tokens[role] = self.secrets.add(out.strip())
        return self.tokens[role]

    def join_one(self, action: Join, address: str) -> None:
        node = self.by_name[action.node]
        if action.leave_first:
            node.check("docker swarm leave --force", "leaving a former cluster")
        own = node.machine.private_address
        command = JOIN.format(advertise=f"--advertise-addr {shlex.quote(own)} " if own else "",
                              address=f"{address}:{SWARM_PORT}")
        result = node.run(command, stdin=self.token(action.role) + "\n", timeout=JOIN_TIMEOUT)
        if not result.ok:
            raise SwarmError(f"docker swarm join failed: {self.secrets.scrub(last_line(result.stderr or result.stdout))}")
        node.inspect()
        node.report.changes.append(f"joined as {action.role}")

    def promote(self, actions: list[Promote]) -> None:
        for action in actions:
            nodes = [self.by_name[n] for n in action.nodes]
            manage([self.control], "docker node promote " + " ".join(n.node_id for n in nodes), "promoting",
                   self.secrets)
            for node in nodes:
                node.report.changes.append("promoted to manager")
            # Promotion is asynchronous: let the new managers join Raft before anyone is demoted.
            self.entries = wait_ready([self.control], nodes, self.wanted)

    def demote(self, actions: list[Demote]) -> None:
        for action in actions:
            via = [self.by_name[n] for n in action.via if self.by_name[n].report.error is None]
            if self.control.name in action.nodes:  # drive from a manager that stays one
                by_id = {e.id: e for e in self.entries}
                keeper = next((n for n in via if n.node_id in by_id and by_id[n.node_id].settled(True)), None)
                if keeper is None:
                    raise SwarmError("no other node is a reachable manager: cannot demote " + self.control.name)
                self.control = keeper
                self.report.manager = keeper.name
                via = [keeper, *(n for n in via if n is not keeper)]
            nodes = [self.by_name[n] for n in action.nodes]
            manage(via, "docker node demote " + " ".join(n.node_id for n in nodes), "demoting", self.secrets)
            for node in nodes:
                node.report.changes.append("demoted to worker")

    def verify(self) -> None:
        """Wait until every live node is Ready in its role; each node's report says whether it is."""
        listed = {e.id for e in self.entries}
        live = [n for n in self.nodes if n.usable and n.node_id in listed]
        by_id = {e.id: e for e in wait_ready([self.control], live, self.wanted)}
        self.report.cluster_id = cluster_id(self.control)
        for node in self.nodes:
            if node.report.error is None and node.local is not None:
                self.judge(node, by_id.get(node.node_id))

    def judge(self, node: Node, entry: Entry | None) -> None:
        manager = node.name in self.wanted
        if entry is None:
            node.report.error = "not in the node list after joining"
        elif entry.status is not NodeStatus.READY:
            node.report.error = f"node is {entry.status}, not ready"
        elif not entry.settled(manager):
            node.report.error = (f"not yet a reachable manager ({entry.reachability or entry.role})"
                                 if manager else "still a manager")
        else:
            node.report.ok, node.report.role, node.report.node_id = True, entry.role, entry.id


# --- before a machine is replaced -----------------------------------------------------------------
def release_node(machines: list[Machine], access: AdminAccess, name: str,
                 progress: Progress = NULL_PROGRESS) -> list[str]:
    """`release_nodes` for one node."""
    return release_nodes(machines, access, [name], progress)


def release_nodes(machines: list[Machine], access: AdminAccess, names: Iterable[str],
                  progress: Progress = NULL_PROGRESS) -> list[str]:
    """Prepare Swarm nodes for `reset --hard` (call it once, just before the `backend.replace`s).

    Best effort: a node that does not answer is no reason to stop. A worker needs nothing
    (`converge_swarm` removes its stale entry afterwards). A manager is demoted, so that the cluster
    keeps its quorum and its leader; when no manager outside `names` would be left, another Ready
    node (never one of `names`) is promoted first, so the cluster, its ID and its services survive
    the replacement, and `converge_swarm` afterwards gives the roles back. A node that does not
    answer (the usual reason for a hard reset) is left alone: converge will remove its stale entry,
    or form a new cluster if it was the only manager (and say so). Promoting a node that was
    demoted in the last minute or so takes Docker about 30 s (measured); otherwise this takes 1-3 s.
    Returns lines worth showing the trainer.
    """
    names = set(names)
    ordered = swarm_machines(machines)
    leaving = [m.name for m in ordered if m.name in names and m.running]
    if not leaving:
        return []
    secrets = Secrets()
    notes: list[str] = []
    progress.start("swarm-release", f"Preparing {', '.join(leaving)} for replacement", total=None)
    try:
        with sessions(ordered, access, secrets, connect_seconds=STATUS_CONNECT_SECONDS) as nodes:
            notes += _hand_over(nodes, planner.plan_release(observed(nodes), leaving), secrets)
    except UNANSWERED as exc:  # best effort: converge_swarm repairs whatever is left
        notes.append(secrets.scrub(f"could not hand over the Swarm role: {last_line(exc)}"))
    finally:
        progress.finish("swarm-release")
    for note in notes:
        progress.note(note)
    return notes


def _hand_over(nodes: list[Node], plan: Plan, secrets: Secrets) -> list[str]:
    by_name = {n.name: n for n in nodes}
    notes: list[str] = []
    action: Action
    for action in plan.actions:
        if isinstance(action, StandIn):
            control, helper = by_name[plan.control or ""], by_name[action.node]
            manage([control], f"docker node promote {helper.node_id} >/dev/null", f"promoting {helper.name}", secrets)
            wait_ready([control], [helper], {helper.name})
            verb = "is" if len(action.replaced) == 1 else "are"
            notes.append(f"{helper.name} stands in as the Swarm manager while {', '.join(action.replaced)} {verb} replaced")
        elif isinstance(action, Demote):
            drivers, outgoing = [by_name[n] for n in action.via], [by_name[n] for n in action.nodes]
            for node in outgoing:
                manage(drivers, f"docker node demote {node.node_id} >/dev/null", f"demoting {node.name}", secrets)
            wait_ready(drivers, outgoing, ())
    return notes
