"""What `status` shows of the Swarm cluster: each node's state, the manager that answers, the Ready count."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..backends.base import Machine
from ..ssh import AdminAccess
from ..untrusted import clean
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
        if self.manager is None:
            return f"Swarm: no manager reachable ({len(self.nodes)} node(s))"
        stale = f", {len(self.stale)} stale entr{'y' if len(self.stale) == 1 else 'ies'}" if self.stale else ""
        return f"Swarm: manager {self.manager} reachable, {self.ready_nodes}/{len(self.nodes)} node(s) Ready{stale}"

    def as_json(self) -> dict:
        return {"cluster_id": self.cluster_id, "manager": self.manager,
                "manager_reachable": self.manager_reachable, "ready_nodes": self.ready_nodes,
                "listed_nodes": self.listed_nodes, "stale": self.stale,
                "nodes": [n.as_json() for n in self.nodes]}


def swarm_status(machines: list[Machine], access: AdminAccess) -> SwarmStatus:
    """Each node's Swarm state and availability, the manager that answers, the Ready count."""
    nodes = swarm_machines(machines)
    if not nodes:
        return SwarmStatus(nodes=[])
    return status_of(observe(nodes, access, connect_seconds=STATUS_CONNECT_SECONDS))


def status_of(cluster: Cluster) -> SwarmStatus:
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
                       stale=stale)


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
