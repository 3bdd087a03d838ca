"""The Swarm planner on many cluster states, without an engine: each test asserts the exact plan.

A cluster is written as our nodes in order (what each engine says of itself) and the node list
of each manager that answers. `ours(...)` builds the usual three-node classroom.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from provision.swarm.session import SwarmError, parse_entry, parse_local
from provision.swarm.planner import (Availability, Cluster, Demote, Entry, ForceNewCluster, Init, Join, LocalState,
                                     LocalSwarm, NodeStatus, NodeView, Plan, Promote, Reachability, RemoveStale,
                                     StandIn, SwarmRole, desired_manager_count, plan, plan_release)
from provision.swarm.status import status_of

MANAGER, WORKER = SwarmRole.MANAGER, SwarmRole.WORKER
DOWN = NodeStatus.DOWN


def member(name: str, *, manager: bool = False, node_id: str | None = None, listing: tuple[Entry, ...] | None = None,
           state: LocalState = LocalState.ACTIVE, cluster: str = "c1") -> NodeView:
    """A node whose engine is in a cluster (or `state`), with its own node ID `id-<name>`."""
    local = LocalSwarm(state, node_id or f"id-{name}", manager, cluster if manager else None)
    return NodeView(name, f"10.0.0.{name.rsplit('-', 1)[-1]}", local, node_list=listing)


def fresh(name: str) -> NodeView:
    """A node whose engine is in no cluster: a new or a replaced machine."""
    return NodeView(name, f"10.0.0.{name.rsplit('-', 1)[-1]}", LocalSwarm())


def silent(name: str, problem: str = "SSH does not answer", *, running: bool = True) -> NodeView:
    return NodeView(name, f"10.0.0.{name.rsplit('-', 1)[-1]}", None, running, problem)


def manager_entry(name: str, node_id: str | None = None, *, leader: bool = False,
                  reachability: Reachability = Reachability.REACHABLE, status: NodeStatus = NodeStatus.READY) -> Entry:
    return Entry(node_id or f"id-{name}", name, status, role=MANAGER, reachability=reachability, leader=leader)


def worker_entry(name: str, node_id: str | None = None, *, status: NodeStatus = NodeStatus.READY,
                 availability: Availability = Availability.ACTIVE) -> Entry:
    return Entry(node_id or f"id-{name}", name, status, availability=availability)


FORMED = (manager_entry("swarm-1", leader=True), worker_entry("swarm-2"), worker_entry("swarm-3"))


def formed(*, listing: tuple[Entry, ...] = FORMED) -> Cluster:
    """swarm-1 the manager, swarm-2 and swarm-3 workers, all Ready."""
    return Cluster((member("swarm-1", manager=True, listing=listing), member("swarm-2"), member("swarm-3")))


# --- forming and keeping ------------------------------------------------------------------------------
def test_fresh_nodes_form_a_cluster_on_the_first():
    cluster = Cluster((fresh("swarm-1"), fresh("swarm-2"), fresh("swarm-3")))
    assert plan(cluster, 1) == Plan("swarm-1", (Init("swarm-1"), Join("swarm-2", WORKER), Join("swarm-3", WORKER)))


def test_fresh_nodes_with_three_managers_join_as_managers_first():
    cluster = Cluster((fresh("swarm-1"), fresh("swarm-2"), fresh("swarm-3"), fresh("swarm-4")))
    assert plan(cluster, 3) == Plan("swarm-1", (Init("swarm-1"), Join("swarm-2", MANAGER), Join("swarm-3", MANAGER),
                                                Join("swarm-4", WORKER)))


def test_a_formed_cluster_needs_nothing():
    assert plan(formed(), 1) == Plan("swarm-1", ())


def test_a_single_node_forms_a_cluster_of_one():
    assert plan(Cluster((fresh("swarm-1"),)), 3) == Plan("swarm-1", (Init("swarm-1"),))


def test_no_nodes_no_plan():
    assert plan(Cluster(()), 1) == Plan(None, problem="no Swarm nodes")


def test_node_names_are_data_not_swarm_n():
    """One cluster per student (issue 11): any names, in the order given."""
    cluster = Cluster((NodeView("ana-b", None, LocalSwarm()), NodeView("ana-a", None, LocalSwarm())))
    assert plan(cluster, 1) == Plan("ana-b", (Init("ana-b"), Join("ana-a", WORKER)))


# --- repair -----------------------------------------------------------------------------------------
def test_a_replaced_worker_loses_its_stale_entry_and_joins():
    listing = (manager_entry("swarm-1", leader=True), worker_entry("swarm-2"), worker_entry("swarm-3", "old-3", status=DOWN))
    cluster = Cluster((member("swarm-1", manager=True, listing=listing), member("swarm-2"), fresh("swarm-3")))
    assert plan(cluster, 1) == Plan("swarm-1", (RemoveStale("swarm-3", "old-3"), Join("swarm-3", WORKER)))


def test_a_replaced_node_still_listed_ready_is_an_orphan_all_the_same():
    """Right after `reset --hard` the old entry may still say Ready: a live machine has one node ID."""
    listing = (*FORMED[:2], worker_entry("swarm-3", "old-3"))
    cluster = Cluster((member("swarm-1", manager=True, listing=listing), member("swarm-2"), fresh("swarm-3")))
    assert plan(cluster, 1) == Plan("swarm-1", (RemoveStale("swarm-3", "old-3"), Join("swarm-3", WORKER)))


def test_a_stale_entry_is_recognised_by_its_address():
    listing = (*FORMED[:2], Entry("old-3", "ip-10-0-0-3", DOWN, addr="10.0.0.3"))
    cluster = Cluster((member("swarm-1", manager=True, listing=listing), member("swarm-2"), fresh("swarm-3")))
    assert plan(cluster, 1) == Plan("swarm-1", (RemoveStale("swarm-3", "old-3"), Join("swarm-3", WORKER)))


def test_entries_that_are_not_ours_are_left_alone():
    listing = (*FORMED, Entry("x", "elsewhere", DOWN, addr="192.168.9.9"))
    assert plan(formed(listing=listing), 1) == Plan("swarm-1", ())


def test_a_node_that_left_rejoins():
    listing = (manager_entry("swarm-1", leader=True), worker_entry("swarm-2"), worker_entry("swarm-3", status=DOWN))
    cluster = Cluster((member("swarm-1", manager=True, listing=listing), member("swarm-2"),
                       member("swarm-3", state=LocalState.INACTIVE, node_id="")))
    assert plan(cluster, 1) == Plan("swarm-1", (RemoveStale("swarm-3", "id-swarm-3"), Join("swarm-3", WORKER)))


def test_a_pending_node_leaves_and_joins_again():
    cluster = formed()
    cluster = replace(cluster, nodes=(*cluster.nodes[:2], member("swarm-3", state=LocalState.PENDING)))
    assert plan(cluster, 1) == Plan("swarm-1", (RemoveStale("swarm-3", "id-swarm-3"),
                                                Join("swarm-3", WORKER, leave_first=True)))


def test_a_node_in_another_cluster_leaves_it_and_joins_ours():
    stray = member("swarm-3", manager=True, node_id="id-3b", cluster="c2", listing=(manager_entry("swarm-3", "id-3b"),))
    cluster = Cluster((member("swarm-1", manager=True, listing=FORMED[:2]), member("swarm-2"), stray))
    assert plan(cluster, 1) == Plan("swarm-1", (Join("swarm-3", WORKER, leave_first=True),))


def test_the_manager_listing_most_of_our_nodes_drives_the_first_on_a_tie():
    alone_1 = member("swarm-1", manager=True, listing=(manager_entry("swarm-1"),))
    alone_2 = member("swarm-2", manager=True, cluster="c2", listing=(manager_entry("swarm-2"),))
    cluster = Cluster((alone_1, alone_2, fresh("swarm-3")))
    assert plan(cluster, 1) == Plan("swarm-1", (Join("swarm-2", WORKER, leave_first=True), Join("swarm-3", WORKER)))
    bigger_2 = replace(alone_2, node_list=(manager_entry("swarm-2"), worker_entry("swarm-3", "id-swarm-3")))
    cluster = Cluster((alone_1, bigger_2, member("swarm-3", cluster="c2")))
    assert plan(cluster, 1) == Plan("swarm-2", (Join("swarm-1", MANAGER, leave_first=True),
                                                Demote(("swarm-2",), via=("swarm-1",))))


# --- managers -----------------------------------------------------------------------------------------
def test_too_few_managers_are_promoted_to_exactly_n():
    assert plan(formed(), 3) == Plan("swarm-1", (Promote(("swarm-2", "swarm-3")),))


def test_an_even_count_is_rounded_down_to_keep_a_quorum():
    assert plan(formed(), 2) == Plan("swarm-1", ())
    assert [desired_manager_count(m, n) for m, n in ((1, 0), (2, 3), (3, 2), (4, 5), (5, 5), (7, 3))] == [1, 1, 1, 3, 5, 3]


def test_too_many_managers_are_demoted_from_a_manager_that_stays():
    listing = (manager_entry("swarm-1", leader=True), manager_entry("swarm-2"), manager_entry("swarm-3"))
    cluster = Cluster((member("swarm-1", manager=True, listing=listing), member("swarm-2", manager=True),
                       member("swarm-3", manager=True)))
    assert plan(cluster, 1) == Plan("swarm-1", (Demote(("swarm-2", "swarm-3"), via=("swarm-1",)),))


def test_a_stand_in_manager_hands_the_role_back_to_the_replaced_first_node():
    """After `release_nodes` made swarm-2 the manager and swarm-1 was replaced."""
    listing = (worker_entry("swarm-1", "old-1", status=DOWN), manager_entry("swarm-2", leader=True), worker_entry("swarm-3"))
    cluster = Cluster((fresh("swarm-1"), member("swarm-2", manager=True, listing=listing), member("swarm-3")))
    assert plan(cluster, 1) == Plan("swarm-2", (RemoveStale("swarm-1", "old-1"), Join("swarm-1", MANAGER),
                                                Demote(("swarm-2",), via=("swarm-1",))))


def test_the_driving_manager_promotes_the_first_node_before_stepping_down():
    listing = (worker_entry("swarm-1"), manager_entry("swarm-2", leader=True), worker_entry("swarm-3"))
    cluster = Cluster((member("swarm-1"), member("swarm-2", manager=True, listing=listing), member("swarm-3")))
    assert plan(cluster, 1) == Plan("swarm-2", (Promote(("swarm-1",)), Demote(("swarm-2",), via=("swarm-1",))))


def test_the_only_reachable_manager_does_not_step_down_for_a_node_that_does_not_answer():
    listing = (worker_entry("swarm-1"), manager_entry("swarm-2", leader=True), worker_entry("swarm-3"))
    cluster = Cluster((silent("swarm-1"), member("swarm-2", manager=True, listing=listing), member("swarm-3")))
    assert plan(cluster, 1) == Plan("swarm-2", ())


def test_one_manager_of_three_replaced_keeps_the_quorum():
    listing = (manager_entry("swarm-1", leader=True),
               manager_entry("swarm-2", "old-2", reachability=Reachability.UNREACHABLE, status=DOWN),
               manager_entry("swarm-3"))
    cluster = Cluster((member("swarm-1", manager=True, listing=listing), fresh("swarm-2"), member("swarm-3", manager=True)))
    assert plan(cluster, 3) == Plan("swarm-1", (RemoveStale("swarm-2", "old-2", demote_first=True),
                                                Join("swarm-2", MANAGER)))


# --- no manager left, or no quorum ----------------------------------------------------------------
def test_the_only_manager_replaced_forms_a_new_cluster_and_says_it_was_lost():
    cluster = Cluster((fresh("swarm-1"), member("swarm-2"), member("swarm-3")))
    assert plan(cluster, 1) == Plan("swarm-1", (Init("swarm-1", lost=True), Join("swarm-2", WORKER, leave_first=True),
                                                Join("swarm-3", WORKER, leave_first=True)))


def test_no_new_cluster_while_a_silent_node_may_still_be_the_manager():
    cluster = Cluster((fresh("swarm-1"), member("swarm-2"), silent("swarm-3")))
    assert plan(cluster, 1) == Plan(None, problem="no manager answers and swarm-3 cannot be reached: not forming "
                                                  "a new cluster while the old one may still be alive")


def test_a_stopped_node_does_not_stop_a_new_cluster():
    cluster = Cluster((fresh("swarm-1"), member("swarm-2"), silent("swarm-3", "machine is stopped", running=False)))
    assert plan(cluster, 1) == Plan("swarm-1", (Init("swarm-1", lost=True), Join("swarm-2", WORKER, leave_first=True)))


def test_no_cluster_when_the_first_node_cannot_form_one():
    cluster = Cluster((silent("swarm-1", "machine is stopped", running=False), fresh("swarm-2")))
    assert plan(cluster, 1) == Plan(None, problem="no manager is left and swarm-1 cannot form the cluster "
                                                  "(machine is stopped)")


def test_a_first_node_in_a_lost_cluster_leaves_it_before_forming_a_new_one():
    cluster = Cluster((member("swarm-1"), fresh("swarm-2")))
    assert plan(cluster, 1) == Plan("swarm-1", (Init("swarm-1", leave_first=True, lost=True), Join("swarm-2", WORKER)))


LOST_TWO = (manager_entry("swarm-1", "old-1", reachability=Reachability.UNREACHABLE, status=DOWN),
            manager_entry("swarm-2", "old-2", reachability=Reachability.UNREACHABLE, status=DOWN),
            manager_entry("swarm-3"))


def test_more_than_half_the_managers_lost_recovers_on_the_survivor():
    cluster = Cluster((fresh("swarm-1"), fresh("swarm-2"), member("swarm-3", manager=True, listing=LOST_TWO)))
    assert plan(cluster, 3) == Plan("swarm-3", (
        ForceNewCluster("swarm-3"), RemoveStale("swarm-1", "old-1", demote_first=True),
        RemoveStale("swarm-2", "old-2", demote_first=True), Join("swarm-1", MANAGER), Join("swarm-2", MANAGER)))


def test_after_recovery_the_survivor_drives_whatever_its_list_says():
    cluster = Cluster((fresh("swarm-1"), fresh("swarm-2"), member("swarm-3", manager=True, listing=LOST_TWO)),
                      established="swarm-3")
    assert plan(cluster, 3) == Plan("swarm-3", (
        RemoveStale("swarm-1", "old-1", demote_first=True), RemoveStale("swarm-2", "old-2", demote_first=True),
        Join("swarm-1", MANAGER), Join("swarm-2", MANAGER)))


def test_a_failed_recovery_forms_a_new_cluster():
    cluster = Cluster((fresh("swarm-1"), fresh("swarm-2"), member("swarm-3", manager=True, listing=LOST_TWO)),
                      recovery_failed=True)
    assert plan(cluster, 3) == Plan("swarm-1", (Init("swarm-1", lost=True), Join("swarm-2", MANAGER),
                                                Join("swarm-3", MANAGER, leave_first=True)))


def test_managers_that_give_no_list_are_recovered_from_the_first():
    cluster = Cluster((member("swarm-1", manager=True), member("swarm-2", manager=True), member("swarm-3")))
    assert plan(cluster, 3) == Plan("swarm-1", (ForceNewCluster("swarm-1"),))


# --- nodes we cannot reach ------------------------------------------------------------------------
def test_an_unreachable_node_listed_ready_is_left_alone():
    cluster = formed()
    cluster = replace(cluster, nodes=(*cluster.nodes[:2], silent("swarm-3")))
    assert plan(cluster, 3) == Plan("swarm-1", (Promote(("swarm-2",)),))


def test_an_unreachable_node_listed_down_loses_its_entry_and_rejoins_when_it_answers():
    listing = (*FORMED[:2], worker_entry("swarm-3", status=DOWN))
    cluster = formed(listing=listing)
    cluster = replace(cluster, nodes=(*cluster.nodes[:2], silent("swarm-3")))
    assert plan(cluster, 1) == Plan("swarm-1", (RemoveStale("swarm-3", "id-swarm-3"),))


# --- release before `reset --hard` ----------------------------------------------------------------
def test_releasing_a_worker_needs_nothing():
    assert plan_release(formed(), ["swarm-3"]) == Plan("swarm-1", ())


def test_releasing_the_only_manager_promotes_a_stand_in_first():
    assert plan_release(formed(), ["swarm-1"]) == Plan("swarm-1", (
        StandIn("swarm-2", ("swarm-1",)), Demote(("swarm-1",), via=("swarm-2", "swarm-1"))))


def test_a_drained_node_does_not_stand_in():
    listing = (FORMED[0], worker_entry("swarm-2", availability=Availability.DRAIN), worker_entry("swarm-3"))
    assert plan_release(formed(listing=listing), ["swarm-1"]) == Plan("swarm-1", (
        StandIn("swarm-3", ("swarm-1",)), Demote(("swarm-1",), via=("swarm-3", "swarm-1"))))


def test_no_stand_in_no_hand_over():
    listing = (FORMED[0], worker_entry("swarm-2", status=DOWN), worker_entry("swarm-3", availability=Availability.PAUSE))
    assert plan_release(formed(listing=listing), ["swarm-1"]) == Plan("swarm-1", ())


def test_releasing_one_of_three_managers_is_driven_from_one_that_stays():
    listing = (manager_entry("swarm-1", leader=True), manager_entry("swarm-2"), manager_entry("swarm-3"))
    cluster = Cluster((member("swarm-1", manager=True, listing=listing), member("swarm-2", manager=True, listing=listing),
                       member("swarm-3", manager=True, listing=listing)))
    assert plan_release(cluster, ["swarm-1"]) == Plan("swarm-2", (Demote(("swarm-1",), via=("swarm-2", "swarm-3")),))
    assert plan_release(cluster, ["swarm-2"]) == Plan("swarm-1", (Demote(("swarm-2",), via=("swarm-1", "swarm-3")),))


def test_releasing_nodes_nobody_can_ask_does_nothing():
    assert plan_release(Cluster((silent("swarm-1"), member("swarm-2"))), ["swarm-1"]) == Plan(None)
    cluster = formed()
    assert plan_release(replace(cluster, nodes=(silent("swarm-1"), *cluster.nodes[1:])), ["swarm-1"]) == Plan(None)


# --- status ---------------------------------------------------------------------------------------
def test_status_of_a_cluster_with_a_stale_entry_and_a_silent_node():
    listing = (*FORMED, worker_entry("swarm-3", "old-3", status=DOWN))
    cluster = formed(listing=listing)
    status = status_of(replace(cluster, nodes=(*cluster.nodes[:2], silent("swarm-3"))))
    assert (status.manager, status.cluster_id, status.ready_nodes, status.listed_nodes, status.stale) == (
        "swarm-1", "c1", 3, 4, ["swarm-3 (old-3)"])
    assert status.checks == {"swarm-1": {"swarm": True}, "swarm-2": {"swarm": True}, "swarm-3": {"swarm": False}}
    assert status.detail_for("swarm-3") == "swarm: SSH does not answer"
    assert status.summary == "Swarm: manager swarm-1 reachable, 3/3 node(s) Ready, 1 stale entry"


def test_status_without_a_manager_that_answers():
    status = status_of(Cluster((member("swarm-1", manager=True), member("swarm-2"))))
    assert status.manager is None and status.cluster_id is None
    assert [n.detail for n in status.nodes] == ["no manager reachable", "no manager reachable"]
    assert status.summary == "Swarm: no manager reachable (2 node(s))"


# --- parsing what docker says, at the edge ----------------------------------------------------------
def test_docker_info_and_node_list_are_parsed_into_typed_values():
    local = parse_local('{"NodeID":"n1","LocalNodeState":"active","ControlAvailable":true,"Error":"",'
                        '"Cluster":{"ID":"c1"}}\n')
    assert local == LocalSwarm(LocalState.ACTIVE, "n1", True, "c1")
    assert parse_local('{"NodeID":"","LocalNodeState":"inactive","ControlAvailable":false}') == LocalSwarm()
    entry = parse_entry('{"id":"n1","hostname":"swarm-1","state":"ready","addr":"10.0.0.1","role":"manager",'
                        '"availability":"active","manager":{"Leader":true,"Reachability":"reachable",'
                        '"Addr":"10.0.0.1:2377"}}')
    assert entry == Entry("n1", "swarm-1", NodeStatus.READY, "10.0.0.1", MANAGER, Availability.ACTIVE,
                          Reachability.REACHABLE, True, "10.0.0.1:2377")
    assert entry.addresses() == {"10.0.0.1"}
    worker = parse_entry('{"id":"n2","hostname":"swarm-2","state":"down","addr":"0.0.0.0","role":"worker",'
                         '"availability":"drain","manager":null}')
    assert (worker.status, worker.role, worker.availability, worker.reachability) == (DOWN, WORKER,
                                                                                      Availability.DRAIN, None)
    assert f"{worker.role} {worker.status}" == "worker down"  # prints as docker's own words


@pytest.mark.parametrize("line", ['{"id":"n1","hostname":"h","state":"sleepy","role":"worker","availability":"active"}',
                                  '{"hostname":"h"}', "not json", "[1]"])
def test_an_unexpected_answer_from_docker_is_a_swarm_error(line):
    with pytest.raises(SwarmError):
        parse_entry(line)
