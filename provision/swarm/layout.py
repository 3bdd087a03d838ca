"""Which machines form which Swarm cluster: pure, from the classroom's `swarm` settings.

- `shared`: one cluster of swarm-1 … swarm-M (no owner; every student has an account there).
- `per-student`: one cluster per student, their own host first (node 1, the manager that forms
  it), then student-NN-node-2 … student-NN-node-M. Nobody else has an account on them.

With `formed: false` the clusters are only groups of blank engines: nothing is formed or repaired,
and whatever cluster a student made there is left alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from stacks import host_order

from ..model import Machine, Role


@dataclass(frozen=True)
class SwarmLayout:
    nodes: int = 0  # per cluster; 0: no Swarm
    managers: int = 1
    per_student: bool = False
    formed: bool = True

    @classmethod
    def of(cls, swarm, nodes: int | None = None) -> SwarmLayout:
        """From the classroom file's `swarm` section (`nodes`: the count the classroom has, if larger)."""
        return cls(max(swarm.nodes, nodes or 0), swarm.managers, swarm.per_student, swarm.formed)


SHARED = SwarmLayout(nodes=9)  # every shared node found is one cluster (what the tests of one cluster use)


def swarm_clusters(machines: Iterable[Machine], layout: SwarmLayout = SHARED) -> list[list[Machine]]:
    """The clusters among `machines`, each in node order (its first node forms it)."""
    if layout.nodes == 0:
        return []
    ordered = sorted(machines, key=lambda m: host_order(m.name))
    if not layout.per_student:
        shared = [m for m in ordered if m.is_shared_node]
        return [shared] if shared else []
    by_owner: dict[str, list[Machine]] = {}
    for machine in ordered:
        if machine.student is not None:
            by_owner.setdefault(machine.student, []).append(machine)
    return [group for _owner, group in sorted(by_owner.items(), key=lambda item: host_order(item[0]))]


def owner_of(cluster: list[Machine]) -> str | None:
    """The student whose cluster it is (None: the shared one)."""
    return cluster[0].student if cluster else None


def is_swarm_node(machine: Machine, layout: SwarmLayout) -> bool:
    """Whether `machine` is a node of some cluster (a student's host is, in per-student mode)."""
    if layout.nodes == 0:
        return False
    if layout.per_student:
        return machine.student is not None
    return machine.role != Role.STUDENT and machine.student is None
