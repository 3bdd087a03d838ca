"""What `converge_swarm` returns: per node, what was done and whether it is in the cluster."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .planner import SwarmRole


@dataclass
class SwarmNodeReport:
    """What `converge_swarm` did to one node."""

    name: str  # swarm-1
    ok: bool
    role: SwarmRole | None = None  # once converged
    node_id: str | None = None
    error: str | None = None
    changes: list[str] = field(default_factory=list)  # "joined as worker", "promoted to manager", ...


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
    clusters: dict[str, str] = field(default_factory=dict)  # first node -> cluster ID, per cluster formed

    def add(self, other: SwarmReport) -> None:
        """Take in the report of one more cluster (`cluster_id`/`manager`: while there is only one)."""
        first = not self.nodes
        self.nodes += other.nodes
        self.cluster_id = other.cluster_id if first else None
        self.manager = other.manager if first else None
        self.formed, self.lost = self.formed or other.formed, self.lost or other.lost
        self.recovered = self.recovered or other.recovered
        self.removed += other.removed
        self.notes += other.notes
        self.clusters.update(other.clusters)

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

    def apply_to(self, host_reports: list) -> None:
        """Merge into `up`'s HostReports (anything with name, ok, error, changes): changes, failures."""
        by_name = {n.name: n for n in self.nodes}
        for host in host_reports:
            node = by_name.get(host.name)
            if node is None:
                continue
            host.changes.extend(node.changes)
            if not node.ok:
                host.ok = False
                host.error = host.error or f"swarm: {node.error or 'not in the cluster'}"

    def as_json(self) -> dict:
        return asdict(self)
