"""The Swarm driver: carries the planner's actions out over SSH.

`converge_swarm` observes the nodes (`session`), plans (`planner.plan`), carries the plan out and
checks that every node ended Ready in its role; `release_nodes` does the same with
`planner.plan_release` before a `reset --hard`. Neither raises for a node that does not answer;
any other exception is a bug and propagates.

Join tokens are read over SSH into this process's memory and handed to the remote shell on the
session's stdin (`read -r token`): they never appear in this tool's process arguments, its
logs, its reports or on screen (error texts are scrubbed). On the node, `docker swarm join`
receives the token as an argument, which cannot be avoided with the Docker CLI; it lives for the
duration of the join, and a student on that node could read it with `ps`. That discloses nothing
new: students are in the `docker` group on every node, so they can already run
`docker swarm join-token` on a manager.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import replace
from itertools import groupby

from ..model import Machine
from ..errors import last_line
from ..progress import NULL_PROGRESS, Progress
from ..ssh import AdminAccess, in_parallel
from . import planner
from ..untrusted import clean
from .layout import SHARED, SwarmLayout, swarm_clusters
from .planner import (Action, Cluster, Demote, Entry, ForceNewCluster, Init, Join, LocalState, NodeStatus, Plan,
                      Promote, RemoveStale, StandIn, SwarmRole)
from .report import SwarmReport
from .session import (STATUS_CONNECT_SECONDS, UNANSWERED, Node, Secrets, SwarmError, advertised, cluster_id, manage,
                      observed, raise_if_bug, sessions, swarm_machines, wait_ready)

SWARM_PORT = 2377
CLUSTERS_AT_ONCE = 8  # each holds a session per node; most of their time is spent waiting for Docker
JOIN_TIMEOUT = 90  # `docker swarm join` waits for the manager itself; bound the session anyway
# The token arrives on stdin: the shell's `read` builtin keeps it out of every command line we send.
JOIN = 'read -r token && exec docker swarm join --token "$token" {advertise}{address}'


# --- converge ---------------------------------------------------------------------------------------
def converge_swarm(machines: list[Machine], access: AdminAccess, managers: int = 1,
                   progress: Progress = NULL_PROGRESS, layout: SwarmLayout | None = None) -> SwarmReport:
    """Form the clusters, or repair them, so that every running Swarm node is in its cluster and Ready.

    `layout` says which machines form which cluster (default: one shared cluster of the nodes
    among `machines`, with `managers` managers; the student hosts are ignored then). Clusters are
    converged side by side, each on its own. Never raises for a node's failure, nor when no
    cluster can be had at all (the first node unreachable and no manager left): each node's
    report says what went wrong; see `report.ok` and `report.failed`.
    """
    started = time.monotonic()
    layout = layout or replace(SHARED, managers=managers)
    groups = swarm_clusters(machines, layout)
    report = SwarmReport(cluster_id=None, manager=None, nodes=[])
    if not groups:
        return report
    total = sum(len(g) for g in groups)
    label = f"Swarm cluster ({total} node(s))" if len(groups) == 1 else f"{len(groups)} Swarm clusters ({total} nodes)"
    progress.start("swarm", label, total=total)
    try:
        work = _converge_one if layout.formed else _observe_blank
        for _group, part, error in in_parallel(groups, lambda g: work(g, access, layout.managers, progress),
                                               limit=CLUSTERS_AT_ONCE):
            if error is not None:
                raise error  # a node's failure is in its report: anything else is a bug
            report.add(part)
    finally:
        progress.finish("swarm")
    for note in report.notes:
        progress.note(note)
    report.seconds = round(time.monotonic() - started, 2)
    return report


def _converge_one(ordered: list[Machine], access: AdminAccess, managers: int, progress: Progress) -> SwarmReport:
    """One cluster, converged: its report, every text scrubbed of its join tokens."""
    secrets = Secrets()
    report = SwarmReport(cluster_id=None, manager=None, nodes=[])
    with sessions(ordered, access, secrets) as nodes:
        report.nodes = [n.report for n in nodes]
        try:
            _Converge(nodes, managers, report, secrets).run()
        except UNANSWERED as exc:  # no cluster at all: every node that is not done says why
            _fail_pending(nodes, last_line(exc))
        _fail_pending(nodes, "not in the cluster")
        for node in nodes:
            progress.advance("swarm", detail=node.name)
    for node in report.nodes:
        if node.error:
            node.error, node.ok = secrets.scrub(node.error), False
    report.notes = [secrets.scrub(note) for note in report.notes]
    if ordered and report.cluster_id:
        report.clusters[ordered[0].name] = report.cluster_id
    return report


def _observe_blank(ordered: list[Machine], access: AdminAccess, _managers: int, progress: Progress) -> SwarmReport:
    """`formed: false`: nothing is formed or repaired (a cluster the student made is theirs); a node
    is ok when its engine answers."""
    report = SwarmReport(cluster_id=None, manager=None, nodes=[])
    with sessions(ordered, access, Secrets(), read_lists=False) as nodes:
        for node in nodes:
            node.report.ok = node.local is not None and node.report.error is None
            if node.local is not None and node.local.state is LocalState.ERROR:
                node.report.ok, node.report.error = False, f"Swarm error: {clean(node.local.error)}"
            report.nodes.append(node.report)
            progress.advance("swarm", detail=node.name)
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
        self.control, actions = self.establish(observed(self.nodes))
        self.report.manager = self.control.name
        self.entries = self.control.node_list or ()
        handlers: dict[type, Callable[[list], None]] = {RemoveStale: self.remove_stale, Join: self.join,
                                                        Promote: self.promote, Demote: self.demote}
        for kind, group in groupby(actions, key=type):  # consecutive joins together: workers join in parallel
            handlers[kind](list(group))
        self.verify()

    def establish(self, cluster: Cluster) -> tuple[Node, tuple[Action, ...]]:
        """The manager to drive, and what is left to do: the step that establishes the cluster (if
        the plan starts with one) is carried out here, then the nodes are observed and planned again."""
        plan = planner.plan(cluster, self.managers)
        if plan.control is None:
            raise SwarmError(plan.problem or "no cluster can be formed")
        control = self.by_name[plan.control]
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
            return control, plan.actions
        control.node_list = control.list_nodes()
        return control, planner.plan(observed(self.nodes, established=control.name), self.managers).actions

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
            _hand_over(nodes, planner.plan_release(observed(nodes), leaving), secrets, notes)
    except UNANSWERED as exc:  # best effort: converge_swarm repairs whatever is left
        notes.append(secrets.scrub(f"could not hand over the Swarm role: {last_line(exc)}"))
    finally:
        progress.finish("swarm-release")
    for note in notes:
        progress.note(note)
    return notes


def _hand_over(nodes: list[Node], plan: Plan, secrets: Secrets, notes: list[str]) -> None:
    """Carry out `plan_release`'s plan; `notes` gets the lines worth showing, as they happen."""
    by_name = {n.name: n for n in nodes}
    for action in plan.actions:
        if isinstance(action, StandIn):
            control, helper = by_name[str(plan.control)], by_name[action.node]
            manage([control], f"docker node promote {helper.node_id} >/dev/null", f"promoting {helper.name}", secrets)
            wait_ready([control], [helper], {helper.name})
            verb = "is" if len(action.replaced) == 1 else "are"
            notes.append(f"{helper.name} stands in as the Swarm manager while {', '.join(action.replaced)} {verb} replaced")
        elif isinstance(action, Demote):
            drivers, outgoing = [by_name[n] for n in action.via], [by_name[n] for n in action.nodes]
            for node in outgoing:
                manage(drivers, f"docker node demote {node.node_id} >/dev/null", f"demoting {node.name}", secrets)
            wait_ready(drivers, outgoing, ())
