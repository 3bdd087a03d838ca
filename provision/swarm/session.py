"""One SSH session per Swarm node: observe it into the planner's model, run manager commands, wait for Ready.

Everything runs as the admin (root, the classroom's key) through Fabric, so the local and the
cloud backend share this code. Only a node that does not answer (SSH, a failed or refused
command: `UNANSWERED`) is reported and passed over; any other exception is a bug and propagates.
Texts that leave this package go through `Secrets.scrub` (join tokens never do).
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from typing import TypeVar

import paramiko
from fabric import Connection

from ..model import Machine
from ..errors import ClassroomError, last_line
from ..roster import host_order
from ..ssh import (CONNECT_RETRY_SECONDS, AdminAccess, RemoteError, Result, admin_connection, in_parallel,
                   open_with_retry, run)
from .planner import Availability, Cluster, Entry, LocalState, LocalSwarm, NodeStatus, NodeView, Reachability, SwarmRole
from .report import SwarmNodeReport

log = logging.getLogger(__name__)

READY_TIMEOUT = 40.0  # seconds for joined nodes to report Ready
STATUS_CONNECT_SECONDS = 8.0  # `status` must not hang on a dead host

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
    return sorted((m for m in machines if m.role != "student"), key=lambda m: host_order(m.name))


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
        if self.connection is None:  # a bug, not an answer: never caught as UNANSWERED
            raise RuntimeError(f"{self.name}: no session to run a command on")
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
             connect_seconds: float = CONNECT_RETRY_SECONDS, read_lists: bool = True) -> Iterator[list[Node]]:
    """A session on each running node, its `docker info` read, and (`read_lists`) each manager's node list.

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
        if read_lists:
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


def observe(machines: list[Machine], access: AdminAccess, connect_seconds: float = CONNECT_RETRY_SECONDS,
            read_lists: bool = True) -> Cluster:
    """The cluster as it is now (for `status`): nothing changed, every session closed again."""
    with sessions(machines, access, Secrets(), connect_seconds, read_lists) as nodes:
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
        if waiting:
            log.debug("waiting for %s", [(by_id[i].hostname, by_id[i].status, by_id[i].role, by_id[i].reachability)
                                         if i in by_id else i for i in waiting])
        elif _answer_as_managers([n for n in nodes if n.name in managers], confirmed):
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
