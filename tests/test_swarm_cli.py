"""Issue 4 through the command line a trainer types: `up` forms the cluster, `status` shows it,
a second `up` keeps it, `reset swarm-3 --hard` brings a node back into it."""

from __future__ import annotations

import json

import paramiko
import pytest
from conftest import Cli, free_port_base, remove_classroom_resources, ssh_connect, ssh_run, unique_name, \
    write_classroom_file

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def room(engine, tmp_path_factory):
    folder = tmp_path_factory.mktemp("swarm-cli")
    name = unique_name("t-swcli")
    write_classroom_file(folder, name, students=2, swarm_nodes=3,
                         port_base=free_port_base(110, low=48000, high=52000))
    cli = Cli(folder / "home", cwd=folder)
    yield name, cli
    cli("down", "--yes")
    remove_classroom_resources(engine, name)


def manager(engine, name):
    (container,) = engine.containers.list(filters={"label": [f"classroom.name={name}", "classroom.host=swarm-1"]})
    return container


def cluster_id(engine, name) -> str:
    return manager(engine, name).exec_run(["docker", "info", "--format", "{{.Swarm.Cluster.ID}}"]).output.decode().strip()


def node_list(engine, name) -> list[tuple[str, str]]:
    out = manager(engine, name).exec_run(["docker", "node", "ls", "--format", "{{.Hostname}} {{.Status}}"]).output
    return sorted(tuple(line.split()) for line in out.decode().splitlines())


def test_up_forms_the_cluster_and_status_shows_it(engine, room):
    name, cli = room
    run = cli("up")
    assert run.exit_code == 0, run
    assert "Swarm: cluster" in run.stdout
    assert "Swarm nodes are shared: every student is root on them" in run.stdout
    assert node_list(engine, name) == [("swarm-1", "Ready"), ("swarm-2", "Ready"), ("swarm-3", "Ready")]
    status = json.loads(cli("status", "--json").stdout)
    nodes = [h for h in status["hosts"] if h["role"] != "student"]
    assert [(h["name"], h["role"], h["checks"].get("swarm")) for h in nodes] == [
        ("swarm-1", "swarm-manager", True), ("swarm-2", "swarm-worker", True), ("swarm-3", "swarm-worker", True)]
    # The nodes' /etc/shadow holds the Swarm passwords' hashes, which status compares with the state's.
    assert all(h["checks"]["ssh"] and h["state"] == "ready" for h in status["hosts"]), status


def test_a_student_uses_the_cluster_with_their_swarm_password_only(engine, room):
    # Every student is root on the shared nodes: the password typed there is not their own host's.
    name, cli = room
    row = json.loads(cli("roster", "--format", "json").stdout)[1]
    assert row["swarm_password"] and row["swarm_password"] != row["password"]
    swarm_port = next(h["port"] for h in json.loads(cli("status", "--json").stdout)["hosts"] if h["name"] == "swarm-1")
    with pytest.raises(paramiko.AuthenticationException):
        ssh_connect(swarm_port, row["user"], row["password"]).close()
    session = ssh_connect(swarm_port, row["user"], row["swarm_password"])
    try:
        code, out, err = ssh_run(session, "id -un; docker node ls --format '{{.Hostname}}' | sort")
    finally:
        session.close()
    assert code == 0, err
    assert out.split() == [row["user"], "swarm-1", "swarm-2", "swarm-3"]


def test_second_up_keeps_the_cluster(engine, room):
    name, cli = room
    before = cluster_id(engine, name)
    run = cli("up")
    assert run.exit_code == 0, run
    assert cluster_id(engine, name) == before


def test_hard_reset_of_a_node_rejoins_without_a_down_entry(engine, room):
    name, cli = room
    before = cluster_id(engine, name)
    run = cli("reset", "swarm-3", "--hard")
    assert run.exit_code == 0, run
    assert node_list(engine, name) == [("swarm-1", "Ready"), ("swarm-2", "Ready"), ("swarm-3", "Ready")]
    assert cluster_id(engine, name) == before


def test_soft_reset_of_a_shared_node_is_refused(room):
    _name, cli = room
    run = cli("reset", "swarm-2")
    assert run.exit_code == 2
    assert run.stderr.strip() == "classroom: error: a Swarm node is shared by every student: reset it with --hard"
