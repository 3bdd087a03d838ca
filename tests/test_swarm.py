"""The Swarm cluster (issue 4), on the real Docker engine, over real SSH.

One classroom (2 students, 3 Swarm nodes) is shared by the whole module; the tests run in file
order: form the cluster, use it as students (a service on every node, a stack), replace a worker,
converge again, replace the only manager (handed over first, then not), and finally check that
no join token ever reached a log line, the progress display, a report or a command line.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import free_port_base, load_image_into, remove_classroom_resources, save_image, ssh_connect, ssh_run
from fakes import LogCapture, ProgressRecorder


NODES = 3
STUDENTS = 2
SWARM_PORT_OFFSET = 100  # provision.backends.local: swarm-k listens on base + 100 + k


@dataclass
class SwarmRoom:
    room: object  # provision.commands.Classroom
    engine: object
    image: str
    progress: ProgressRecorder
    logs: LogCapture
    commands: list[str]  # every command the tool sent to a Swarm node
    reports: list = field(default_factory=list)  # every SwarmReport
    notes: list[str] = field(default_factory=list)  # what release_node said
    tokens: set[str] = field(default_factory=set)  # every join token the clusters ever had

    @property
    def key(self):
        return self.room.state.admin_key()

    @property
    def passwords(self) -> dict[str, str]:
        return self.room.state.known_passwords()

    def machines(self):
        return self.room.backend.machines()

    def machine(self, name: str):
        return next(m for m in self.machines() if m.name == name)

    def container(self, name: str):
        return self.engine.containers.get(self.machine(name).machine_id)

    def exec(self, name: str, command: str) -> str:
        """Root on a node, through the engine (not the tool's SSH: keeps the tool's logs clean)."""
        code, output = self.container(name).exec_run(["sh", "-c", command])
        text = output.decode(errors="replace")
        assert code == 0, f"{name}: {command} -> {code}: {text}"
        return text

    def manager(self) -> str:
        for name in (f"swarm-{k}" for k in range(1, NODES + 1)):
            code, _ = self.container(name).exec_run(["docker", "node", "ls", "-q"])
            if code == 0:
                return name
        raise AssertionError("no node answers `docker node ls`")

    def node_rows(self) -> list[tuple[str, str, str]]:
        """(hostname, status, manager status) of every entry of the node list."""
        out = self.exec(self.manager(), "docker node ls --format '{{.Hostname}}|{{.Status}}|{{.ManagerStatus}}'")
        return [tuple(line.split("|")) for line in out.splitlines() if line.strip()]  # type: ignore[misc]

    def cluster_id(self) -> str:
        return self.exec(self.manager(), "docker info --format '{{.Swarm.Cluster.ID}}'").strip()

    def remember_tokens(self) -> None:
        manager = self.manager()
        for role in ("worker", "manager"):
            self.tokens.add(self.exec(manager, f"docker swarm join-token -q {role}").strip())

    def converge(self):
        from provision.swarm import converge_swarm

        report = converge_swarm(self.machines(), self.room.admin_access(), self.room.config.swarm.managers,
                                progress=self.progress)
        self.reports.append(report)
        if report.cluster_id:
            self.remember_tokens()
        return report

    def replace(self, name: str, *, release: bool):
        """`reset NAME --hard` as the lead will wire it: release, replace, provision, converge."""
        from provision.provisioning import provision_host
        from provision.swarm import release_node

        if release:
            self.notes += release_node(self.machines(), self.room.admin_access(), name, self.progress)
        spec = next(h for h in self.room.planned_hosts() if h.name == name)
        machine = self.room.backend.replace(spec, self.key.public_line)
        provision_host(machine, self.room.state.password_hashes(self.passwords), self.room.admin_access())
        return self.converge()

    def student(self, user: str, node: str = "swarm-1"):
        return ssh_connect(self.machine(node).ssh_port, user, self.passwords[user])


@pytest.fixture(scope="module")
def swarm(engine, tiny_image, tmp_path_factory):
    import provision.swarm.session
    from provision.commands import Classroom, down, up
    from provision.config import load_config

    folder = tmp_path_factory.mktemp("swarm")
    name = f"sw-{uuid.uuid4().hex[:8]}"
    base = free_port_base(SWARM_PORT_OFFSET + NODES + 1, low=35000, high=60000)
    path = folder / "classroom.yaml"
    path.write_text(f"name: {name}\nstudents: {STUDENTS}\nswarm:\n  nodes: {NODES}\n"
                    f"local:\n  ssh_port_base: {base}\nttl: 2h\n")
    patch = pytest.MonkeyPatch()
    patch.setenv("CLASSROOM_HOME", str(folder / "home"))

    # Every command the tool sends to a node, and every log line of every library, at DEBUG.
    commands: list[str] = []
    original_run = provision.swarm.session.run

    def recording_run(connection, command, **kwargs):
        commands.append(command)
        return original_run(connection, command, **kwargs)

    patch.setattr(provision.swarm.session, "run", recording_run)
    logs = LogCapture()
    root = logging.getLogger()
    saved_level = root.level
    root.addHandler(logs)
    root.setLevel(logging.DEBUG)

    progress = ProgressRecorder()
    room = Classroom.open(load_config(path), progress)
    try:
        result = up(room)
        assert not result.failed, [(h.name, h.error) for h in result.failed]
        image_tar = save_image(engine, tiny_image)
        swarm_room = SwarmRoom(room, engine, tiny_image, progress, logs, commands)
        for machine in swarm_room.machines():
            if machine.role != "student":
                load_image_into(engine.containers.get(machine.machine_id), image_tar, "tiny.tar")
        yield swarm_room
    finally:
        root.removeHandler(logs)
        root.setLevel(saved_level)
        try:
            down(room)
        finally:
            remove_classroom_resources(engine, name)
            patch.undo()


def wait_for(check, timeout: float = 90, every: float = 1.0):
    """`check()` until it returns something truthy; that value, or the last one after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


def assert_three_ready(swarm: SwarmRoom) -> list[tuple[str, str, str]]:
    rows = swarm.node_rows()
    assert sorted(r[0] for r in rows) == [f"swarm-{k}" for k in range(1, NODES + 1)], rows
    assert all(r[1] == "Ready" for r in rows), rows
    assert not [r for r in rows if r[1] == "Down"], rows
    return rows


# --- formation -------------------------------------------------------------------------------------
@pytest.mark.engine
def test_converge_forms_a_cluster_of_three_ready_nodes(swarm):
    from provision.swarm import swarm_status

    report = swarm.converge()
    assert report.ok, [(n.name, n.error) for n in report.failed]
    print(f"\nconverge_swarm formed the cluster in {report.seconds:.2f} s")
    assert report.cluster_id and report.manager == "swarm-1"
    assert not report.lost and not report.recovered
    assert {n.name: n.role for n in report.nodes} == {"swarm-1": "manager", "swarm-2": "worker",
                                                       "swarm-3": "worker"}

    rows = assert_three_ready(swarm)  # `docker node ls` on swarm-1
    assert {r[0]: r[2] for r in rows} == {"swarm-1": "Leader", "swarm-2": "", "swarm-3": ""}

    status = swarm_status(swarm.machines(), swarm.room.admin_access())
    assert status.manager == "swarm-1" and status.manager_reachable
    assert status.ready_nodes == NODES and status.listed_nodes == NODES and not status.stale
    assert status.cluster_id == report.cluster_id == swarm.cluster_id()
    assert status.checks == {f"swarm-{k}": {"swarm": True} for k in range(1, NODES + 1)}
    assert [(n.name, n.state, n.availability, n.status) for n in status.nodes] == [
        (f"swarm-{k}", "active", "active", "ready") for k in range(1, NODES + 1)]
    assert "3/3" in status.summary and "swarm-1" in status.summary
    assert status.as_json()["nodes"][0]["leader"] is True


# --- the students use it ---------------------------------------------------------------------------
@pytest.mark.engine
def test_student_creates_a_service_whose_tasks_run_on_every_node(swarm):
    user = "student-01"
    client = swarm.student(user)  # their own password, over SSH, on swarm-1
    service = f"{user}-web"
    try:
        code, out, err = ssh_run(client, "id -un && docker node ls --format '{{.Hostname}} {{.Status}}'")
        assert code == 0, err
        assert out.split()[0] == user and out.count("Ready") == NODES, out

        code, out, err = ssh_run(client, f"docker service create --detach --name {service} --replicas 3 "
                                         f"{swarm.image} sleep 3600")
        assert code == 0, err

        def running_nodes():
            _c, listing, _e = ssh_run(client, f"docker service ps {service} --filter desired-state=running "
                                              "--format '{{.Node}} {{.CurrentState}}'")
            rows = [line.split() for line in listing.splitlines() if line.strip()]
            ok = len(rows) == 3 and all(row[1] == "Running" for row in rows)
            return {row[0] for row in rows} if ok else None

        nodes = wait_for(running_nodes)
        assert nodes == {f"swarm-{k}" for k in range(1, NODES + 1)}, ssh_run(client, f"docker service ps {service}")
    finally:
        ssh_run(client, f"docker service rm {service}")
        client.close()


STACK = """\
version: "3.8"
services:
  app:
    image: {image}
    command: ["sleep", "3600"]
    deploy:
      replicas: 2
"""


@pytest.mark.engine
def test_student_deploys_a_stack(swarm):
    user = "student-02"
    client = swarm.student(user)
    stack = "st02"
    try:
        code, _out, err = ssh_run(client, f"cat > stack.yml <<'EOF'\n{STACK.format(image=swarm.image)}EOF\n"
                                          f"docker stack deploy -c stack.yml {stack}")
        assert code == 0, err

        def replicas():
            _c, out, _e = ssh_run(client, f"docker stack services {stack} --format '{{{{.Replicas}}}}'")
            return out.strip() == "2/2"

        assert wait_for(replicas), ssh_run(client, f"docker stack ps {stack} --no-trunc")
    finally:
        ssh_run(client, f"docker stack rm {stack}")
        client.close()


# --- repair ----------------------------------------------------------------------------------------
@pytest.mark.engine
def test_a_replaced_worker_rejoins_and_its_stale_entry_is_removed(swarm):
    before = swarm.cluster_id()
    report = swarm.replace("swarm-3", release=True)  # release: nothing to do for a worker
    assert report.ok, [(n.name, n.error) for n in report.failed]
    print(f"\nconverge_swarm after replacing swarm-3: {report.seconds:.2f} s")
    assert not report.formed and not report.lost
    assert [r.split()[0] for r in report.removed] == ["swarm-3"]
    assert "joined as worker" in report.changes_for("swarm-3")
    assert report.cluster_id == before == swarm.cluster_id()
    assert_three_ready(swarm)


@pytest.mark.engine
def test_a_second_converge_changes_nothing(swarm):
    before = swarm.cluster_id()
    report = swarm.converge()
    assert report.ok and not report.changed, report
    print(f"\nconverge_swarm on a healthy cluster: {report.seconds:.2f} s")
    assert report.cluster_id == before == swarm.cluster_id()  # never re-initialised
    assert_three_ready(swarm)


@pytest.mark.engine
def test_status_shows_availability_and_the_ready_count(swarm):
    from provision.swarm import swarm_status

    swarm.exec("swarm-1", "docker node update --availability drain swarm-2")
    try:
        status = swarm_status(swarm.machines(), swarm.room.admin_access())
        node = status.node("swarm-2")
        assert node is not None and node.availability == "drain" and node.status == "ready"
        assert status.checks["swarm-2"] == {"swarm": True}  # drained is a state a lesson may want
        assert status.ready_nodes == NODES and status.manager == "swarm-1"
    finally:
        swarm.exec("swarm-1", "docker node update --availability active swarm-2")


@pytest.mark.engine
def test_the_only_manager_handed_over_before_its_replacement_keeps_the_cluster(swarm):
    before = swarm.cluster_id()
    report = swarm.replace("swarm-1", release=True)
    assert report.ok, [(n.name, n.error) for n in report.failed]
    print(f"\nconverge_swarm after replacing the only manager (handed over): {report.seconds:.2f} s")
    assert any("stands in" in note for note in swarm.notes), swarm.notes
    assert not report.formed and not report.lost
    assert report.cluster_id == before == swarm.cluster_id()
    rows = assert_three_ready(swarm)
    assert {r[0]: r[2] for r in rows}["swarm-1"] == "Leader"
    assert sum(1 for r in rows if r[2]) == 1, rows  # exactly one manager again
    assert {n.name: n.role for n in report.nodes}["swarm-1"] == "manager"


@pytest.mark.engine
def test_the_only_manager_replaced_without_hand_over_forms_a_new_cluster_and_says_so(swarm):
    before = swarm.cluster_id()
    report = swarm.replace("swarm-1", release=False)
    assert report.ok, [(n.name, n.error) for n in report.failed]
    print(f"\nconverge_swarm after losing the only manager: {report.seconds:.2f} s")
    assert report.formed and report.lost
    assert any("new cluster" in note for note in report.notes), report.notes
    assert any("new cluster" in line for line in swarm.progress.lines)
    assert report.cluster_id != before and report.cluster_id == swarm.cluster_id()
    rows = assert_three_ready(swarm)
    assert {r[0]: r[2] for r in rows} == {"swarm-1": "Leader", "swarm-2": "", "swarm-3": ""}


# --- secrets ---------------------------------------------------------------------------------------
@pytest.mark.engine
def test_join_tokens_never_appear_in_logs_screen_reports_or_command_lines(swarm):
    assert len(swarm.tokens) >= 4  # two clusters, two roles each
    assert any("read -r token" in command for command in swarm.commands)  # joins did happen, via stdin
    texts = {
        "log": "\n".join(swarm.logs.lines),
        "screen": "\n".join(swarm.progress.lines),
        "reports": json.dumps([r.as_json() for r in swarm.reports]),
        "notes": "\n".join(swarm.notes),
        "commands": "\n".join(swarm.commands),
        "argv": Path("/proc/self/cmdline").read_bytes().decode(errors="replace"),
    }
    assert swarm.logs.lines, "the log capture saw nothing: it would prove nothing"
    for token in swarm.tokens:
        assert token.startswith("SWMTKN-")
        for where, text in texts.items():
            assert token not in text, f"a join token appears in the {where}"
        # Not even its secret half (a token is SWMTKN-1-<CA digest>-<secret>).
        secret = token.rsplit("-", 1)[-1]
        for where, text in texts.items():
            assert secret not in text, f"a join token's secret appears in the {where}"


# --- without an engine: the parts the CLI relies on ------------------------------------------------
def test_manager_count_is_odd_and_fits_the_nodes():
    from provision.swarm import desired_manager_count

    assert [desired_manager_count(3, n) for n in (1, 2, 3, 5)] == [1, 1, 3, 3]
    assert desired_manager_count(1, 0) == 1 and desired_manager_count(5, 4) == 3


def test_swarm_machines_are_the_nodes_in_order():
    from provision.backends.base import Machine
    from provision.swarm import swarm_machines

    def machine(name, role):
        return Machine(name, role, None, "running", "127.0.0.1", 22, "127.0.0.1", 22)

    machines = [machine("swarm-10", "swarm-worker"), machine("student-01", "student"),
                machine("swarm-2", "swarm-worker"), machine("swarm-1", "swarm-manager")]
    assert [m.name for m in swarm_machines(machines)] == ["swarm-1", "swarm-2", "swarm-10"]


def test_report_merges_into_host_reports():
    from provision.commands import HostReport
    from provision.swarm import SwarmNodeReport, SwarmReport

    report = SwarmReport("c1", "swarm-1", [
        SwarmNodeReport("swarm-1", True, "manager", changes=["Swarm cluster initialised"]),
        SwarmNodeReport("swarm-2", False, error="docker swarm join failed: x"),
    ])
    hosts = [HostReport("student-01", "student", "127.0.0.1", 2201, True),
             HostReport("swarm-1", "swarm-manager", "127.0.0.1", 2301, True, changes=["account student-01"]),
             HostReport("swarm-2", "swarm-worker", "127.0.0.1", 2302, True)]
    report.apply_to(hosts)
    assert [(h.name, h.ok, h.error, h.changes) for h in hosts] == [
        ("student-01", True, None, []),
        ("swarm-1", True, None, ["account student-01", "Swarm cluster initialised"]),
        ("swarm-2", False, "swarm: docker swarm join failed: x", []),
    ]
    assert not report.ok and [n.name for n in report.failed] == ["swarm-2"] and report.changed


def test_status_checks_and_details():
    from provision.swarm import SwarmNodeStatus, SwarmStatus

    status = SwarmStatus([
        SwarmNodeStatus("swarm-1", "active", "a", "manager", "active", "ready", "reachable", True, True),
        SwarmNodeStatus("swarm-2", "active", "b", "worker", "drain", "ready", None, False, True),
        SwarmNodeStatus("swarm-3", "active", "c", "worker", "active", "down", None, False, True),
        SwarmNodeStatus("swarm-4", "unreachable", detail="SSH does not answer"),
    ], cluster_id="c1", manager="swarm-1", ready_nodes=2, listed_nodes=3)
    assert status.checks == {"swarm-1": {"swarm": True}, "swarm-2": {"swarm": True},
                             "swarm-3": {"swarm": False}, "swarm-4": {"swarm": False}}
    assert [status.detail_for(f"swarm-{k}") for k in range(1, 5)] == [
        None, None, "swarm: node is down", "swarm: SSH does not answer"]
    assert status.summary == "Swarm: manager swarm-1 reachable, 2/4 node(s) Ready"
    nobody = SwarmStatus(status.nodes[:1], manager=None)
    assert nobody.checks == {"swarm-1": {"swarm": False}} and not nobody.manager_reachable
    assert nobody.detail_for("swarm-1") == "swarm: no manager reachable"
    assert json.loads(json.dumps(status.as_json()))["nodes"][1]["availability"] == "drain"


def test_tokens_are_scrubbed_from_any_text():
    from provision.swarm.session import Secrets

    secrets = Secrets()
    token = "SWMTKN-1-3pu6hszjas19xyp7ghgosyx9k8atbfcr8p2is99znpy26u2lkl-1awxwuwd3z9j1z3puu7rcgdbx"
    secrets.add(token)
    assert secrets.scrub(f"join --token {token} failed") == "join --token <token> failed"
    assert "SWMTKN" not in secrets.scrub("other SWMTKN-1-abc-def here")
