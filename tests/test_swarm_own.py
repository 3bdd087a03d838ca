"""Issue 11: a Swarm cluster of their own for every student, through the command line, on the real
engine, with students logged in over SSH with their own passwords.

One classroom (2 students, 2 nodes each: their host and student-NN-node-2) is shared by the module;
each test first brings it to what it needs with `classroom up` (a no-op on a healthy classroom), so
each passes alone and in any order. A second classroom (`formed: false`) has one student who forms
their own cluster with the commands of their sheet.
"""

from __future__ import annotations

import json
import re

import paramiko
import pytest
from conftest import Cli, free_port_base, port_free, remove_classroom_resources, ssh_connect, ssh_run, unique_name, \
    write_classroom_file

pytestmark = pytest.mark.engine


class OwnRoom:
    def __init__(self, name: str, cli: Cli, engine, image: str):
        self.name, self.cli, self.engine, self.image = name, cli, engine, image

    def up(self, *args: str):
        run = self.cli("up", *args)
        assert run.exit_code == 0, run
        return run

    def roster(self) -> dict[str, dict]:
        run = self.cli("roster", "--format", "json")
        assert run.exit_code == 0, run
        return {row["student"]: row for row in json.loads(run.stdout)}

    def status(self) -> dict[str, dict]:
        run = self.cli("status", "--json")
        return {h["name"]: h for h in json.loads(run.stdout)["hosts"]}

    def as_student(self, student: str, command: str, host: str | None = None, password: str | None = None):
        """`command` over SSH as `student` with their sheet's password, on `host` (their machine by default)."""
        row = self.roster()[student]
        port = next(n["port"] for n in row["swarm"] if n["name"] == (host or student))
        session = ssh_connect(port, row["user"], password or row["password"])
        try:
            return ssh_run(session, command)
        finally:
            session.close()

    def ok(self, student: str, command: str, host: str | None = None) -> str:
        code, out, err = self.as_student(student, command, host)
        assert code == 0, f"{student}@{host or student}: {command} -> {code}: {out}{err}"
        return out

    def container(self, host: str):
        (found,) = self.engine.containers.list(
            all=True, filters={"label": [f"classroom.name={self.name}", f"classroom.host={host}"]})
        return found

    def root(self, host: str, command: str) -> str:
        code, out = self.container(host).exec_run(["sh", "-c", command])
        assert code == 0, f"{host}: {command} -> {code}: {out.decode(errors='replace')}"
        return out.decode(errors="replace")

    def cluster_id(self, student: str) -> str:
        return self.root(student, "docker info --format '{{.Swarm.Cluster.ID}}'").strip()


def make(engine, tmp_path_factory, tiny_image, prefix: str, *, students: int, nodes: int,
         formed: bool = True) -> OwnRoom:
    folder = tmp_path_factory.mktemp(prefix)
    name = unique_name(f"t-{prefix}")
    # Hosts at base+1…, their node-2 at base+1001…: both ranges must be free (3 students at most).
    base = next(b for b in (free_port_base(3, low=40000, high=52000) for _ in range(50))
                if all(port_free(b + 1000 + i) for i in range(1, 4)))
    mode = "per-student" if formed else "per-student\n  formed: false"
    write_classroom_file(folder, name, students=students, swarm_nodes=nodes, swarm_mode=mode,
                         port_base=base, extra=f"images:\n  - {tiny_image}\n")
    return OwnRoom(name, Cli(folder / "home", cwd=folder), engine, tiny_image)


@pytest.fixture(scope="module")
def room(engine, tmp_path_factory, tiny_image):
    made = make(engine, tmp_path_factory, tiny_image, "own", students=2, nodes=2)
    try:
        yield made
    finally:
        made.cli("down", "--yes")
        remove_classroom_resources(engine, made.name)


def node_names(room: OwnRoom, student: str) -> list[str]:
    return sorted(room.ok(student, "docker node ls --format '{{.Hostname}} {{.Status}}'").split("\n")[:-1])


def test_each_student_sees_only_their_own_nodes(room):
    run = room.up()
    assert "Swarm: a cluster of their own for each student, formed; 4/4 node(s) ok." in run.stdout
    assert "routing mesh does not work on these hosts" in run.stdout  # no IPVS in this kernel
    assert node_names(room, "student-01") == ["student-01 Ready", "student-01-node-2 Ready"]
    assert node_names(room, "student-02") == ["student-02 Ready", "student-02-node-2 Ready"]
    assert room.cluster_id("student-01") != room.cluster_id("student-02")
    # The contract: roster's `swarm`, status' roles and owners.
    rows = room.roster()
    assert [(n["name"], n["role"]) for n in rows["student-01"]["swarm"]] == [
        ("student-01", "swarm-manager"), ("student-01-node-2", "swarm-worker")]
    assert all(set(n) == {"name", "role", "address", "port"} for n in rows["student-01"]["swarm"])
    assert rows["student-01"]["swarm_password"] is None  # their own nodes take their own password
    hosts = room.status()
    assert (hosts["student-02-node-2"]["role"], hosts["student-02-node-2"]["student"]) == ("swarm-worker", "student-02")
    assert hosts["student-02"]["checks"]["swarm"] is True and hosts["student-02-node-2"]["state"] == "ready"
    # The sheet lists the student's own nodes with the exact ssh command, no one else's.
    sheet = (room.cli.home / room.name / "sheets" / "student-01.md").read_text()
    node = rows["student-01"]["swarm"][1]
    assert f"ssh -p {node['port']} student-01@{node['address']}" in sheet
    assert "student-02" not in sheet and "mode=host" in sheet


def test_a_service_and_a_password_stay_with_their_student(room):
    room.up()
    room.ok("student-01", f"docker service rm web1 2>/dev/null; docker service create -d --name web1 {room.image} "
                          "sleep 3600 >/dev/null")
    assert "web1" in room.ok("student-01", "docker service ls --format '{{.Name}}'")
    assert "web1" not in room.ok("student-02", "docker service ls --format '{{.Name}}'")
    # student-01's password does not open student-02's node; student-02's own does.
    with pytest.raises(paramiko.AuthenticationException):
        room.as_student("student-02", "true", host="student-02-node-2", password=room.roster()["student-01"]["password"])
    assert room.ok("student-02", "id -un", host="student-02-node-2").strip() == "student-02"
    # Nobody else has an account there: no other student's hash ever reached the node.
    shadow = room.root("student-02-node-2", "cat /etc/shadow")
    assert re.findall(r"^(student-\d+):", shadow, re.MULTILINE) == ["student-02"]


def test_reset_of_one_student_cleans_their_cluster_only(room):
    room.up()
    for student in ("student-01", "student-02"):
        room.ok(student, f"docker service rm web 2>/dev/null; docker service create -d --name web {room.image} "
                         "sleep 3600 >/dev/null; echo s | docker secret create s1 - >/dev/null || true")
    before = room.cluster_id("student-01")
    run = room.cli("reset", "student-01")
    assert run.exit_code == 0, run
    assert room.ok("student-01", "docker service ls -q; docker secret ls -q") == ""
    assert room.cluster_id("student-01") == before  # a formed cluster stays formed
    assert node_names(room, "student-01") == ["student-01 Ready", "student-01-node-2 Ready"]
    assert "web" in room.ok("student-02", "docker service ls --format '{{.Name}}'")
    assert "s1" in room.ok("student-02", "docker secret ls --format '{{.Name}}'")


def test_cluster_ids_survive_up_and_a_removed_node_rejoins_its_owner(room):
    room.up()
    ids = {s: room.cluster_id(s) for s in ("student-01", "student-02")}
    room.container("student-02-node-2").remove(force=True)  # the machine is gone, its disk stays
    run = room.up()
    assert {s: room.cluster_id(s) for s in ids} == ids
    assert node_names(room, "student-02") == ["student-02 Ready", "student-02-node-2 Ready"]
    assert "student-01" not in [line.split()[0] for line in run.stdout.splitlines()
                                if "joined" in line or "initialised" in line]


def test_up_with_more_students_adds_whole_clusters_and_touches_none(room):
    room.up()
    ids = {s: room.cluster_id(s) for s in ("student-01", "student-02")}
    run = room.up("--students", "3")
    assert {s: room.cluster_id(s) for s in ids} == ids
    assert node_names(room, "student-03") == ["student-03 Ready", "student-03-node-2 Ready"]
    table = {line.split("│")[1].strip(): line for line in run.stdout.splitlines() if line.startswith("│")}
    assert "unchanged" in table["student-01-node-2"] and "created" in table["student-03-node-2"]


def test_switching_the_swarm_mode_of_a_live_classroom_is_refused(room):
    room.up()
    before = room.roster()
    shared = room.cli.cwd / "shared.yaml"
    shared.write_text((room.cli.cwd / "classroom.yaml").read_text().replace("mode: per-student", "mode: shared"))
    run = room.cli("-f", str(shared), "up")
    assert run.exit_code == 2, run
    assert run.error_lines == [
        f"classroom: error: swarm.mode: classroom '{room.name}' was made with per-student Swarm nodes "
        "(student-01-node-2, …): keep `mode: per-student`, or `classroom down` then `classroom up`"]
    assert room.roster() == before
    assert not any(name.startswith("swarm-") for name in room.status())


def test_reset_hard_replaces_the_host_and_the_nodes_with_the_same_names_ports_and_passwords(room):
    room.up()
    old = {h: room.container(h).id for h in ("student-01", "student-01-node-2")}
    access = room.roster()["student-01"]
    other = room.cluster_id("student-02")
    run = room.cli("reset", "student-01", "--hard")
    assert run.exit_code == 0, run
    assert all(room.container(h).id != old[h] for h in old)  # new machines
    assert room.roster()["student-01"] == access  # same names, ports, password, host key fingerprint
    hosts = room.status()  # each session checks the host key the classroom keeps for that name
    assert hosts["student-01"]["state"] == hosts["student-01-node-2"]["state"] == "ready", hosts
    assert node_names(room, "student-01") == ["student-01 Ready", "student-01-node-2 Ready"]
    assert room.cluster_id("student-02") == other


# --- formed: false --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def blank(engine, tmp_path_factory, tiny_image):
    made = make(engine, tmp_path_factory, tiny_image, "blank", students=1, nodes=2, formed=False)
    try:
        yield made
    finally:
        made.cli("down", "--yes")
        remove_classroom_resources(engine, made.name)


def test_a_student_forms_their_own_cluster_with_the_sheets_commands(blank):
    blank.up()
    hosts = blank.status()
    assert (hosts["student-01-node-2"]["role"], hosts["student-01-node-2"]["state"]) == ("swarm-node", "ready")
    assert hosts["student-01"]["checks"]["swarm"] is True  # ready, though no cluster exists
    sheet = (blank.cli.home / blank.name / "sheets" / "student-01.md").read_text()
    init = re.search(r"`(docker swarm init --advertise-addr [0-9.]+)`", sheet).group(1)
    join = re.search(r"`(docker swarm join --token TOKEN [0-9.]+:2377)`", sheet).group(1)
    blank.ok("student-01", f"docker swarm leave --force >/dev/null 2>&1; {init} >/dev/null")
    token = blank.ok("student-01", "docker swarm join-token -q worker").strip()
    blank.ok("student-01", f"docker swarm leave --force >/dev/null 2>&1; {join.replace('TOKEN', token)}",
             host="student-01-node-2")
    assert node_names(blank, "student-01") == ["student-01 Ready", "student-01-node-2 Ready"]
    formed = blank.cluster_id("student-01")
    blank.up()  # leaves the student's cluster alone
    assert blank.cluster_id("student-01") == formed
    assert blank.status()["student-01"]["role"] == "student"
    # reset: with formed: false, the nodes leave any swarm
    run = blank.cli("reset", "student-01")
    assert run.exit_code == 0, run
    for host in ("student-01", "student-01-node-2"):
        assert blank.root(host, "docker info --format '{{.Swarm.LocalNodeState}}'").strip() == "inactive"
