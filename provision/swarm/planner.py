"""What to do to one Swarm cluster, decided from what was observed: pure, no SSH, no clock.

The cluster is data: its nodes in order (the first forms the cluster, the first `k` are the
managers), what each node's engine says of itself, and the node list of every manager that
answered. `plan` turns that into the actions that converge it, `plan_release` into the hand-over
before nodes are replaced. The driver carries the actions out; these rules are kept here:

- a cluster that exists is kept (never re-initialised: its ID does not change); the manager that
  lists the most of our nodes drives it (the first in order on a tie);
- a node that is not in it (a replaced machine, a node that left, a member of another cluster)
  leaves what it belongs to and joins, managers one at a time, then workers;
- entries of the node list that belonged to a previous life of one of our nodes (same hostname or
  address, another node ID) are removed, managers first (demoted, then removed), so that quorum
  arithmetic counts live managers only;
- exactly the wanted managers are managers (promote first, then demote: the quorum never shrinks
  below need), the demotion driven from a manager that stays one;
- when the managers that can still be alive are not a majority of the Raft members (more than half
  were replaced at once), the survivor recovers the cluster with `--force-new-cluster` (its ID and
  its services are kept);
- only when no manager is left is a new cluster formed on the first node; and not while a node
  that cannot be reached may still be the old manager (two clusters would be worse);
- a node that cannot be reached is reported, never acted on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum


class _Text(str, Enum):
    """An enum whose members are the engine's own words (and print as them)."""

    def __str__(self) -> str:
        return self.value


class SwarmRole(_Text):
    MANAGER = "manager"
    WORKER = "worker"


class LocalState(_Text):
    """A node's own view (`docker info` .Swarm.LocalNodeState)."""

    INACTIVE = "inactive"
    PENDING = "pending"
    ACTIVE = "active"
    ERROR = "error"
    LOCKED = "locked"
    UNREACHABLE = "unreachable"  # not the engine's word: we could not ask it


class NodeStatus(_Text):
    """A node as the managers see it (`docker node inspect` .Status.State)."""

    READY = "ready"
    DOWN = "down"
    UNKNOWN = "unknown"
    DISCONNECTED = "disconnected"


class Availability(_Text):
    ACTIVE = "active"
    PAUSE = "pause"
    DRAIN = "drain"


class Reachability(_Text):
    REACHABLE = "reachable"
    UNREACHABLE = "unreachable"
    UNKNOWN = "unknown"


# --- what was observed ----------------------------------------------------------------------------
@dataclass(frozen=True)
class LocalSwarm:
    """What a node's engine says of itself (`docker info` .Swarm)."""

    state: LocalState = LocalState.INACTIVE
    node_id: str = ""
    manager: bool = False  # ControlAvailable: it can run manager commands
    cluster_id: str | None = None
    error: str = ""


@dataclass(frozen=True)
class Entry:
    """One entry of a manager's node list."""

    id: str
    hostname: str
    status: NodeStatus = NodeStatus.READY
    addr: str = ""
    role: SwarmRole = SwarmRole.WORKER
    availability: Availability = Availability.ACTIVE
    reachability: Reachability | None = None  # managers only
    leader: bool = False
    manager_addr: str | None = None  # managers only: "10.0.0.5:2377"

    def addresses(self) -> set[str]:
        found = {self.addr}
        if self.manager_addr:
            found.add(self.manager_addr.rsplit(":", 1)[0])
        return found - {"", "0.0.0.0"}

    def settled(self, manager: bool) -> bool:
        """Ready in the wanted role: a manager that Raft reaches, or a worker."""
        if self.status is not NodeStatus.READY:
            return False
        return self.reachability is Reachability.REACHABLE if manager else self.role is SwarmRole.WORKER


@dataclass(frozen=True)
class NodeView:
    """One of our nodes as observed. `local` is None when it could not be asked (see `problem`)."""

    name: str
    address: str | None = None  # on the classroom's network: what it advertises
    local: LocalSwarm | None = None
    running: bool = True
    problem: str | None = None  # why `local` is None: "machine is stopped", "SSH does not answer"
    node_list: tuple[Entry, ...] | None = None  # as this node lists the cluster; None: no manager, or no answer

    @property
    def usable(self) -> bool:
        return self.local is not None

    @property
    def is_manager(self) -> bool:
        return self.local is not None and self.local.state is LocalState.ACTIVE and self.local.manager

    @property
    def node_id(self) -> str:
        return self.local.node_id if self.local else ""


@dataclass(frozen=True)
class Cluster:
    """Our nodes of one cluster, in order: the first forms it, the first `k` are its managers."""

    nodes: tuple[NodeView, ...]
    established: str | None = None  # a manager just formed or recovered: drive through it, whatever the list says
    recovery_failed: bool = False  # `--force-new-cluster` did not bring the managers back: form a new cluster

    @property
    def usable(self) -> list[NodeView]:
        return [n for n in self.nodes if n.usable]

    def node(self, name: str) -> NodeView:
        return next(n for n in self.nodes if n.name == name)

    def owner(self, entry: Entry) -> NodeView | None:
        """Which of our nodes a node-list entry is (or was): same hostname, or same address."""
        by_name = next((n for n in self.nodes if n.name == entry.hostname), None)
        return by_name or next((n for n in self.nodes if n.address and n.address in entry.addresses()), None)

    def may_be_alive(self, entry: Entry) -> bool:
        """False when the entry is provably an earlier life of one of our nodes (it has another ID now)."""
        owner = self.owner(entry)
        return owner is None or not owner.usable or owner.node_id == entry.id


def desired_manager_count(managers: int, nodes: int) -> int:
    """`managers`, capped to the nodes there are, kept odd (a Raft quorum), at least one."""
    count = max(1, min(managers, nodes))
    return count if count % 2 else count - 1


def wanted_managers(cluster: Cluster, managers: int) -> frozenset[str]:
    return frozenset(n.name for n in cluster.nodes[:desired_manager_count(managers, len(cluster.nodes))])


# --- actions ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Init:
    """Form a new cluster on `node` (it leaves what it was in first)."""

    node: str
    leave_first: bool = False
    lost: bool = False  # there was a cluster, with no manager left: its services are gone (say so)


@dataclass(frozen=True)
class ForceNewCluster:
    """Recover the cluster from `node`, a manager without quorum (ID and services kept)."""

    node: str


@dataclass(frozen=True)
class RemoveStale:
    """Remove `node_id`, an entry left by an earlier life of `owner` (demoted first if a manager)."""

    owner: str
    node_id: str
    demote_first: bool = False


@dataclass(frozen=True)
class Join:
    node: str
    role: SwarmRole
    leave_first: bool = False  # a member of a cluster that is gone, or of another one


@dataclass(frozen=True)
class Promote:
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class Demote:
    """Demote `nodes`, run on the first of `via` that accepts it (managers that stay managers)."""

    nodes: tuple[str, ...]
    via: tuple[str, ...]


@dataclass(frozen=True)
class StandIn:
    """Promote `node` to keep the cluster while `replaced` (its only managers) are replaced."""

    node: str
    replaced: tuple[str, ...]


Action = Init | ForceNewCluster | RemoveStale | Join | Promote | Demote | StandIn


@dataclass(frozen=True)
class Plan:
    """The manager to drive the cluster through, and what to do, in order.

    `control` is None when no cluster can be had; `problem` says why. When the first action
    establishes the cluster (Init, ForceNewCluster), the actions after it are planned on the node
    list it will most likely have; the driver observes again and plans again after it.
    """

    control: str | None
    actions: tuple[Action, ...] = ()
    problem: str | None = None


# --- converge ---------------------------------------------------------------------------------------
def plan(cluster: Cluster, managers: int) -> Plan:
    """The actions that make `cluster` one cluster of every usable node, exactly the wanted managers."""
    if not cluster.nodes:
        return Plan(None, problem="no Swarm nodes")
    start = _establish(cluster)
    if start.control is None:
        return start
    control = cluster.node(start.control)
    formed = bool(start.actions) and isinstance(start.actions[0], Init)
    if control.node_list is None and not formed:
        return start  # recovered from a manager that gave no list: what follows depends on the one it will give
    entries = () if formed else (control.node_list or ())
    return Plan(start.control, start.actions + _membership(cluster, control, entries, wanted_managers(cluster, managers)))


def _establish(cluster: Cluster) -> Plan:
    """The manager to drive: one that answers with a quorum, or one recovered, or a new cluster."""
    if cluster.established:
        return Plan(cluster.established)
    candidates = [n for n in cluster.usable if n.is_manager]
    if cluster.recovery_failed or not candidates:
        return _form(cluster)
    answered = [n for n in candidates if n.node_list is not None]
    with_quorum = [n for n in answered if _has_quorum(cluster, n.node_list or ())]
    if with_quorum:
        return Plan(_most_members(cluster, with_quorum).name)
    # Answered without quorum, or nobody answered (no leader): the first of them recovers it.
    survivor = (answered or candidates)[0]
    return Plan(survivor.name, (ForceNewCluster(survivor.name),))


def _has_quorum(cluster: Cluster, entries: Iterable[Entry]) -> bool:
    members = [e for e in entries if e.role is SwarmRole.MANAGER]
    alive = [e for e in members if cluster.may_be_alive(e)]
    return 2 * len(alive) > len(members)


def _most_members(cluster: Cluster, managers: list[NodeView]) -> NodeView:
    """The manager whose list holds the most of our nodes: the others are the strays."""
    ours = {n.node_id for n in cluster.usable}
    return max(managers, key=lambda m: (len({e.id for e in m.node_list or ()} & ours), -managers.index(m)))


def _form(cluster: Cluster) -> Plan:
    first = cluster.nodes[0]
    if first.local is None:
        return Plan(None, problem=f"no manager is left and {first.name} cannot form the cluster "
                                  f"({first.problem or 'unreachable'})")
    lost = any(n.local.state is not LocalState.INACTIVE for n in cluster.usable if n.local)
    silent = [n.name for n in cluster.nodes if n.running and not n.usable]
    if lost and silent:
        return Plan(None, problem=f"no manager answers and {', '.join(silent)} cannot be reached: not forming a "
                                  "new cluster while the old one may still be alive")
    return Plan(first.name, (Init(first.name, leave_first=first.local.state is not LocalState.INACTIVE, lost=lost),))


def _membership(cluster: Cluster, control: NodeView, entries: tuple[Entry, ...],
                wanted: frozenset[str]) -> tuple[Action, ...]:
    listed = {e.id for e in entries}
    members = [n for n in cluster.usable if n.name == control.name
               or (n.node_id in listed and n.local is not None and n.local.state is LocalState.ACTIVE)]
    joiners = [n for n in cluster.usable if n not in members]
    return (*_stale(cluster, control, entries, members), *_joins(joiners, wanted),
            *_roles(cluster, control, entries, members, wanted))


def _stale(cluster: Cluster, control: NodeView, entries: tuple[Entry, ...],
           members: list[NodeView]) -> list[RemoveStale]:
    """Entries of an earlier life of one of our nodes: a live node has one ID, so the others are orphans."""
    current = {n.node_id for n in members} | {control.node_id}
    stale = []
    for entry in entries:
        owner = cluster.owner(entry)
        if owner is not None and entry.id not in current and (owner.usable or entry.status is not NodeStatus.READY):
            stale.append(RemoveStale(owner.name, entry.id, demote_first=entry.role is SwarmRole.MANAGER))
    return sorted(stale, key=lambda action: not action.demote_first)  # managers first: quorum counts live ones


def _joins(joiners: list[NodeView], wanted: frozenset[str]) -> list[Join]:
    def join(node: NodeView, role: SwarmRole) -> Join:
        return Join(node.name, role, leave_first=node.local is not None and node.local.state is not LocalState.INACTIVE)

    return ([join(n, SwarmRole.MANAGER) for n in joiners if n.name in wanted]
            + [join(n, SwarmRole.WORKER) for n in joiners if n.name not in wanted])


def _roles(cluster: Cluster, control: NodeView, entries: tuple[Entry, ...], members: list[NodeView],
           wanted: frozenset[str]) -> list[Action]:
    """Promote first, then demote: the quorum never shrinks below need. Joiners join in their role."""
    roles = {e.id: e.role for e in entries}

    def role(node: NodeView) -> SwarmRole | None:  # the control of a cluster formed a moment ago is not listed yet
        return roles.get(node.node_id, SwarmRole.MANAGER if node.name == control.name else None)

    promote = tuple(n.name for n in members if n.name in wanted and role(n) is not SwarmRole.MANAGER)
    keepers = tuple(n.name for n in cluster.usable if n.name in wanted and n.name != control.name)
    # The control steps down only for a wanted manager we can reach: never leave the cluster without one.
    demote = tuple(n.name for n in members if n.name not in wanted and role(n) is SwarmRole.MANAGER
                   and (n.name != control.name or keepers))
    actions: list[Action] = [Promote(promote)] if promote else []
    if demote:
        # Drive the demotion from managers that stay managers, the control first unless it is demoted.
        actions.append(Demote(demote, via=(*([] if control.name in demote else [control.name]), *keepers)))
    return actions


# --- before nodes are replaced --------------------------------------------------------------------
def plan_release(cluster: Cluster, leaving: Iterable[str]) -> Plan:
    """Hand the manager role of `leaving` over, so that their replacement keeps the cluster.

    A worker needs nothing. A manager is demoted, driven from a manager that stays; when no
    reachable manager would stay, another Ready node stands in (promoted first). A node that
    cannot be asked is left alone. Nothing to do: no actions; no manager answers: no control.
    """
    names = set(leaving)
    managers = sorted((n for n in cluster.usable if n.is_manager and n.node_list is not None),
                      key=lambda n: n.name in names)  # drive from a manager that stays one
    if not managers:
        return Plan(None)
    control = managers[0]
    by_id = {e.id: e for e in control.node_list or ()}
    outgoing = tuple(n.name for n in cluster.usable if n.name in names and n.node_id in by_id
                     and by_id[n.node_id].role is SwarmRole.MANAGER)
    if not outgoing:
        return Plan(control.name)
    staying = [n for n in cluster.usable if n.name not in names and n.node_id in by_id]
    kept = [n.name for n in staying if by_id[n.node_id].role is SwarmRole.MANAGER
            and by_id[n.node_id].reachability is Reachability.REACHABLE]
    actions: list[Action] = []
    if not kept:
        helper = next((n for n in staying if by_id[n.node_id].status is NodeStatus.READY
                       and by_id[n.node_id].availability is Availability.ACTIVE), None)
        if helper is None:
            return Plan(control.name)
        replaced = tuple(n.name for n in cluster.nodes if n.name in names and n.running)
        actions.append(StandIn(helper.name, replaced))
        kept = [helper.name]
    # A fresh manager may take a moment to accept commands: the control node can run it too.
    via = (*kept, *([] if control.name in kept else [control.name]))
    actions.append(Demote(outgoing, via))
    return Plan(control.name, tuple(actions))
