"""The planner's quorum rule on the real engine: when two of three managers are replaced at once,
the survivor recovers the cluster (`--force-new-cluster`): same ID, three managers Ready again."""

from __future__ import annotations

import pytest
from conftest import free_port_base, remove_classroom_resources, unique_name

pytestmark = pytest.mark.engine


@pytest.fixture
def three_managers(engine, tmp_path, monkeypatch):
    from provision.commands import Classroom, down, up
    from provision.config import load_config

    name = unique_name("t-swrec")
    path = tmp_path / "classroom.yaml"
    path.write_text(f"name: {name}\nstudents: 1\nswarm:\n  nodes: 3\n  managers: 3\n  mode: shared\n"
                    f"local:\n  ssh_port_base: {free_port_base(104, low=52000, high=58000)}\n"
                    "  public_host: 127.0.0.1\nttl: 2h\n")
    monkeypatch.setenv("CLASSROOM_HOME", str(tmp_path / "home"))
    room = Classroom.open(load_config(path))
    try:
        result = up(room)
        assert not result.failed, [(h.name, h.error) for h in result.failed]
        yield room
    finally:
        try:
            down(room)
        finally:
            remove_classroom_resources(engine, name)


def node_rows(engine, room, node: str) -> list[str]:
    machine = next(m for m in room.backend.machines() if m.name == node)
    code, out = engine.containers.get(machine.machine_id).exec_run(
        ["docker", "node", "ls", "--format", "{{.Hostname}} {{.Status}} {{.ManagerStatus}}"])
    assert code == 0, out
    return sorted(out.decode().splitlines())


def cluster_id(engine, room, node: str) -> str:
    machine = next(m for m in room.backend.machines() if m.name == node)
    return engine.containers.get(machine.machine_id).exec_run(
        ["docker", "info", "--format", "{{.Swarm.Cluster.ID}}"]).output.decode().strip()


def test_two_of_three_managers_replaced_at_once_are_recovered_from_the_survivor(engine, three_managers):
    from provision.provisioning import provision_host
    from provision.swarm import converge_swarm

    room = three_managers
    before = cluster_id(engine, room, "swarm-3")
    assert [row.split()[2] for row in node_rows(engine, room, "swarm-3")].count("Leader") == 1
    for name in ("swarm-1", "swarm-2"):  # no hand-over: as if both machines had died
        spec = next(h for h in room.planned_hosts() if h.name == name)
        machine = room.backend.replace(spec, room.state.admin_key().public_line)
        provision_host(machine, room.state.password_hashes(room.state.known_passwords(swarm=True), swarm=True),
                       room.admin_access())

    report = converge_swarm(room.backend.machines(), room.admin_access(), 3)

    assert report.ok, [(n.name, n.error) for n in report.failed]
    assert report.recovered and not report.formed and not report.lost
    assert any("--force-new-cluster" in note for note in report.notes), report.notes
    assert sorted(r.split()[0] for r in report.removed) == ["swarm-1", "swarm-2"]
    assert report.cluster_id == before == cluster_id(engine, room, "swarm-3")
    assert {n.name: n.role for n in report.nodes} == {"swarm-1": "manager", "swarm-2": "manager", "swarm-3": "manager"}
    rows = node_rows(engine, room, "swarm-1")
    assert [row.split()[:2] for row in rows] == [["swarm-1", "Ready"], ["swarm-2", "Ready"], ["swarm-3", "Ready"]], rows
