"""What `status` shows of the Swarm cluster: each node's state, the manager that answers, the Ready count."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..backends.base import Machine
from ..ssh import AdminAccess
from ..untrusted import clean
from ..ssh import in_parallel
from .layout import SwarmLayout, swarm_clusters
from .session import STATUS_CONNECT_SECONDS, observe, swarm_machines
from .planner import Availability, Cluster, Entry, LocalState, NodeStatus, NodeView, Reachability, SwarmRole


@dataclass
class SwarmNodeStatus:
    """One Swarm node as `status` shows it."""

    name: str
    state: LocalState  # the engine's own view, or `unreachable`
    node_id: str | None = None
    role: SwarmRole | None = None  # from the cluster's node list
    availability: Availability | None = None
    status: NodeStatus | None = None
    reachability: Reachability | None = None  # managers only
    leader: bool = False
    in_cluster: bool = False  # listed in the node list of the reachable manager
    detail: str | None = None

    @property
    def ok(self) -> bool:
        return (self.state == LocalState.ACTIVE and self.in_cluster and self.status == NodeStatus.READY
                and (self.role != SwarmRole.MANAGER or self.reachability == Reachability.REACHABLE))

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
    formed: bool = True  # false: blank engines, no cluster expected (a node is ok when its engine answers)

    @property
    def manager_reachable(self) -> bool:
        return self.manager is not None

    @property
    def checks(self) -> dict[str, dict[str, bool]]:
        """{"swarm-1": {"swarm": True}, ...}: merge into each host's status checks."""
        if not self.formed:
            return {node.name: {"swarm": node.state not in (LocalState.UNREACHABLE, LocalState.ERROR)}
                    for node in self.nodes}
        return {node.name: {"swarm": self.manager_reachable and node.ok} for node in self.nodes}

    def node(self, name: str) -> SwarmNodeStatus | None:
        return next((n for n in self.nodes if n.name == name), None)

    def detail_for(self, name: str) -> str | None:
        """Why that node's `swarm` check fails (None when it passes or is not a node)."""
        node = self.node(name)
        if node is None or self.checks[name]["swarm"]:
            return None
        if not self.formed:
            return f"swarm: {clean(node.detail) if node.detail else node.state}"
        if self.manager is None:
            return "swarm: no manager reachable"
        if node.in_cluster and node.status != NodeStatus.READY:
            return f"swarm: node is {node.status}"
        if node.role == SwarmRole.MANAGER and node.reachability != Reachability.REACHABLE:
            return f"swarm: manager is {node.reachability or 'unknown'}"
        return f"swarm: {clean(node.detail) if node.detail else node.state}"  # detail: the node's words

    @property
    def summary(self) -> str:
        """One line for the status screen."""
        if not self.nodes:
            return "no Swarm nodes"
        if not self.formed:
            answering = sum(1 for ok in self.checks.values() if ok["swarm"])
            return f"Swarm: {answering}/{len(self.nodes)} blank node(s) answer (the students form the cluster)"
        if self.manager is None:
            return f"Swarm: no manager reachable ({len(self.nodes)} node(s))"
        stale = f", {len(self.stale)} stale entr{'y' if len(self.stale) == 1 else 'ies'}" if self.stale else ""
        return f"Swarm: manager {self.manager} reachable, {self.ready_nodes}/{len(self.nodes)} node(s) Ready{stale}"

    def as_json(self) -> dict:
        return {"cluster_id": self.cluster_id, "manager": self.manager,
                "manager_reachable": self.manager_reachable, "ready_nodes": self.ready_nodes,
                "listed_nodes": self.listed_nodes, "stale": self.stale,
                "nodes": [n.as_json() for n in self.nodes]}


def swarm_status(machines: list[Machine], access: AdminAccess, layout: SwarmLayout | None = None) -> SwarmStatus:
    """Each node's Swarm state and availability, the manager that answers, the Ready count: of the
    shared cluster (no `layout`), or of every cluster of `layout`, side by side (one status each,
    combined)."""
    if layout is None:
        nodes = swarm_machines(machines)
        return status_of(observe(nodes, access, connect_seconds=STATUS_CONNECT_SECONDS)) if nodes \
            else SwarmStatus(nodes=[])
    def one(group: list[Machine]) -> SwarmStatus:
        cluster = observe(group, access, connect_seconds=STATUS_CONNECT_SECONDS, read_lists=layout.formed)
        return status_of(cluster, formed=layout.formed)

    parts = []
    for _group, part, error in in_parallel(swarm_clusters(machines, layout), one):
        if error is not None:  # observe keeps a node's failure in its view: anything else is a bug
            raise error
        parts.append(part)
    if not parts:
        return SwarmStatus(nodes=[], formed=layout.formed)
    return parts[0] if len(parts) == 1 else ClusterStatuses.of(parts, layout.formed)


@dataclass
class ClusterStatuses(SwarmStatus):
    """Several clusters (one per student): `checks` and details per node from its own cluster."""

    parts: list[SwarmStatus] = field(default_factory=list)

    @classmethod
    def of(cls, parts: list[SwarmStatus], formed: bool) -> ClusterStatuses:
        return cls(nodes=[n for p in parts for n in p.nodes], formed=formed, parts=parts,
                   ready_nodes=sum(p.ready_nodes for p in parts), listed_nodes=sum(p.listed_nodes for p in parts),
                   stale=[s for p in parts for s in p.stale])

    @property
    def checks(self) -> dict[str, dict[str, bool]]:
        return {name: check for part in self.parts for name, check in part.checks.items()}

    def detail_for(self, name: str) -> str | None:
        return next((part.detail_for(name) for part in self.parts if part.node(name) is not None), None)

    @property
    def summary(self) -> str:
        if not self.formed:
            return super().summary
        ok = sum(1 for check in self.checks.values() if check["swarm"])
        leaderless = [p.nodes[0].name for p in self.parts if p.manager is None and p.nodes]
        missing = f"; no manager reachable in {', '.join(leaderless)}'s" if leaderless else ""
        return f"Swarm: {len(self.parts)} clusters, {ok}/{len(self.nodes)} node(s) Ready{missing}"

    def as_json(self) -> dict:
        return {"clusters": [part.as_json() for part in self.parts]}


def status_of(cluster: Cluster, formed: bool = True) -> SwarmStatus:
    """The status of an observed cluster, as the first manager (in node order) that answers lists it."""
    control = next((n for n in cluster.nodes if n.is_manager and n.node_list is not None), None)
    entries = control.node_list or () if control else ()
    by_id = {e.id: e for e in entries}
    nodes = [_node_status(node, by_id, control is not None) for node in cluster.nodes]
    current = {n.node_id for n in nodes if n.in_cluster}
    names = {n.name for n in cluster.nodes}
    stale = [f"{e.hostname} ({e.id[:12]})" for e in entries
             if e.id not in current and e.hostname in names and e.status is not NodeStatus.READY]
    return SwarmStatus(nodes=nodes, cluster_id=control.local.cluster_id if control and control.local else None,
                       manager=control.name if control else None,
                       ready_nodes=sum(1 for e in entries if e.status is NodeStatus.READY), listed_nodes=len(entries),
                       stale=stale, formed=formed)


def _node_status(node: NodeView, by_id: dict[str, Entry], manager_answers: bool) -> SwarmNodeStatus:
    if node.local is None:
        return SwarmNodeStatus(node.name, LocalState.UNREACHABLE, detail=node.problem)
    status = SwarmNodeStatus(node.name, node.local.state, node_id=node.local.node_id or None,
                             detail=node.local.error or None)
    entry = by_id.get(node.local.node_id) if node.local.node_id else None
    if entry is not None:
        status.in_cluster = True
        status.role, status.availability, status.status = entry.role, entry.availability, entry.status
        status.reachability, status.leader = entry.reachability, entry.leader
    else:
        status.detail = status.detail or ("not in the cluster" if manager_answers else "no manager reachable")
    return status
