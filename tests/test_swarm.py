"""The Swarm cluster (issue 4), on the real Docker engine, over real SSH.

One classroom (2 students, 3 Swarm nodes) is shared by the whole module. Every test that needs
the cluster asks for `cluster`, which converges it first (a no-op when it is formed already), so
each test passes alone and in any order: form the cluster, use it as students (a service on every
node, a stack), replace a worker, converge again, replace the only manager (handed over first,
then not), and check that no join token reaches a log line, the progress display, a report, a
command the tool sends, or the command line of any process on the nodes.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field

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
    image_tar: bytes  # `docker save` of `image`, for the nodes (nothing can be pulled)
    reports: list = field(default_factory=list)  # every SwarmReport
    notes: list[str] = field(default_factory=list)  # what release_node said
    tokens: set[str] = field(default_factory=set)  # every join token the clusters ever had

    @property
    def key(self):
        return self.room.state.admin_key()

    @property
    def passwords(self) -> dict[str, str]:
        """The students' passwords for the shared Swarm nodes (not their own hosts')."""
        return self.room.state.known_passwords(swarm=True)

    def machines(self):
        return self.room.backend.machines()

    def load_image_where_missing(self) -> None:
        """The test image on every Swarm node, including one a test replaced."""
        for name in (f"swarm-{k}" for k in range(1, NODES + 1)):
            container = self.container(name)
            if container.exec_run(["docker", "image", "inspect", self.image])[0] != 0:
                load_image_into(container, self.image_tar, "tiny.tar")

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

    def replace(self, name: str, *, release: bool, on_new_machine=None):
        """`reset NAME --hard` as the lead will wire it: release, replace, provision, converge;
        `on_new_machine(name)` runs as soon as the new machine exists, before it is provisioned."""
        from provision.provisioning import provision_host
        from provision.swarm import release_node

        if release:
            self.notes += release_node(self.machines(), self.room.admin_access(), name, self.progress)
        spec = next(h for h in self.room.planned_hosts() if h.name == name)
        machine = self.room.backend.replace(spec, self.key.public_line)
        if on_new_machine is not None:
            on_new_machine(name)
        provision_host(machine, self.room.state.password_hashes(self.passwords, swarm=True), self.room.admin_access())
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
    path.write_text(f"name: {name}\nstudents: {STUDENTS}\nswarm:\n  nodes: {NODES}\n  mode: shared\n"
                    f"local:\n  ssh_port_base: {base}\n  public_host: 127.0.0.1\nttl: 2h\n")
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
        yield SwarmRoom(room, engine, tiny_image, progress, logs, commands, save_image(engine, tiny_image))
    finally:
        root.removeHandler(logs)
        root.setLevel(saved_level)
        try:
            down(room)
        finally:
            remove_classroom_resources(engine, name)
            patch.undo()


@pytest.fixture
def cluster(swarm) -> SwarmRoom:
    """The module's classroom with its cluster formed, every node Ready and holding the test image."""
    swarm.load_image_where_missing()
    report = swarm.converge()
    assert report.ok, [(n.name, n.error) for n in report.failed]
    return swarm


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
def test_student_creates_a_service_whose_tasks_run_on_every_node(cluster):
    user = "student-01"
    client = cluster.student(user)  # their Swarm password, over SSH, on swarm-1
    service = f"{user}-web"
    try:
        code, out, err = ssh_run(client, "id -un && docker node ls --format '{{.Hostname}} {{.Status}}'")
        assert code == 0, err
        assert out.split()[0] == user and out.count("Ready") == NODES, out

        code, out, err = ssh_run(client, f"docker service create --detach --name {service} --replicas 3 "
                                         f"{cluster.image} sleep 3600")
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
def test_student_deploys_a_stack(cluster):
    user = "student-02"
    client = cluster.student(user)
    stack = "st02"
    try:
        code, _out, err = ssh_run(client, f"cat > stack.yml <<'EOF'\n{STACK.format(image=cluster.image)}EOF\n"
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
def test_a_replaced_worker_rejoins_and_its_stale_entry_is_removed(cluster):
    before = cluster.cluster_id()
    report = cluster.replace("swarm-3", release=True)  # release: nothing to do for a worker
    assert report.ok, [(n.name, n.error) for n in report.failed]
    print(f"\nconverge_swarm after replacing swarm-3: {report.seconds:.2f} s")
    assert not report.formed and not report.lost
    assert [r.split()[0] for r in report.removed] == ["swarm-3"]
    assert "joined as worker" in report.changes_for("swarm-3")
    assert report.cluster_id == before == cluster.cluster_id()
    assert_three_ready(cluster)


@pytest.mark.engine
def test_a_second_converge_changes_nothing(cluster):
    before = cluster.cluster_id()
    report = cluster.converge()
    assert report.ok and not report.changed, report
    print(f"\nconverge_swarm on a healthy cluster: {report.seconds:.2f} s")
    assert report.cluster_id == before == cluster.cluster_id()  # never re-initialised
    assert_three_ready(cluster)


@pytest.mark.engine
def test_status_shows_availability_and_the_ready_count(cluster):
    from provision.swarm import swarm_status

    cluster.exec("swarm-1", "docker node update --availability drain swarm-2")
    try:
        status = swarm_status(cluster.machines(), cluster.room.admin_access())
        node = status.node("swarm-2")
        assert node is not None and node.availability == "drain" and node.status == "ready"
        assert status.checks["swarm-2"] == {"swarm": True}  # drained is a state a lesson may want
        assert status.ready_nodes == NODES and status.manager == "swarm-1"
    finally:
        cluster.exec("swarm-1", "docker node update --availability active swarm-2")


@pytest.mark.engine
def test_the_only_manager_handed_over_before_its_replacement_keeps_the_cluster(cluster):
    before = cluster.cluster_id()
    report = cluster.replace("swarm-1", release=True)
    assert report.ok, [(n.name, n.error) for n in report.failed]
    print(f"\nconverge_swarm after replacing the only manager (handed over): {report.seconds:.2f} s")
    assert any("stands in" in note for note in cluster.notes), cluster.notes
    assert not report.formed and not report.lost
    assert report.cluster_id == before == cluster.cluster_id()
    rows = assert_three_ready(cluster)
    assert {r[0]: r[2] for r in rows}["swarm-1"] == "Leader"
    assert sum(1 for r in rows if r[2]) == 1, rows  # exactly one manager again
    assert {n.name: n.role for n in report.nodes}["swarm-1"] == "manager"


@pytest.mark.engine
def test_the_only_manager_replaced_without_hand_over_forms_a_new_cluster_and_says_so(cluster):
    before = cluster.cluster_id()
    report = cluster.replace("swarm-1", release=False)
    assert report.ok, [(n.name, n.error) for n in report.failed]
    print(f"\nconverge_swarm after losing the only manager: {report.seconds:.2f} s")
    assert report.formed and report.lost
    assert any("new cluster" in note for note in report.notes), report.notes
    assert any("new cluster" in line for line in cluster.progress.lines)
    assert report.cluster_id != before and report.cluster_id == cluster.cluster_id()
    rows = assert_three_ready(cluster)
    assert {r[0]: r[2] for r in rows} == {"swarm-1": "Leader", "swarm-2": "", "swarm-3": ""}


# --- secrets ---------------------------------------------------------------------------------------
# Every process's command line on a node, sampled as root every 50 ms until told to stop; `grep -a`
# prints one process per line: "/proc/PID/cmdline:arg0<NUL>arg1<NUL>...".
SAMPLER = ("rm -f /run/argv.stop; while [ ! -e /run/argv.stop ]; do "
           "grep -a . /proc/[0-9]*/cmdline 2>/dev/null; sleep 0.05; done > /run/argv.samples")


class ArgvSampler:
    """Records the command lines of every process on the Swarm nodes while a block runs."""

    def __init__(self, swarm: SwarmRoom) -> None:
        self.swarm = swarm
        self.nodes = [f"swarm-{k}" for k in range(1, NODES + 1)]

    def __enter__(self) -> ArgvSampler:
        for node in self.nodes:
            self.start(node)
        return self

    def start(self, node: str) -> None:
        """(Again, on a replaced node: a new container runs no sampler.)"""
        self.swarm.container(node).exec_run(["sh", "-c", SAMPLER], detach=True)

    def __exit__(self, *exc) -> None:
        for node in self.nodes:  # containers replaced meanwhile run no sampler: touching is harmless
            self.swarm.container(node).exec_run(["sh", "-c", "touch /run/argv.stop"])

    def samples(self) -> list[str]:
        """Each process seen, as "node: arg0 arg1 ...", once."""
        seen: set[str] = set()
        for node in self.nodes:
            code, out = self.swarm.container(node).exec_run(["sh", "-c", "sleep 0.2; cat /run/argv.samples"])
            assert code == 0, f"{node}: the sampler left nothing: {out!r}"
            for line in out.decode(errors="replace").splitlines():
                argv = line.split(":", 1)[-1].replace("\0", " ").strip()
                seen.add(f"{node}: {argv}")
        return sorted(seen)


def is_the_join_itself(sample: str) -> bool:
    """`docker swarm join --token ...`: the Docker CLI takes the token only as an argument, for the
    seconds the join lasts (documented in provision/swarm/driver.py); nothing else may carry it."""
    return sample.split(": ", 1)[1].startswith("docker swarm join ")


@pytest.mark.engine
def test_join_tokens_and_passwords_never_appear_in_logs_screen_reports_or_command_lines(cluster):
    # A worker replaced (it joins), then the only manager lost (a new cluster forms, the workers
    # join it). Meanwhile every process's command line on the nodes is recorded.
    with ArgvSampler(cluster) as sampler:
        for node in ("swarm-2", "swarm-1"):
            report = cluster.replace(node, release=False, on_new_machine=sampler.start)
            assert report.ok, [(n.name, n.error) for n in report.failed]
    samples = sampler.samples()
    # The evidence is real: the sampler saw the joins, and there were tokens to leak.
    joins = [line for line in samples if is_the_join_itself(line)]
    assert {line.split(":")[0] for line in joins} >= {"swarm-2", "swarm-3"}, samples
    assert any(token in line for token in cluster.tokens for line in joins), joins
    assert len(cluster.tokens) >= 4  # two clusters, two roles each
    assert any("read -r token" in command for command in cluster.commands)  # handed over on stdin
    assert cluster.logs.lines, "the log capture saw nothing: it would prove nothing"

    texts = {
        "log": "\n".join(cluster.logs.lines),
        "screen": "\n".join(cluster.progress.lines),
        "reports": json.dumps([r.as_json() for r in cluster.reports]),
        "notes": "\n".join(cluster.notes),
        "commands sent to the nodes": "\n".join(cluster.commands),
        "command line of a process on a node": "\n".join(line for line in samples if not is_the_join_itself(line)),
    }
    for token in cluster.tokens:
        assert token.startswith("SWMTKN-")
        secret = token.rsplit("-", 1)[-1]  # not even its secret half (SWMTKN-1-<CA digest>-<secret>)
        for where, text in texts.items():
            assert token not in text, f"a join token appears in the {where}"
            assert secret not in text, f"a join token's secret appears in the {where}"
    for user, password in cluster.passwords.items():
        for where, text in texts.items():
            assert password not in text, f"{user}'s password appears in the {where}"
        assert not [line for line in joins if password in line]


# --- without an engine: the parts the CLI relies on ------------------------------------------------
def test_manager_count_is_odd_and_fits_the_nodes():
    from provision.swarm import desired_manager_count

    assert [desired_manager_count(3, n) for n in (1, 2, 3, 5)] == [1, 1, 3, 3]
    assert desired_manager_count(1, 0) == 1 and desired_manager_count(5, 4) == 3


def test_swarm_machines_are_the_nodes_in_order():
    from provision.model import Machine
    from provision.swarm import swarm_machines

    def machine(name, role):
        return Machine(name, role, None, "running", "127.0.0.1", 22, "127.0.0.1", 22)

    machines = [machine("swarm-10", "swarm-worker"), machine("student-01", "student"),
                machine("swarm-2", "swarm-worker"), machine("swarm-1", "swarm-manager")]
    assert [m.name for m in swarm_machines(machines)] == ["swarm-1", "swarm-2", "swarm-10"]


def test_report_merges_into_host_reports():
    from provision.model import HostReport
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
