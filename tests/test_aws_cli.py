"""`--backend aws` through the real command line (`provision.cli.main`, in this process).

The Pulumi CLI cannot be installed here and AWS cannot be reached, so:
- the engine is the `FakePulumi` stand-in of tests/fakes.py, extended so that its `up` also
  launches the hosts in moto and its `destroy` terminates them: what the CLI then reads back from
  EC2 by tag (status, roster, the sweep after `down`) is what the "engine" did;
- EC2, STS and SSM are moto; the vCPU quota is answered by botocore's Stubber (moto lacks it);
- the stand-ins reach the backend the CLI makes through `provision.backends.BACKEND_OPTIONS`;
- the hosts are not reachable: every SSH connection is refused at once (and recorded), so `up`
  and `reset` stop at the per-host SSH failure, reported as exit 3 naming the hosts. Accounts,
  preload, exercises and Swarm on real cloud hosts are not exercised here (the local backend's
  tests run that same SSH code against real hosts).

None of these tests may touch a Docker engine: `docker` cannot even be imported while they run.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("pulumi")
pytest.importorskip("pulumi_aws")
boto3 = pytest.importorskip("boto3")
moto = pytest.importorskip("moto")
import paramiko
from botocore.stub import Stubber
from conftest import fake_aws_credentials
from fakes import FakePulumi, make_lost_classroom, publish_image

from provision import backends, provisioning, ssh
from provision import engine as trainer_engine
from provision.backends.aws import cost
from provision.swarm import session as swarm_session
from provision.backends.aws.backend import NO_PULUMI, AwsBackend
from stacks import DEFAULT_DISK_GB

REGION = "eu-west-3"
PARAMETER = "/classroom-test/debian-12/amd64"  # moto reserves /aws/...: the test names its own
QUOTA = {"ServiceCode": "ec2", "QuotaCode": "L-1216C47A"}
NETWORK_QUOTAS = [{"ServiceCode": "vpc", "QuotaCode": "L-F678F1CE"}, {"ServiceCode": "vpc", "QuotaCode": "L-A4707A72"}]
ERROR = "classroom: error: "
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"),  # pulumi_aws's own
              pytest.mark.usefixtures("quick_password_hashes")]

CLASSROOM_FILE = f"""\
name: demo
backend: aws
students: 2
swarm:
  nodes: 0
ttl: 8h
aws:
  region: {REGION}
  instance_type: t3.small
  allowed_cidr: 198.51.100.0/24
"""


# --- stand-ins -----------------------------------------------------------------------------------
class MotoPulumi(FakePulumi):
    """The stand-in engine (it launches and terminates the hosts in moto), with the stack's lock:
    a second update of the same stack at once is refused, as a file:// backend refuses it."""

    def __init__(self) -> None:
        super().__init__()
        self._busy = threading.Lock()  # the stack's lock, as a file:// backend holds it
        self.update_seconds = 0.0  # how long an update holds the lock (a test that needs a collision sets it)

    def run(self, args, cwd, additional_env, on_output=None, on_error=None):
        if [a for a in args if a != "--non-interactive"][:1] != ["up"]:
            return self._run(args, cwd, additional_env, on_output, on_error)
        if not self._busy.acquire(blocking=False):  # what the CLI answers to a second update at once
            self._fail("error: the stack is currently locked by 1 lock(s). Either wait for the other "
                       "process(es) to end or delete the lock file with `pulumi cancel`.")
        try:
            time.sleep(self.update_seconds)
            return self._run(args, cwd, additional_env, on_output, on_error)
        finally:
            self._busy.release()

    def _run(self, args, cwd, additional_env, on_output=None, on_error=None):
        if threading.current_thread() is threading.main_thread():
            return super().run(args, cwd, additional_env, on_output, on_error)
        # `reset` replaces hosts from worker threads. The real engine runs the program in its own
        # language-server thread and event loop; the stand-in runs it here, so it needs one.
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            return super().run(args, cwd, additional_env, on_output, on_error)
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _ec2():
    return boto3.client("ec2", region_name=REGION)


def _tags(item: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in item.get("Tags", [])}


def _instances(classroom: str) -> list[dict]:
    filters = [{"Name": "tag:classroom", "Values": [classroom]},
               {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}]
    reservations = _ec2().describe_instances(Filters=filters)["Reservations"]
    return [i for r in reservations for i in r["Instances"]]


def moto_clients(quota: float = 64):
    """AwsBackend's `clients`: boto3 clients on moto, the vCPU quota answered by a Stubber.
    One session for the test (making one registers hundreds of botocore handlers), fresh clients
    and a fresh Stubber for each backend the CLI makes, as the tool makes them for each run."""
    session = boto3.session.Session()

    def factory(region: str):
        cache: dict = {}
        quotas = session.client("service-quotas", region_name=region)
        stub = Stubber(quotas)
        stub.add_response("get_service_quota", {"Quota": {"Value": quota, **QUOTA}}, QUOTA)
        for network in NETWORK_QUOTAS:  # VPCs and internet gateways per region
            stub.add_response("get_service_quota", {"Quota": {"Value": 5.0, **network}}, network)
        stub.activate()

        def client(service: str):
            if service == "service-quotas":
                return quotas
            if service not in cache:
                cache[service] = session.client(service, region_name=region)
            return cache[service]

        return client

    return factory


def _no_aws(region):
    raise AssertionError("AWS was asked before the Pulumi CLI was found")


# --- fixtures ------------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def no_docker_engine(monkeypatch):
    """The aws path never needs the trainer's Docker engine: make any use of it fail loudly."""
    monkeypatch.setitem(sys.modules, "docker", None)  # `import docker` raises ImportError
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    def refuse():
        raise AssertionError("the aws path connected to the local Docker engine")

    monkeypatch.setattr(trainer_engine, "connect_engine", refuse)
    local = sys.modules.get("provision.backends.local")
    if local is not None:  # imported by another test of the session: its `connect_engine` is bound already
        monkeypatch.setattr(local, "connect_engine", refuse)


@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    fake_aws_credentials(monkeypatch, tmp_path, also_unset=(
        "PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE"))
    with moto.mock_aws():
        publish_image(_ec2(), boto3.client("ssm", region_name=REGION), PARAMETER)
        yield


@pytest.fixture
def folder(tmp_path) -> Path:
    (tmp_path / "classroom.yaml").write_text(CLASSROOM_FILE)
    return tmp_path


def use_backend(monkeypatch, **options) -> None:
    """What the CLI's AwsBackend is made with (see BACKEND_OPTIONS)."""
    monkeypatch.setitem(backends.BACKEND_OPTIONS, "aws", options)


@pytest.fixture
def engine(monkeypatch, aws_env) -> MotoPulumi:
    engine = MotoPulumi()
    use_backend(monkeypatch, pulumi_command=engine, clients=moto_clients(), ami_parameter=PARAMETER,
                sleep=lambda seconds: None)
    return engine


@pytest.fixture
def unreachable(monkeypatch) -> list[dict]:
    """Every SSH connection is refused at once (no retries, and no watching for a moment whether
    the host stopped meanwhile: moto's hosts never stop by themselves); returns what was attempted."""
    attempts: list[dict] = []

    def connect(self, hostname, port=22, username=None, **kwargs):
        attempts.append({"host": hostname, "port": port, "user": username, "key": kwargs.get("key_filename"),
                         "password": kwargs.get("password")})
        raise paramiko.ssh_exception.NoValidConnectionsError(
            {(hostname, port): ConnectionRefusedError(111, "Connection refused")})

    monkeypatch.setattr(paramiko.SSHClient, "connect", connect)
    real = ssh.open_with_retry
    for module in (ssh, provisioning, swarm_session):  # checks opens through ssh.opened
        monkeypatch.setattr(module, "open_with_retry",
                            lambda connection, _deadline=0, **kwargs: real(connection, 0, **kwargs))
    monkeypatch.setattr(provisioning, "STOPPED_GRACE_SECONDS", 0)
    return attempts


def one_error_line(run) -> str:
    assert run.error_lines and len(run.error_lines) == 1, run
    assert run.error_lines[0].startswith(ERROR), run
    return run.error_lines[0].removeprefix(ERROR)


def nothing_kept(home: Path) -> bool:
    return not (home / "demo").exists() and (not home.exists() or not any(home.iterdir()))


# --- refused before anything is created --------------------------------------------------------------
def test_up_without_pulumi_is_one_line_exit_2_and_nothing_is_made(cli, tmp_path):
    """The real default path, in a real process: no `pulumi` on PATH, no credentials, no engine."""
    (tmp_path / "classroom.yaml").write_text("name: demo\nstudents: 2\nswarm:\n  nodes: 0\n")
    empty = tmp_path / "empty-path"
    empty.mkdir()
    env = {"PATH": str(empty), "DOCKER_HOST": "unix:///nonexistent/docker.sock", "AWS_ACCESS_KEY_ID": None,
           "AWS_SECRET_ACCESS_KEY": None, "AWS_PROFILE": None, "AWS_CONFIG_FILE": str(tmp_path / "none"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "AWS_EC2_METADATA_DISABLED": "true"}
    run = cli("up", "--backend", "aws", "--yes", subprocess=True, env=env, timeout=120)
    assert run.exit_code == 2, run
    assert run.stderr == f"{ERROR}{NO_PULUMI}\n"
    assert "https://www.pulumi.com/docs/install/" in run.stderr
    assert run.stdout == ""
    assert nothing_kept(cli.home)


@pytest.mark.parametrize("args", [("up", "--backend", "aws", "--yes"), ("up", "--backend", "aws")])
def test_pulumi_is_checked_first_even_before_the_cost_question(cli, folder, monkeypatch, args):
    use_backend(monkeypatch, which=lambda name: None, clients=_no_aws)
    run = cli(*args)
    assert run.exit_code == 2, run
    assert one_error_line(run) == NO_PULUMI
    assert nothing_kept(cli.home)


def test_up_without_yes_and_without_a_terminal_says_the_cost_and_creates_nothing(cli, folder, engine, monkeypatch):
    asked: list[tuple] = []
    original = AwsBackend.estimate

    def spy(self, hosts, hours=None):
        asked.append((hosts, hours))
        return original(self, hosts, hours)

    monkeypatch.setattr(AwsBackend, "estimate", spy)
    run = cli("up", "--backend", "aws")
    assert run.exit_code == 2, run
    expected = cost.estimate("t3.small", REGION, 2, DEFAULT_DISK_GB, 8.0).line()
    assert one_error_line(run) == f"{expected}; add --yes to create these paid hosts"
    assert expected.startswith("cost: about $") and "2 × t3.small in eu-west-3" in expected
    assert asked == [(2, None)]  # through the backend, for every host of the plan
    assert engine.calls == []  # no stack, no config, no `pulumi up`
    assert _instances("demo") == []
    assert nothing_kept(cli.home)


def test_preflight_refusals_are_one_line_exit_2_before_anything(cli, folder, engine, monkeypatch):
    # the vCPU quota (Stubber) is too small for 2 × t3.small (2 vCPUs each)
    use_backend(monkeypatch, pulumi_command=engine, clients=moto_clients(quota=2), ami_parameter=PARAMETER)
    run = cli("up", "--yes")
    assert run.exit_code == 2, run
    assert one_error_line(run) == (
        "2 × t3.small need 4 vCPUs but the Running On-Demand Standard instances quota in eu-west-3 is 2 "
        "with 0 in use: request an increase in Service Quotas (EC2, L-1216C47A), or use fewer students "
        "or a smaller aws.instance_type")

    # no credentials at all (boto3's own clients)
    use_backend(monkeypatch, pulumi_command=engine, ami_parameter=PARAMETER)
    run = cli("up", "--yes", env={"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None})
    assert run.exit_code == 2, run
    assert one_error_line(run).startswith("no AWS credentials found: run `aws configure`")

    assert engine.calls == [] and _instances("demo") == []
    assert nothing_kept(cli.home)


def test_the_cost_and_the_vcpu_preflight_count_every_students_own_swarm_nodes(cli, folder, engine, monkeypatch):
    # per-student (the default): 2 students, each their host and 2 more nodes: 6 instances
    run = cli("up", "--swarm-nodes", "3")
    assert run.exit_code == 2, run
    expected = cost.estimate("t3.small", REGION, 6, DEFAULT_DISK_GB, 8.0).line()
    assert one_error_line(run) == f"{expected}; add --yes to create these paid hosts"
    use_backend(monkeypatch, pulumi_command=engine, clients=moto_clients(quota=8), ami_parameter=PARAMETER)
    run = cli("up", "--yes", "--swarm-nodes", "3")
    assert run.exit_code == 2, run
    assert one_error_line(run).startswith(
        "6 × t3.small need 12 vCPUs but the Running On-Demand Standard instances quota in eu-west-3 is 8 ")
    assert engine.calls == [] and _instances("demo") == []
    assert nothing_kept(cli.home)


def test_a_built_image_is_refused_when_hosts_pull(cli, folder, engine):
    (folder / "vote").mkdir()
    (folder / "vote" / "Dockerfile").write_text("FROM scratch\n")
    (folder / "classroom.yaml").write_text(CLASSROOM_FILE + "images:\n  - alpine:3.4\n"
                                                            "  - name: course/vote:1\n    build: ./vote\n")
    run = cli("up", "--yes")
    assert run.exit_code == 2, run
    assert one_error_line(run) == (
        "images.1: course/vote:1 is built from vote, but hosts on aws pull their images: set "
        "`preload: {strategy: push}` in the classroom file (your Docker engine builds it and sends it over "
        "SSH), or push it to a registry and remove its `build`")
    assert engine.calls == [] and nothing_kept(cli.home)


def test_commands_on_an_aws_classroom_that_does_not_exist(cli, folder, aws_env, monkeypatch):
    use_backend(monkeypatch, which=lambda name: None, clients=moto_clients())  # and no `pulumi`
    for args in (("status",), ("status", "--json"), ("reset", "1"), ("reset", "student-02", "--hard"),
                 ("roster",)):
        run = cli(*args)
        assert run.exit_code == 2, run
        assert one_error_line(run) == "no classroom named 'demo' here: create it with `classroom up`"
    run = cli("down", "--yes")  # nothing anywhere: nothing to destroy, so no engine is needed
    assert run.exit_code == 0, run
    assert run.stdout.strip() == "classroom 'demo': already gone, nothing to remove."
    assert nothing_kept(cli.home)


# --- through the stand-in engine ----------------------------------------------------------------------
def test_up_reaches_the_ssh_stage_and_names_the_unreachable_hosts(cli, folder, engine, unreachable):
    run = cli("up", "--yes")
    assert run.exit_code == 3, run
    assert "2 host(s) not ready: student-01, student-02" in run.stdout + run.stderr
    assert run.stderr.count(ERROR) == 0  # a report, not an error
    assert "cost: about $" in run.stderr and "2 × t3.small in eu-west-3" in run.stderr

    # the engine was asked for exactly the planned hosts
    (config,) = [engine.stacks["demo"]["config"]]
    assert json.loads(config["classroom:hosts"]) == [
        {"name": "student-01", "role": "student", "student": "student-01"},
        {"name": "student-02", "role": "student", "student": "student-02"}]
    assert len(engine.commands("up")) == 1

    # the SSH pipeline went to the hosts' public addresses, port 22, as root with the admin key
    # (the checks run on that session once a host is provisioned: none here, nothing answers)
    home = cli.home / "demo"
    admin = [a for a in unreachable if a["user"] == "root"]
    assert {a["host"] for a in admin} == {i["PublicIpAddress"] for i in _instances("demo")}  # from EC2
    key = str(home / "admin_key")
    assert all(a["port"] == 22 and a["key"] in (key, [key]) and a["password"] is None for a in admin)
    assert all(a["user"] == "root" for a in unreachable)  # no student password sent to a host not provisioned

    # the state folder holds the stack's passphrase and backend; the classroom runs on aws
    meta = json.loads((home / "classroom.json").read_text())
    assert meta["backend"] == "aws" and meta["aws"]["region"] == REGION
    assert meta["expires_at"].replace("+00:00", "Z") == meta["aws"]["expires_at"]  # what the hosts obey
    assert (home / "pulumi-passphrase").is_file() and (home / "pulumi" / "Pulumi.yaml").is_file()

    # EC2 is read back by tag: status and the roster show the instances' public addresses
    instances = {_tags(i)["host"]: i for i in _instances("demo")}
    status = cli("status", "--json")
    assert status.exit_code == 3, status
    hosts = json.loads(status.stdout)["hosts"]
    assert json.loads(status.stdout)["backend"] == "aws"
    assert [(h["name"], h["role"], h["student"], h["port"], h["state"], h["checks"]["ssh"]) for h in hosts] == [
        ("student-01", "student", "student-01", 22, "failed", False),
        ("student-02", "student", "student-02", 22, "failed", False)]
    assert [h["address"] for h in hosts] == [instances[n]["PublicIpAddress"] for n in ("student-01", "student-02")]
    roster = cli("roster", "--format", "json")
    assert roster.exit_code == 0, roster
    first = json.loads(roster.stdout)[0]
    assert first["ssh"] == f"ssh student-01@{instances['student-01']['PublicIpAddress']}"

    # exec and ssh go to the same addresses, as root with the admin key
    done = cli("exec", "--", "true")
    assert done.exit_code == 1, done
    assert one_error_line(done) == "failed on 2 of 2 host(s): student-01, student-02"
    from provision.commands import Classroom, ssh_argv
    from provision.config import load_config
    from provision.state import ClassroomState

    argv = ssh_argv(Classroom(load_config(folder / "classroom.yaml"), ClassroomState("demo", root=cli.home)), "1")
    assert argv[:5] == ["ssh", "-i", key, "-p", "22"]
    assert argv[-1] == f"root@{instances['student-01']['PublicIpAddress']}"

    # a classroom made on aws stays there
    moved = cli("up", "--backend", "local", "--yes")
    assert moved.exit_code == 2, moved
    assert one_error_line(moved) == ("--backend: classroom 'demo' runs on aws: run `classroom down` before "
                                     "creating it on local")


def test_reset_hard_replaces_one_instance_by_urn_then_reports_ssh(cli, folder, engine, unreachable):
    # made with --backend aws from a file that names no backend (so: local): every later command
    # must still treat it as aws, including the preload strategy (pull: no local engine)
    (folder / "classroom.yaml").write_text(CLASSROOM_FILE.replace("backend: aws\n", "")
                                           + "images:\n  - alpine:3.4\n")
    assert cli("up", "--backend", "aws", "--yes").exit_code == 3
    before = {_tags(i)["host"]: i["InstanceId"] for i in _instances("demo")}
    run = cli("reset", "student-01", "--hard")
    assert run.exit_code == 3, run
    assert "student-01:" in run.stdout + run.stderr and "SSH does not answer" in run.stdout + run.stderr
    replace = engine.commands("up")[-1]
    urn = "urn:pulumi:demo::classroom::aws:ec2/instance:Instance::student-01"
    assert [replace[i + 1] for i, a in enumerate(replace) if a in ("--replace", "--target")] == [urn, urn]
    after = {_tags(i)["host"]: i["InstanceId"] for i in _instances("demo")}
    assert after["student-01"] != before["student-01"] and after["student-02"] == before["student-02"]

    soft = cli("reset", "2")
    assert soft.exit_code == 3, soft
    assert "student-02:" in soft.stderr and "SSH does not answer" in soft.stderr
    assert len(engine.commands("up")) == 2  # a soft reset never asks the engine

    # several at once: one stack, so the replacements take turns (a second concurrent
    # `pulumi up` on the same stack is refused by the engine)
    engine.update_seconds = 0.3  # an update takes a while: long enough for another one to collide
    both = cli("reset", "1", "2", "--hard")
    assert both.exit_code == 3, both
    assert "locked" not in both.stderr and both.stderr.count("SSH does not answer") == 2, both
    replaced = [a[a.index("--replace") + 1].rsplit("::", 1)[-1] for a in engine.commands("up")[2:]]
    assert sorted(replaced) == ["student-01", "student-02"]
    again = {_tags(i)["host"]: i["InstanceId"] for i in _instances("demo")}
    assert again["student-01"] != after["student-01"] and again["student-02"] != after["student-02"]


def test_down_destroys_then_verifies_by_tag_that_nothing_remains(cli, folder, engine, unreachable):
    assert cli("up", "--yes").exit_code == 3
    assert len(_instances("demo")) == 2
    run = cli("down", "--yes")
    assert run.exit_code == 0, run
    (destroy,) = engine.commands("destroy")
    assert "--refresh" in destroy and destroy[-2:] == ["--stack", "demo"]
    assert "Removed " in run.stdout and "2 instance(s)" in run.stdout and "1 vpc(s)" in run.stdout
    assert "Verified: nothing of classroom 'demo' remains." in run.stdout
    assert "ran 0.0 h; cost: about $" in run.stderr
    assert _instances("demo") == [] and nothing_kept(cli.home)

    again = cli("down", "--yes")
    assert again.exit_code == 0, again
    assert "already gone" in again.stdout and len(engine.commands("destroy")) == 1


def test_down_lists_what_is_left_and_exits_1(cli, folder, engine, unreachable):
    assert cli("up", "--yes").exit_code == 3
    left = {_tags(i)["host"]: i["InstanceId"] for i in _instances("demo")}["student-02"]
    engine.leave = {"student-02"}  # the engine "forgets" it: the sweep by tag must not
    run = cli("down", "--yes")
    assert run.exit_code == 1, run
    assert f"still there: instance {left} (student-02)" in run.stderr
    assert "still there: volume vol-" in run.stderr  # its disk, tagged too
    assert run.error_lines[-1] == f"{ERROR}2 resource(s) of 'demo' are left: see above"
    assert "Verified" not in run.stdout
    assert (cli.home / "demo" / "admin_key").is_file()  # kept: the classroom is not gone


# --- issue 9, through the command line -------------------------------------------------------------------
def test_one_refused_host_is_reported_and_the_others_are_provisioned(cli, folder, engine, unreachable):
    """Item 4: exit 3 naming the host AWS refused and why; the others are made and provisioned;
    the next `up` makes the missing one."""
    engine.fail_hosts = {"student-02": "creating EC2 Instance: InsufficientInstanceCapacity"}
    run = cli("up", "--yes")
    assert run.exit_code == 3, run
    assert "AWS: creating EC2 Instance: InsufficientInstanceCapacity" in run.stdout
    assert sorted(_tags(i)["host"] for i in _instances("demo")) == ["student-01"]
    (made,) = _instances("demo")
    assert {a["host"] for a in unreachable} == {made["PublicIpAddress"]}  # provisioning went on for the host that exists
    assert (cli.home / "demo" / "sheets" / "index.html").is_file()

    engine.fail_hosts = {}
    again = cli("up", "--yes")
    assert again.exit_code == 3, again  # (the hosts stay unreachable here)
    assert sorted(_tags(i)["host"] for i in _instances("demo")) == ["student-01", "student-02"]


def test_extend_moves_the_expiry_on_every_host_and_the_sheets(cli, folder, engine, unreachable):
    """Item 2: `classroom extend 2h` retags the running instances in place; the sheets follow."""
    assert cli("up", "--yes").exit_code == 3
    meta = json.loads((cli.home / "demo" / "classroom.json").read_text())
    before = {i["InstanceId"] for i in _instances("demo")}
    run = cli("extend", "2h")
    assert run.exit_code == 0, run
    old = datetime.fromisoformat(meta["expires_at"])
    new = old + timedelta(hours=2)
    assert run.stdout.startswith(f"classroom demo: expires {new:%Y-%m-%d %H:%M} UTC (2 host(s) told).")
    for instance in _instances("demo"):
        assert _tags(instance)["expires-at"] == f"{new:%Y-%m-%dT%H:%M:%SZ}"
    assert {i["InstanceId"] for i in _instances("demo")} == before  # nothing replaced
    assert datetime.fromisoformat(json.loads((cli.home / "demo" / "classroom.json").read_text())["expires_at"]) == new
    sheet = "".join(p.read_text() for p in (cli.home / "demo" / "sheets").glob("*.md"))
    assert f"{new:%H:%M}" in sheet

    bad = cli("extend", "soon")
    assert bad.exit_code == 2, bad
    assert one_error_line(bad) == "DURATION: 'soon' is not a duration like 90m, 8h or 2d"


def test_extend_refuses_a_classroom_that_does_not_exist(cli, folder, engine):
    run = cli("extend", "1h")
    assert run.exit_code == 2, run
    assert one_error_line(run) == "no classroom named 'demo' here: create it with `classroom up`"


def test_down_finds_a_classroom_whose_state_folder_is_lost(cli, aws_env, monkeypatch, tmp_path):
    """Item 10: no state folder, no classroom file, no `pulumi`: `down --name demo --backend aws`
    lists what carries the classroom's tags, asks, and deletes it; without a terminal it refuses."""
    from provision import cli as cli_module

    use_backend(monkeypatch, which=lambda name: None, clients=moto_clients(), sleep=lambda seconds: None)
    made = make_lost_classroom(_ec2())
    refused = cli("--name", "demo", "down", "--backend", "aws")
    assert refused.exit_code == 2, refused
    assert "add --yes to confirm" in one_error_line(refused)
    assert _instances("demo")  # nothing deleted

    monkeypatch.setattr(cli_module, "_interactive", lambda: True)
    declined = cli("--name", "demo", "down", "--backend", "aws", input="n\n")
    assert declined.exit_code == 2 and _instances("demo"), declined
    assert f"instance {made['instance']} (student-01)" in declined.stdout and f"vpc {made['vpc']}" in declined.stdout

    run = cli("--name", "demo", "down", "--backend", "aws", input="y\n")
    assert run.exit_code == 0, run
    assert "Verified: nothing of classroom 'demo' remains." in run.stdout
    assert _instances("demo") == []
    assert not _ec2().describe_vpcs(Filters=[{"Name": "vpc-id", "Values": [made["vpc"]]}])["Vpcs"]


@pytest.mark.parametrize(("cidr", "warned"), [("0.0.0.0/0", True), ("198.51.100.0/24", False)])
def test_up_warns_when_hosts_are_open_to_the_internet(cli, folder, engine, unreachable, cidr, warned):
    """Item 8: the default allowed_cidr stays, with a warning that names the setting."""
    (folder / "classroom.yaml").write_text(CLASSROOM_FILE.replace("198.51.100.0/24", cidr))
    run = cli("up", "--yes")
    assert run.exit_code == 3, run
    assert ("warning: aws.allowed_cidr is 0.0.0.0/0" in " ".join(run.stderr.split())) is warned


def test_the_course_ports_reach_the_security_group(cli, folder, engine, unreachable):
    """Item 7: `ports:` in the classroom file is what the stack opens (besides 22)."""
    (folder / "classroom.yaml").write_text(CLASSROOM_FILE + "ports: [80, \"3000-3005\"]\n")
    assert cli("up", "--yes").exit_code == 3
    config = engine.stacks["demo"]["config"]
    assert config["classroom:ports"] == "80,3000-3005" and config["classroom:ephemeralPorts"] == "false"

    (folder / "classroom.yaml").write_text(CLASSROOM_FILE + "ports: [80, \"3005-3000\"]\n")
    bad = cli("up", "--yes")
    assert bad.exit_code == 2, bad
    assert one_error_line(bad) == ("classroom.yaml: ports: '3005-3000': a range goes from low to high, "
                                   "like \"3000-3005\" (got [80, '3005-3000'])")


# --- faults that lose nothing (issue 8) ---------------------------------------------------------------
def test_a_lost_admin_key_is_refused_on_aws_even_with_new_secrets(cli, folder, engine, unreachable):
    assert cli("up", "--yes").exit_code == 3
    state = cli.home / "demo"
    (state / "admin_key").unlink()
    assert one_error_line(cli("up", "--yes")).startswith(
        f"classroom 'demo' has hosts whose secrets are gone from {state} (the admin key")
    run = cli("up", "--yes", "--new-secrets")
    assert run.exit_code == 2, run
    assert one_error_line(run) == ("the admin key of classroom 'demo' cannot be installed anew on aws hosts "
                                   "without the old one: `classroom down` then `classroom up`")
    assert not (state / "admin_key").exists() and len(engine.commands("up")) == 1


def test_down_on_aws_with_a_damaged_classroom_json_still_destroys_everything(cli, folder, engine, unreachable):
    assert cli("up", "--yes").exit_code == 3
    meta = cli.home / "demo" / "classroom.json"
    meta.write_text(meta.read_text()[:40])
    assert one_error_line(cli("status")).startswith(f"{meta} is damaged (not valid JSON): `classroom down`")
    elsewhere = folder / "elsewhere"  # no classroom file: the backend is read from the state folder
    elsewhere.mkdir()
    run = cli("--name", "demo", "down", "--yes", cwd=elsewhere)
    assert run.exit_code == 0, run
    assert "Verified: nothing of classroom 'demo' remains." in run.stdout
    assert _instances("demo") == [] and nothing_kept(cli.home)


def test_malformed_registry_credentials_are_refused_before_anything(cli, folder, engine):
    """Item 12: a bad CLASSROOM_REGISTRY_AUTH is one line, exit 2, nothing made (and not echoed)."""
    run = cli("up", "--yes", env={"CLASSROOM_REGISTRY_AUTH": "dckr_pat_without_user"})
    assert run.exit_code == 2, run
    assert one_error_line(run) == "CLASSROOM_REGISTRY_AUTH: must be user:token (a Docker Hub access token)"
    assert "dckr_pat" not in run.stdout + run.stderr
    assert engine.commands("up") == [] and _instances("demo") == []
