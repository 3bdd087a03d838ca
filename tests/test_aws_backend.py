"""The aws backend: what it hands the Pulumi engine, and what it reads back from EC2.

The engine is a stand-in `PulumiCommand` (the CLI cannot be installed here): it records every
command line and environment, answers like the CLI, streams engine events back over the
Automation API's gRPC channel, and "deploys" by running the real program under Pulumi's mocks
with the configuration the backend set. EC2 is moto.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket
import stat
from datetime import datetime, timedelta, timezone

import pytest

pulumi = pytest.importorskip("pulumi")
pytest.importorskip("pulumi_aws")
boto3 = pytest.importorskip("boto3")
moto = pytest.importorskip("moto")

import grpc
from pulumi.automation import CommandResult, EngineEvent, PulumiCommand
from pulumi.automation.errors import create_command_error
from pulumi.runtime.proto import events_pb2, events_pb2_grpc
from semver import VersionInfo

from provision.backends.aws import NO_PULUMI, AwsBackend, EngineEvents, find_leftovers
from provision.backends.base import Leftover
from provision.config import ClassroomConfig, PreloadConfig
from provision.errors import BadInput, ClassroomError
from provision.roster import HostSpec, plan_hosts
from provision.state import ClassroomState
from stacks import CONFIG_KEYS

REGION = "eu-west-3"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk6Yx3JQ0i6kE0DVqVXhF3ZPc2GJeb7h3F6Kc1e1vQd classroom-demo"
NOW = datetime(2030, 3, 1, 9, 0, 0, tzinfo=timezone.utc)
INSTANCE = "aws:ec2/instance:Instance"
TAGS = {"classroom": "demo", "managed-by": "classroom"}
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pulumi_aws's own


# --- the stand-in engine -----------------------------------------------------------------------
class Mocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args):
        self.resources.append(args)
        state = dict(args.inputs)
        if args.typ == INSTANCE:
            n = len(self.resources)
            state.update(publicIp=f"203.0.113.{n}", privateIp=f"10.42.0.{n}",
                         publicDns=f"ec2-203-0-113-{n}.{REGION}.compute.amazonaws.com")
        return [f"i-{args.name}" if args.typ == INSTANCE else f"{args.name}-id", state]

    def call(self, args):
        return {"value": "ami-0fromssm", "name": args.args.get("name"), "id": "x", "arn": "x", "type": "String",
                "version": 1, "insecureValue": "ami-0fromssm", "withDecryption": True}


def deploy(config: dict[str, str]) -> tuple[dict, list]:
    """What the engine would do with this configuration: run the program (inline, as the backend
    hands it over) under mocks; returns the stack outputs and the resources."""
    from stacks.classroom_stack import main

    mocks = Mocks()
    exported: dict = {}
    real_export = pulumi.export
    pulumi.export = lambda key, value: exported.__setitem__(key, value)
    pulumi.runtime.set_all_config(config)
    try:
        pulumi.runtime.set_mocks(mocks, project="classroom", stack=config["classroom:name"], preview=False)
        outputs: dict = {}

        @pulumi.runtime.test
        def body():
            main()
            return pulumi.Output.from_input(exported).apply(outputs.update)

        body()
    finally:
        pulumi.export = real_export
        pulumi.runtime.set_all_config({})
    return outputs, mocks.resources


class FakePulumi(PulumiCommand):
    """Stands in for the `pulumi` binary behind the Automation API."""

    def __init__(self) -> None:  # no `pulumi version` subprocess
        self.command = "pulumi"
        self.version = VersionInfo.parse("3.272.0")
        self.calls: list[tuple[list[str], str, dict[str, str]]] = []
        self.stacks: dict[str, dict] = {}
        self.fail_up: str | None = None

    # what the tests look at
    def commands(self, *prefix: str) -> list[list[str]]:
        args = [a for a, _, _ in self.calls]
        args = [a[1:] if a and a[0] == "--non-interactive" else a for a in args]
        return [a for a in args if a[:len(prefix)] == list(prefix)]

    def run(self, args, cwd, additional_env, on_output=None, on_error=None):
        self.calls.append((list(args), cwd, dict(additional_env)))
        argv = [a for a in args if a != "--non-interactive"]
        stack = argv[argv.index("--stack") + 1] if "--stack" in argv else None
        if argv[:2] == ["stack", "select"]:
            if stack not in self.stacks:
                return self._fail(f"error: no stack named '{stack}' found")
        elif argv[:2] == ["stack", "init"]:
            self.stacks[argv[2]] = {"config": {}, "outputs": {}, "resources": []}
        elif argv[:2] == ["stack", "rm"]:
            self.stacks.pop(argv[-1 if "--stack" not in argv else argv.index("--stack") - 1], None)
        elif argv[:2] == ["config", "set-all"]:
            config = self.stacks[stack]["config"]
            for flag, value in itertools.pairwise(argv):
                if flag in ("--plaintext", "--secret"):
                    key, _, text = value.partition("=")
                    config[key] = text
        elif argv[:1] == ["up"]:
            state = self.stacks[stack]
            if self.fail_up:
                self._emit(argv, [{"diagnosticEvent": {"message": self.fail_up + "\n", "color": "never",
                                                       "severity": "error", "urn": _urn("student-01")}}])
                return self._fail("error: update failed")
            replaced = [argv[i + 1] for i, a in enumerate(argv) if a == "--replace"]
            outputs, resources = deploy(state["config"])
            events = [{"resOutputsEvent": {"metadata": {
                "op": "replace" if _urn(r.name) in replaced else "create", "urn": _urn(r.name),
                "type": r.typ, "provider": ""}}} for r in resources if r.typ == INSTANCE]
            self._emit(argv, events)
            state.update(outputs=outputs, resources=resources)
        elif argv[:1] == ["destroy"]:
            state = self.stacks[stack]
            self._emit(argv, [{"resOutputsEvent": {"metadata": {
                "op": "delete", "urn": _urn(r.name, r.typ), "type": r.typ, "provider": ""}}}
                for r in state["resources"]])
            state.update(outputs={}, resources=[])
        elif argv[:2] == ["stack", "output"]:
            return CommandResult(json.dumps(self.stacks[stack]["outputs"]), "", 0)
        elif argv[:2] == ["stack", "history"]:
            return CommandResult(json.dumps([{
                "kind": "update", "startTime": "2030-03-01T09:00:00.000Z", "message": "", "environment": {},
                "config": {}, "result": "succeeded", "endTime": "2030-03-01T09:00:01.000Z", "version": 1}]), "", 0)
        return CommandResult("", "", 0)

    @staticmethod
    def _fail(stderr: str):
        raise create_command_error(CommandResult("", stderr, 255))

    @staticmethod
    def _emit(argv: list[str], events: list[dict]) -> None:
        """Stream events to the Automation API's event server, as the CLI does (gRPC)."""
        target = argv[argv.index("--event-log") + 1]
        assert target.startswith("tcp://")
        with grpc.insecure_channel(target.removeprefix("tcp://")) as channel:
            stream = (events_pb2.EventRequest(event=json.dumps({"sequence": i, "timestamp": 0, **e}))
                      for i, e in enumerate(events))
            events_pb2_grpc.EventsStub(channel).StreamEvents(stream)


def _urn(name: str, typ: str = INSTANCE) -> str:
    return f"urn:pulumi:demo::classroom::{typ}::{name}"


class RecordingProgress:
    def __init__(self) -> None:
        self.steps: list[tuple] = []
        self.notes: list[str] = []

    def start(self, key, description, total=None):
        self.steps.append(("start", key, description, total))

    def advance(self, key, amount=1, detail=None):
        self.steps.append(("advance", key, amount, detail))

    def finish(self, key):
        self.steps.append(("finish", key))

    def note(self, message):
        self.notes.append(message)


# --- fixtures ------------------------------------------------------------------------------------
@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE",
                 "PULUMI_CONFIG_PASSPHRASE_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    with moto.mock_aws():
        yield


def make_config(students: int = 2, swarm: int = 0, **aws) -> ClassroomConfig:
    return ClassroomConfig.model_validate({
        "name": "demo", "backend": "aws", "students": students, "swarm": {"nodes": swarm}, "ttl": "8h",
        "aws": {"region": REGION, "instance_type": "t3.small", "allowed_cidr": "198.51.100.0/24", **aws}})


def moto_clients(region: str):
    session = boto3.session.Session()
    cache: dict = {}

    def client(service: str):
        if service not in cache:
            cache[service] = session.client(service, region_name=region)
        return cache[service]

    return client


def make_backend(tmp_path, config=None, engine=None, **kwargs) -> tuple[AwsBackend, FakePulumi]:
    engine = engine or FakePulumi()
    config = config or make_config()
    state = ClassroomState(config.name, root=tmp_path / "state")
    backend = AwsBackend(config, state, pulumi_command=engine, clients=moto_clients,
                         now=kwargs.pop("now", lambda: NOW), **kwargs)
    return backend, engine


def config_of(engine: FakePulumi) -> dict[str, str]:
    (args,) = engine.commands("config", "set-all")[-1:]
    values = {}
    for flag, value in itertools.pairwise(args):
        if flag == "--plaintext":
            key, _, text = value.partition("=")
            values[key] = text
        assert flag != "--secret"
    return values


# --- no engine: one line, nothing created ---------------------------------------------------------
def test_missing_pulumi_binary_is_one_line_and_nothing_is_created(tmp_path):
    def no_aws(region):
        raise AssertionError("AWS asked before the binary check")

    config = make_config()
    state = ClassroomState("demo", root=tmp_path / "state")
    backend = AwsBackend(config, state, clients=no_aws, which=lambda name: None)
    hosts = plan_hosts(config)
    for attempt in (lambda: backend.preflight(hosts), lambda: backend.ensure(hosts, KEY),
                    lambda: backend.replace(hosts[0], KEY), backend.destroy):
        with pytest.raises(BadInput) as caught:
            attempt()
        assert str(caught.value) == NO_PULUMI
        assert caught.value.exit_code == 2
    assert "https://www.pulumi.com/docs/install/" in NO_PULUMI and "\n" not in NO_PULUMI
    assert not state.path.exists()  # no passphrase, no workspace


# --- up ------------------------------------------------------------------------------------------------
def test_the_generic_preload_mirror_wins_over_the_aws_one(aws_env, tmp_path):
    config = make_config(registry_mirror="http://old:5000")
    assert make_backend(tmp_path, config)[0].spec(plan_hosts(config), KEY).registry_mirror == "http://old:5000"
    config = config.model_copy(update={"preload": PreloadConfig(registry_mirror="https://hub.lan")})
    assert make_backend(tmp_path, config)[0].spec(plan_hosts(config), KEY).registry_mirror == "https://hub.lan"


def test_ensure_hands_the_engine_the_classroom_as_config(aws_env, tmp_path):
    backend, engine = make_backend(tmp_path, make_config(students=3, swarm=2, registry_mirror="http://m:5000"))
    progress = RecordingProgress()
    machines = backend.ensure(plan_hosts(backend.config), KEY + "\n", progress)

    assert engine.commands("stack", "select")[0][:3] == ["stack", "select", "--stack"]
    assert engine.commands("stack", "init") == [["stack", "init", "demo", "--secrets-provider", "passphrase"]]
    (install,) = engine.commands("plugin", "install")
    assert install[:3] == ["plugin", "install", "resource"] and install[3] == "aws"
    assert install[4].startswith("v7.")

    config = config_of(engine)
    assert set(config) == {f"classroom:{k}" for k in CONFIG_KEYS} | {"aws:region"}
    assert config["aws:region"] == REGION
    assert config["classroom:name"] == "demo"
    assert json.loads(config["classroom:hosts"]) == [
        {"name": "student-01", "role": "student", "student": "student-01"},
        {"name": "student-02", "role": "student", "student": "student-02"},
        {"name": "student-03", "role": "student", "student": "student-03"},
        {"name": "swarm-1", "role": "swarm-manager", "student": None},
        {"name": "swarm-2", "role": "swarm-worker", "student": None}]
    assert config["classroom:adminPublicKey"] == KEY
    assert config["classroom:expiresAt"] == "2030-03-01T17:00:00Z"  # now + ttl 8h
    assert config["classroom:instanceType"] == "t3.small"
    assert config["classroom:allowedCidr"] == "198.51.100.0/24"
    assert config["classroom:registryMirror"] == "http://m:5000"
    assert config["classroom:ami"] == ""  # no preflight: the program resolves the SSM parameter

    (up,) = engine.commands("up")
    assert up[:3] == ["up", "--yes", "--skip-preview"]
    assert "--refresh" in up and up[up.index("--color") + 1] == "never"
    assert up[up.index("--exec-kind") + 1] == "auto.inline" and "--event-log" in up
    assert "--target" not in up and "--replace" not in up
    assert up[-2:] == ["--stack", "demo"]

    # the machines come from the stack's outputs, in plan order
    assert [m.name for m in machines] == ["student-01", "student-02", "student-03", "swarm-1", "swarm-2"]
    first = machines[0]
    assert (first.role, first.student, first.state, first.ssh_port, first.admin_user) == \
        ("student", "student-01", "running", 22, "root")
    assert first.ssh_host.startswith("203.0.113.") and first.public_host == first.ssh_host
    assert first.private_address.startswith("10.42.0.") and first.machine_id == "i-student-01"
    assert machines[3].student is None and machines[3].role == "swarm-manager"

    # engine events became progress: one step per host, then done
    assert ("start", "aws", "AWS: 5 hosts in eu-west-3", 5) in progress.steps
    advanced = [s for s in progress.steps if s[0] == "advance" and s[2] == 1]
    assert sorted(s[3] for s in advanced) == sorted(f"{m.name}: create" for m in machines)
    assert progress.steps[-1] == ("finish", "aws")
    # and the cost, before anything was created
    assert progress.notes[0].startswith("cost: about $") and "5 × t3.small in eu-west-3" in progress.notes[0]


def test_state_passphrase_and_backend_stay_in_the_state_folder(aws_env, tmp_path):
    backend, engine = make_backend(tmp_path)
    backend.ensure(plan_hosts(backend.config), KEY)
    secret_file = backend.state.path / "pulumi-passphrase"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    passphrase = secret_file.read_text().strip()
    assert len(passphrase) >= 32
    url = f"file://{backend.state.path / 'pulumi'}"
    for args, cwd, env in engine.calls:
        assert env["PULUMI_CONFIG_PASSPHRASE"] == passphrase
        assert env["PULUMI_BACKEND_URL"] == url
        assert cwd == str(backend.state.path / "pulumi")
        assert not any(passphrase in a for a in args)  # never on a command line
    project = (backend.state.path / "pulumi" / "Pulumi.yaml").read_text()
    assert "name: classroom" in project and url in project

    # the same passphrase next time
    again, engine2 = make_backend(tmp_path)
    again.ensure(plan_hosts(again.config), KEY)
    assert {env["PULUMI_CONFIG_PASSPHRASE"] for _, _, env in engine2.calls} == {passphrase}


def test_the_trainers_backend_and_passphrase_win(aws_env, tmp_path, monkeypatch):
    monkeypatch.setenv("PULUMI_BACKEND_URL", "s3://team-bucket/pulumi")
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "the-team-secret")
    backend, engine = make_backend(tmp_path)
    backend.ensure(plan_hosts(backend.config), KEY)
    assert {env["PULUMI_BACKEND_URL"] for _, _, env in engine.calls} == {"s3://team-bucket/pulumi"}
    assert all("PULUMI_CONFIG_PASSPHRASE" not in env for _, _, env in engine.calls)  # inherited
    assert not (backend.state.path / "pulumi-passphrase").exists()


def test_the_stacks_own_passphrase_wins_once_it_exists(aws_env, tmp_path, monkeypatch):
    backend, _ = make_backend(tmp_path)
    backend.ensure(plan_hosts(backend.config), KEY)
    ours = (backend.state.path / "pulumi-passphrase").read_text().strip()
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "another-secret")
    again, engine = make_backend(tmp_path)
    again.ensure(plan_hosts(again.config), KEY)
    assert {env["PULUMI_CONFIG_PASSPHRASE"] for _, _, env in engine.calls} == {ours}


def test_engine_events_count_each_host_once():
    progress = RecordingProgress()
    events = EngineEvents(progress, "aws")

    def outputs(op: str, name: str, typ: str = INSTANCE) -> EngineEvent:
        return EngineEvent.from_json({"sequence": 1, "timestamp": 0, "resOutputsEvent": {
            "metadata": {"op": op, "urn": _urn(name, typ), "type": typ, "provider": ""}}})

    for op in ("refresh", "same", "create-replacement", "replace", "delete-replaced"):
        events(outputs(op, "student-01"))
    events(outputs("create", "subnet", "aws:ec2/subnet:Subnet"))
    events(outputs("delete", "vpc", "aws:ec2/vpc:Vpc"))
    events(EngineEvent.from_json({"sequence": 2, "timestamp": 0, "diagnosticEvent": {
        "message": "  error: creating EC2 Instance:\n  InsufficientInstanceCapacity\n", "color": "never",
        "severity": "error", "urn": _urn("student-02")}}))
    assert [s for s in progress.steps if s[0] == "advance"] == [
        ("advance", "aws", 1, "student-01: same"), ("advance", "aws", 1, "student-01: replace")]
    assert events.removed == [Leftover("instance", "student-01"), Leftover("vpc", "vpc")]
    assert events.errors == ["student-02: error: creating EC2 Instance: InsufficientInstanceCapacity"]


def test_rerun_keeps_expiry_ami_and_hosts_and_adds_new_ones(aws_env, tmp_path):
    backend, engine = make_backend(tmp_path, make_config(students=3))
    backend.preflight_result = type("Found", (), {"ami": "ami-0pinned", "availability_zone": "eu-west-3b",
                                                  "warnings": ("quota not checked",)})()
    backend.ensure(plan_hosts(backend.config), KEY)
    first = config_of(engine)
    assert first["classroom:ami"] == "ami-0pinned" and first["classroom:availabilityZone"] == "eu-west-3b"

    # two hours later, fewer students asked for, then more: nobody's machine goes away
    later, engine2 = make_backend(tmp_path, make_config(students=2), engine=engine,
                                  now=lambda: NOW + timedelta(hours=2))
    progress = RecordingProgress()
    machines = later.ensure(plan_hosts(later.config), KEY, progress)
    second = config_of(engine2)
    assert second["classroom:hosts"] == first["classroom:hosts"]
    assert second["classroom:expiresAt"] == first["classroom:expiresAt"]  # same expiry for all
    assert second["classroom:ami"] == "ami-0pinned"  # a newer AMI never replaces running hosts
    assert any("keeping student-03" in note for note in progress.notes)
    assert [m.name for m in machines] == ["student-01", "student-02", "student-03"]

    bigger, engine3 = make_backend(tmp_path, make_config(students=4), engine=engine,
                                   now=lambda: NOW + timedelta(hours=3))
    bigger.ensure(plan_hosts(bigger.config), KEY)
    assert [h["name"] for h in json.loads(config_of(engine3)["classroom:hosts"])] == \
        ["student-01", "student-02", "student-03", "student-04"]

    # after expiry, `up` starts a new period rather than hosts that power off at boot
    revived, engine4 = make_backend(tmp_path, make_config(students=4), engine=engine,
                                    now=lambda: NOW + timedelta(hours=9))
    revived.ensure(plan_hosts(revived.config), KEY)
    assert config_of(engine4)["classroom:expiresAt"] == "2030-03-02T02:00:00Z"


def test_moving_a_running_classroom_to_another_region_is_refused(aws_env, tmp_path):
    backend, engine = make_backend(tmp_path)
    backend.ensure(plan_hosts(backend.config), KEY)
    moved, _ = make_backend(tmp_path, make_config(region="us-east-1"), engine=engine)
    with pytest.raises(BadInput, match="classroom demo runs in eu-west-3: run `classroom down` before"):
        moved.ensure(plan_hosts(moved.config), KEY)


def test_engine_failure_is_one_line_with_the_engine_error(aws_env, tmp_path):
    backend, engine = make_backend(tmp_path)
    engine.fail_up = "creating EC2 Instance: VcpuLimitExceeded: You have requested more vCPU capacity"
    progress = RecordingProgress()
    with pytest.raises(ClassroomError) as caught:
        backend.ensure(plan_hosts(backend.config), KEY, progress)
    assert str(caught.value) == ("pulumi up failed: student-01: creating EC2 Instance: VcpuLimitExceeded: "
                                 "You have requested more vCPU capacity")
    assert caught.value.exit_code == 1
    assert progress.steps[-1] == ("finish", "aws")


def test_ensure_starts_hosts_stopped_by_hand(aws_env, tmp_path):
    ec2 = boto3.client("ec2", region_name=REGION)
    stopped = _launch(ec2, "student-01")
    ec2.stop_instances(InstanceIds=[stopped])
    backend, _ = make_backend(tmp_path)
    backend.ensure(plan_hosts(backend.config), KEY)
    state = ec2.describe_instances(InstanceIds=[stopped])["Reservations"][0]["Instances"][0]["State"]["Name"]
    assert state == "running"


# --- reset --hard ------------------------------------------------------------------------------------
def test_replace_targets_exactly_one_instance_urn(aws_env, tmp_path):
    backend, engine = make_backend(tmp_path, make_config(students=3, swarm=1))
    hosts = plan_hosts(backend.config)
    backend.ensure(hosts, KEY)
    progress = RecordingProgress()
    machine = backend.replace(hosts[1], KEY, progress)

    replace_up = engine.commands("up")[-1]
    urn = "urn:pulumi:demo::classroom::aws:ec2/instance:Instance::student-02"
    assert [replace_up[i + 1] for i, a in enumerate(replace_up) if a == "--replace"] == [urn]
    assert [replace_up[i + 1] for i, a in enumerate(replace_up) if a == "--target"] == [urn]
    assert "--refresh" not in replace_up
    assert len(engine.commands("config", "set-all")) == 1  # the stack's config is left as it is
    assert machine.name == "student-02" and machine.student == "student-02" and machine.ssh_host
    assert ("advance", "aws-replace", 1, "student-02: replace") in progress.steps


def test_replace_refuses_unknown_hosts_and_missing_stacks(aws_env, tmp_path):
    backend, engine = make_backend(tmp_path)
    with pytest.raises(BadInput, match="student-01 is not a host of classroom demo on AWS"):
        backend.replace(HostSpec("student-01", "student", "student-01", 1), KEY)
    backend.ensure(plan_hosts(backend.config), KEY)
    with pytest.raises(BadInput, match="student-09 is not a host"):
        backend.replace(HostSpec("student-09", "student", "student-09", 9), KEY)
    engine.stacks.clear()  # state backend lost
    with pytest.raises(BadInput, match="has no AWS stack: run `classroom up` first"):
        backend.replace(plan_hosts(backend.config)[0], KEY)
    assert not any("--replace" in args for args in engine.commands("up"))


# --- down ---------------------------------------------------------------------------------------------
def test_destroy_removes_the_stack_and_says_what_it_cost(aws_env, tmp_path):
    backend, engine = make_backend(tmp_path)
    backend.ensure(plan_hosts(backend.config), KEY)
    done, _ = make_backend(tmp_path, engine=engine, now=lambda: NOW + timedelta(hours=3, minutes=30))
    progress = RecordingProgress()
    removed = done.destroy(progress)

    (destroy,) = engine.commands("destroy")
    assert destroy[0] == "destroy" and "--yes" in destroy and "--refresh" in destroy and destroy[-2:] == ["--stack", "demo"]
    assert engine.commands("stack", "rm")  # the stack and its config are gone
    assert "demo" not in engine.stacks
    assert Leftover("instance", "student-01") in removed and Leftover("instance", "student-02") in removed
    assert Leftover("vpc", "vpc") in removed and Leftover("security-group", "hosts") in removed
    assert Leftover("key-pair", "admin-key") in removed
    assert any(note.startswith("ran 3.5 h; cost: about $") for note in progress.notes)

    # a second `down` finds no stack and does nothing
    engine.calls.clear()
    assert done.destroy(RecordingProgress()) == []
    assert engine.commands("destroy") == []


# --- EC2 is the source of truth: machines and leftovers by tag ---------------------------------------
def _launch(ec2, host: str, classroom: str = "demo", role: str = "student") -> str:
    tags = {**TAGS, "classroom": classroom, "host": host, "role": role,
            "student": host if role == "student" else "none"}
    spec = [{"ResourceType": kind, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
            for kind in ("instance", "volume")]
    reservation = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, InstanceType="t3.small",
                                    TagSpecifications=spec)
    return reservation["Instances"][0]["InstanceId"]


def _tag_spec(kind: str, classroom: str = "demo") -> list[dict]:
    tags = {**TAGS, "classroom": classroom, "Name": f"classroom-{classroom}-{kind}"}
    return [{"ResourceType": kind, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]


def test_machines_are_read_from_ec2_by_tag(aws_env, tmp_path):
    ec2 = boto3.client("ec2", region_name=REGION)
    one = _launch(ec2, "student-01")
    two = _launch(ec2, "student-02")
    old = _launch(ec2, "student-02")  # a replaced instance on its way out
    ec2.terminate_instances(InstanceIds=[old])
    swarm = _launch(ec2, "swarm-1", role="swarm-manager")
    ec2.stop_instances(InstanceIds=[swarm])
    _launch(ec2, "student-01", classroom="other")
    backend, _ = make_backend(tmp_path)
    machines = backend.machines()
    assert [m.name for m in machines] == ["student-01", "student-02", "swarm-1"]
    by_name = {m.name: m for m in machines}
    assert by_name["student-01"].machine_id == one and by_name["student-02"].machine_id == two
    assert by_name["student-01"].state == "running" and by_name["swarm-1"].state == "stopped"
    assert by_name["swarm-1"].student is None and by_name["swarm-1"].role == "swarm-manager"
    described = ec2.describe_instances(InstanceIds=[one])["Reservations"][0]["Instances"][0]
    assert by_name["student-01"].ssh_host == described["PublicIpAddress"]
    assert by_name["student-01"].private_address == described["PrivateIpAddress"]


def test_leftovers_find_everything_tagged_and_nothing_else(aws_env, tmp_path):
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16", TagSpecifications=_tag_spec("vpc"))["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.42.0.0/20",
                               TagSpecifications=_tag_spec("subnet"))["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="hosts", Description="x", VpcId=vpc,
                                      TagSpecifications=_tag_spec("security-group"))["GroupId"]
    gateway = ec2.create_internet_gateway(
        TagSpecifications=_tag_spec("internet-gateway"))["InternetGateway"]["InternetGatewayId"]
    table = ec2.create_route_table(VpcId=vpc, TagSpecifications=_tag_spec("route-table"))["RouteTable"]["RouteTableId"]
    ec2.import_key_pair(KeyName="admin-key-1234", PublicKeyMaterial=KEY.encode(),
                        TagSpecifications=_tag_spec("key-pair"))
    instance = _launch(ec2, "student-01")
    gone = _launch(ec2, "student-02")
    ec2.terminate_instances(InstanceIds=[gone])
    # another classroom's, and the account's own: never listed
    _launch(ec2, "student-01", classroom="other")
    ec2.create_vpc(CidrBlock="10.43.0.0/16", TagSpecifications=_tag_spec("vpc", "other"))
    ec2.import_key_pair(KeyName="someone", PublicKeyMaterial=KEY.encode())

    backend, _ = make_backend(tmp_path)
    found = backend.leftovers()
    kinds = sorted((item.kind, item.name.split(" ")[0]) for item in found)
    volumes = [v["VolumeId"] for v in ec2.describe_volumes(
        Filters=[{"Name": "attachment.instance-id", "Values": [instance]}])["Volumes"]]
    assert kinds == sorted([("vpc", vpc), ("subnet", subnet), ("security-group", group),
                            ("internet-gateway", gateway), ("route-table", table), ("key-pair", "admin-key-1234"),
                            ("instance", instance)] + [("volume", v) for v in volumes])
    assert Leftover("instance", f"{instance} (student-01)") in found

    # once it is all gone, nothing is left
    ec2.terminate_instances(InstanceIds=[instance])
    for volume in ec2.describe_volumes(Filters=[{"Name": "volume-id", "Values": volumes}])["Volumes"]:
        ec2.delete_volume(VolumeId=volume["VolumeId"])  # (moto deletes it with the instance)
    ec2.delete_key_pair(KeyName="admin-key-1234")
    ec2.delete_security_group(GroupId=group)
    ec2.delete_subnet(SubnetId=subnet)
    ec2.delete_route_table(RouteTableId=table)
    ec2.delete_internet_gateway(InternetGatewayId=gateway)
    ec2.delete_vpc(VpcId=vpc)
    assert find_leftovers(ec2, "demo") == []


def test_aws_errors_are_one_line(aws_env, tmp_path, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    backend, _ = make_backend(tmp_path)
    with pytest.raises(BadInput, match="^no AWS credentials found: run `aws configure`"):
        backend.leftovers()


# --- the real engine ------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(shutil.which("pulumi") is None,
                    reason="the Pulumi CLI is not on PATH (https://www.pulumi.com/docs/install/); "
                           "this end-to-end test runs the real engine against a moto server")
def test_end_to_end_with_the_real_engine(tmp_path, monkeypatch):
    """up, status, reset --hard, down and the sweep, through the real `pulumi` binary.

    Against a moto server by default; against a real account (this costs a few cents) when
    CLASSROOM_AWS_E2E=real and credentials are set.
    """
    real = os.environ.get("CLASSROOM_AWS_E2E") == "real"
    extra: dict[str, str] = {}
    kwargs: dict = {}
    server = None
    if not real:
        from moto.server import ThreadedMotoServer

        port = _free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
        server.start()
        url = f"http://127.0.0.1:{port}"
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)  # boto3 (preflight, machines, sweep)
        extra = {"aws:endpoints": json.dumps([{"ec2": url, "ssm": url, "sts": url}]),
                 "aws:skipCredentialsValidation": "true", "aws:skipRequestingAccountId": "true",
                 "aws:skipMetadataApiCheck": "true", "aws:accessKey": "testing", "aws:secretKey": "testing"}
        session = boto3.session.Session()
        image = session.client("ec2", region_name=REGION, endpoint_url=url).describe_images(
            Filters=[{"Name": "name", "Values": ["amzn2-ami-hvm-2.0.*-x86_64-gp2"]}])["Images"][0]["ImageId"]
        session.client("ssm", region_name=REGION, endpoint_url=url).put_parameter(
            Name="/classroom-e2e/debian-12", Value=image, Type="String")
        kwargs["ami_parameter"] = "/classroom-e2e/debian-12"
    monkeypatch.setenv("CLASSROOM_HOME", str(tmp_path / "state"))
    config = ClassroomConfig.model_validate({"name": "e2e-demo", "backend": "aws", "students": 2,
                                             "swarm": {"nodes": 0}, "ttl": "1h",
                                             "aws": {"region": REGION, "instance_type": "t3.micro"}})
    state = ClassroomState(config.name, root=tmp_path / "state")
    backend = AwsBackend(config, state, extra_config=extra, **kwargs)
    hosts = plan_hosts(config)
    try:
        try:
            backend.preflight(hosts)
        except BadInput as exc:  # moto answers no service quota: not the point here
            if real:
                raise
            pytest.skip(f"preflight against moto: {exc}")
        machines = backend.ensure(hosts, state.admin_key(create=True).public_line)
        assert [m.name for m in machines] == ["student-01", "student-02"]
        assert all(m.ssh_host for m in machines)
        assert {m.name for m in backend.machines()} == {"student-01", "student-02"}
        before = {m.name: m.machine_id for m in machines}
        replaced = backend.replace(hosts[1], state.admin_key().public_line)
        assert replaced.machine_id != before["student-02"]
        assert backend.leftovers()  # the classroom exists
    finally:
        backend.destroy()
        left = backend.leftovers()
        if server is not None:
            server.stop()
    assert left == []
