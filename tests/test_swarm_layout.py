"""Issue 11 without an engine: the host plan of per-student clusters, which machines form which
cluster, the planner on a student's cluster, status and reports of several clusters, the sheets.
Pure data, milliseconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from provision.backends.local import LocalBackend
from provision.config import ClassroomConfig
from provision.model import Machine, MachineState, Role
from provision.provisioning import accounts_for
from provision.roster import RosterEntry, SwarmAccess, plan_hosts, resolve_host
from provision.sheets import SheetCourse, render_sheets
from provision.swarm import SwarmLayout, SwarmNodeReport, SwarmReport, swarm_clusters
from provision.swarm.planner import (Cluster, Entry, Init, Join, LocalState, LocalSwarm, NodeView, Plan, Reachability,
                                     SwarmRole, plan)
from provision.swarm.status import ClusterStatuses, status_of
from stacks import host_order


def config(**swarm) -> ClassroomConfig:
    return ClassroomConfig(name="c", students=2, swarm={"nodes": 3, **swarm})


def machine(name: str, role: Role, student: str | None) -> Machine:
    return Machine(name, role, student, MachineState.RUNNING, "127.0.0.1", 22, "127.0.0.1", 22)


# --- the plan -----------------------------------------------------------------------------------------
def test_per_student_is_the_default_and_the_students_host_is_node_1():
    hosts = plan_hosts(config())
    assert [(h.name, h.role, h.student) for h in hosts] == [
        ("student-01", "student", "student-01"), ("student-01-node-2", "swarm-worker", "student-01"),
        ("student-01-node-3", "swarm-worker", "student-01"), ("student-02", "student", "student-02"),
        ("student-02-node-2", "swarm-worker", "student-02"), ("student-02-node-3", "swarm-worker", "student-02")]
    assert not any(h.is_shared_node for h in hosts)


def test_readable_ports_one_thousand_apart_per_node_and_shared_ports_as_before():
    backend = LocalBackend(config(), state=None, client=object())
    assert {h.name: backend.port_of(h) for h in plan_hosts(config())} == {
        "student-01": 2201, "student-01-node-2": 3201, "student-01-node-3": 4201,
        "student-02": 2202, "student-02-node-2": 3202, "student-02-node-3": 4202}
    shared = config(mode="shared")
    backend = LocalBackend(shared, state=None, client=object())
    assert [(h.name, backend.port_of(h)) for h in plan_hosts(shared)][2:] == [
        ("swarm-1", 2301), ("swarm-2", 2302), ("swarm-3", 2303)]


def test_unformed_nodes_are_swarm_nodes_and_more_managers_come_first():
    assert {h.role for h in plan_hosts(config(formed=False)) if h.node} == {Role.SWARM_NODE}
    roles = [h.role for h in plan_hosts(config(managers=3)) if h.student == "student-01"]
    assert roles == [Role.STUDENT, Role.SWARM_MANAGER, Role.SWARM_MANAGER]


def test_host_order_keeps_each_students_nodes_after_their_host():
    names = ["swarm-1", "student-02", "student-01-node-3", "student-10", "student-01", "student-01-node-2"]
    assert sorted(names, key=host_order) == ["student-01", "student-01-node-2", "student-01-node-3", "student-02",
                                             "student-10", "swarm-1"]
    assert resolve_host("student-01-node-2", names) == "student-01-node-2"


def test_a_students_node_gets_their_hash_only_a_shared_one_everyones():
    hashes = {"student-01": "h1", "student-02": "h2"}
    assert accounts_for(machine("student-02-node-2", Role.SWARM_WORKER, "student-02"), hashes) == {"student-02": "h2"}
    assert accounts_for(machine("swarm-1", Role.SWARM_MANAGER, None), hashes) == hashes


# --- which machines form which cluster ------------------------------------------------------------------
MACHINES = [machine(n, Role.SWARM_WORKER if "node" in n else Role.STUDENT, n[:10]) for n in
            ("student-02-node-2", "student-01", "student-02", "student-01-node-2")] + \
           [machine("swarm-1", Role.SWARM_MANAGER, None)]


def test_per_student_clusters_start_with_the_students_host():
    layout = SwarmLayout(nodes=2, per_student=True)
    assert [[m.name for m in c] for c in swarm_clusters(MACHINES, layout)] == [
        ["student-01", "student-01-node-2"], ["student-02", "student-02-node-2"]]
    assert [[m.name for m in c] for c in swarm_clusters(MACHINES, SwarmLayout(nodes=2))] == [["swarm-1"]]
    assert swarm_clusters(MACHINES, SwarmLayout(nodes=0, per_student=True)) == []


def test_one_node_per_student_is_their_host_alone():
    hosts = [m for m in MACHINES if m.role == Role.STUDENT]
    assert [[m.name for m in c] for c in swarm_clusters(hosts, SwarmLayout(nodes=1, per_student=True))] == [
        ["student-01"], ["student-02"]]


# --- the planner on a student's cluster ------------------------------------------------------------------
def test_a_students_fresh_cluster_is_formed_on_their_host():
    cluster = Cluster((NodeView("student-01", "10.0.0.1", LocalSwarm()), NodeView("student-01-node-2", "10.0.0.2",
                                                                                   LocalSwarm())))
    assert plan(cluster, 1) == Plan("student-01", (Init("student-01"), Join("student-01-node-2", SwarmRole.WORKER)))


def test_a_node_that_joined_another_cluster_leaves_it_and_rejoins_its_owners():
    listing = (Entry("id-1", "student-01", role=SwarmRole.MANAGER, reachability=Reachability.REACHABLE, leader=True),)
    host = NodeView("student-01", "10.0.0.1", LocalSwarm(LocalState.ACTIVE, "id-1", True, "mine"), node_list=listing)
    other = NodeView("student-01-node-2", "10.0.0.2", LocalSwarm(LocalState.ACTIVE, "id-2", False, "someone-elses"))
    cluster = Cluster((host, other))
    assert plan(cluster, 1) == Plan("student-01", (Join("student-01-node-2", SwarmRole.WORKER, leave_first=True),))


# --- status and reports of several clusters --------------------------------------------------------
def test_blank_nodes_are_ready_without_a_cluster_and_several_clusters_are_checked_each_on_its_own():
    blank = Cluster((NodeView("student-01", "10.0.0.1", LocalSwarm()),
                     NodeView("student-01-node-2", None, None, problem="SSH does not answer")))
    status = status_of(blank, formed=False)
    assert status.checks == {"student-01": {"swarm": True}, "student-01-node-2": {"swarm": False}}
    assert status.detail_for("student-01-node-2") == "swarm: SSH does not answer"
    assert status_of(blank).checks["student-01"] == {"swarm": False}  # formed: a cluster is expected
    both = ClusterStatuses.of([status_of(blank, formed=False), status_of(Cluster((NodeView(
        "student-02", "10.0.0.3", LocalSwarm(LocalState.ERROR, error="bad")),)), formed=False)], formed=False)
    assert both.checks["student-02"] == {"swarm": False} and both.checks["student-01"] == {"swarm": True}
    assert both.summary == "Swarm: 1/3 blank node(s) answer (the students form the cluster)"


def test_the_reports_of_several_clusters_add_up():
    report = SwarmReport(cluster_id=None, manager=None, nodes=[])
    report.add(SwarmReport("c1", "student-01", [SwarmNodeReport("student-01", True)], clusters={"student-01": "c1"}))
    assert (report.cluster_id, report.manager) == ("c1", "student-01")
    report.add(SwarmReport("c2", "student-02", [SwarmNodeReport("student-02", False, error="x")],
                           clusters={"student-02": "c2"}))
    assert (report.cluster_id, report.manager, report.clusters) == (None, None, {"student-01": "c1",
                                                                                 "student-02": "c2"})
    assert [n.name for n in report.failed] == ["student-02"]


def test_capacity_is_said_before_more_than_40_hosts():
    backend = LocalBackend(ClassroomConfig(name="c", students=20, swarm={"nodes": 3}), state=None, client=object())
    hosts = plan_hosts(backend.config)
    assert backend.capacity_note(hosts[:40], hosts[:40]) is None
    assert backend.capacity_note(hosts, hosts) == (
        "creating 60 host(s) on this machine's Docker engine (60 in all): expect about 3.5 GB of memory while "
        "they are idle, more while students work")


# --- the sheets -----------------------------------------------------------------------------------------
def own_entry(student: str, formed: bool = True) -> RosterEntry:
    number = int(student[-2:])
    nodes = (SwarmAccess(student, Role.SWARM_MANAGER if formed else Role.SWARM_NODE, "127.0.0.1", 2200 + number,
                         student, f"172.20.0.{number}"),
             SwarmAccess(f"{student}-node-2", Role.SWARM_WORKER if formed else Role.SWARM_NODE, "127.0.0.1",
                         3200 + number, student, f"172.20.1.{number}"))
    return RosterEntry(student, student, "127.0.0.1", 2200 + number, student, "pass-word-word-0001", swarm=nodes)


def course(formed: bool = True, routing_mesh: bool | None = None) -> SheetCourse:
    return SheetCourse("c", [], None, [], None, "aws", swarm_formed=formed, routing_mesh=routing_mesh)


@pytest.mark.parametrize("fmt", ["md", "html"])
def test_a_sheet_lists_the_students_own_nodes_with_their_ssh_commands(tmp_path: Path, fmt):
    render_sheets([own_entry("student-01"), own_entry("student-02")], course(routing_mesh=False), formats=[fmt],
                  lang="en", out_dir=tmp_path)
    sheet = (tmp_path / f"student-02.{fmt}").read_text()
    assert "ssh -p 3202 student-02@127.0.0.1" in sheet and "ssh -p 2202 student-02@127.0.0.1" in sheet
    assert "3201" not in sheet and "Swarm password" not in sheet
    assert "You have a Swarm cluster of your own" in sheet
    assert "routing mesh does not work" in sheet and "mode=host" in sheet  # no IPVS there, though on aws
    render_sheets([own_entry("student-01")], course(routing_mesh=True), formats=[fmt], lang="en", out_dir=tmp_path)
    assert "mode=host" not in (tmp_path / f"student-01.{fmt}").read_text()


def test_an_unformed_sheet_gives_the_addresses_to_init_and_join_with(tmp_path: Path):
    render_sheets([own_entry("student-03", formed=False)], course(formed=False), formats=["md"], lang="fr",
                  out_dir=tmp_path)
    sheet = (tmp_path / "student-03.md").read_text()
    assert "`docker swarm init --advertise-addr 172.20.0.3`" in sheet
    assert "`docker swarm join --token TOKEN 172.20.0.3:2377`" in sheet
    assert "student-03-node-2 (nœud, 172.20.1.3)" in sheet
