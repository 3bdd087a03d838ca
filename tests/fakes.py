"""Stand-ins and recorders shared by the tests: import them from here, never from another test module.
Only fakes of our own interfaces, Pulumi mocks, moto and recorders live here: the engine tests run the
real engine, real sshd and real Fabric sessions.

- `FakeBackend`: an in-memory backend (the Backend interface, no engine, no cloud).
- `FakeHostWork`: what the commands do on hosts (provisioning, checks, wipes), without SSH.

Together they run `up`, `status`, `reset` and `down` in milliseconds, so that the orchestration
in provision/commands.py can be tested on its own: which hosts are made, what converges, how a
failed host becomes exit 3, what Ctrl-C does.
"""

from __future__ import annotations

import itertools
import json
import logging

from dataclasses import dataclass, field, replace

from provision.backends.base import Backend, EnsureResult
from provision.model import HostSpec, Leftover, Machine, MachineState, Role
from provision.progress import NULL_PROGRESS, Progress
from provision.state import ClassroomState
from provision.swarm import SwarmReport, SwarmStatus

ALL_OK = {"admin": True, "ssh": True, "docker": True}


class FakeBackend(Backend):
    """Machines in a dict; each new one gets its host key in `state`, as a real backend's does.
    `refuse`: hosts `ensure` cannot make (name -> reason, as a cloud's
    capacity error); `interrupt`: names of methods that raise `interruption` (Ctrl-C while the
    backend works); `stuck`: leftovers `destroy` cannot remove. Every call is in `calls`."""

    can_repair_access = True

    def __init__(self, state: ClassroomState, name: str = "local", *, refuse: dict[str, str] | None = None,
                 interrupt: set[str] | None = None, interruption: type[BaseException] = KeyboardInterrupt,
                 stuck: list[Leftover] | None = None):
        self.state = state
        self.interruption = interruption  # errors.Interrupted: what the CLI's SIGINT handler raises
        self.name = name
        self.hosts: dict[str, Machine] = {}
        self.refuse = dict(refuse or {})
        self.interrupt = set(interrupt or ())
        self.stuck = list(stuck or [])
        self.calls: list[tuple[str, tuple[str, ...]]] = []  # (method, host names)
        self.created: list[str] = []  # every host made, in order (a replaced one again)

    def _called(self, method: str, names: tuple[str, ...] = ()) -> None:
        self.calls.append((method, names))
        if method in self.interrupt:
            raise self.interruption()

    def _new_machine(self, spec: HostSpec) -> Machine:
        port = (2200 if spec.role == Role.STUDENT else 2300) + spec.index
        self.state.host_key(spec.name)
        self.created.append(spec.name)
        return Machine(name=spec.name, role=spec.role, student=spec.student, state=MachineState.RUNNING,
                       ssh_host="127.0.0.1", ssh_port=port, public_host="127.0.0.1", public_port=port,
                       machine_id=f"fake-{spec.name}-{len(self.created)}")

    # --- the Backend interface ---------------------------------------------------------------------
    def preflight(self, hosts: list[HostSpec]) -> None:
        self._called("preflight", tuple(h.name for h in hosts))

    def ensure(self, hosts: list[HostSpec], admin_public_key: str, progress: Progress = NULL_PROGRESS,
               found: object | None = None) -> EnsureResult:
        self._called("ensure", tuple(h.name for h in hosts))
        failures = {}
        for spec in hosts:
            machine = self.hosts.get(spec.name)
            if spec.name in self.refuse:
                failures[spec.name] = self.refuse[spec.name]
            elif machine is None or machine.state == MachineState.CREATED:
                self.hosts[spec.name] = self._new_machine(spec)
            elif not machine.running:
                self.hosts[spec.name] = replace(machine, state=MachineState.RUNNING)
        return EnsureResult([self.hosts[h.name] for h in hosts if h.name in self.hosts], failures)

    def machines(self) -> list[Machine]:
        self._called("machines")
        return list(self.hosts.values())

    def replace(self, host: HostSpec, admin_public_key: str, progress: Progress = NULL_PROGRESS) -> Machine:
        self._called("replace", (host.name,))
        self.hosts[host.name] = self._new_machine(host)
        return self.hosts[host.name]

    def destroy(self, progress: Progress = NULL_PROGRESS) -> list[Leftover]:
        self._called("destroy")
        removed = [Leftover("container", name) for name in self.hosts]
        self.hosts.clear()
        return removed

    def leftovers(self) -> list[Leftover]:
        self._called("leftovers")
        return [Leftover("container", name) for name in self.hosts] + list(self.stuck)

    # --- what a test does behind the tool's back ---------------------------------------------------------
    def stop(self, name: str) -> None:
        self.hosts[name] = replace(self.hosts[name], state=MachineState.EXITED)

    def remove(self, name: str) -> None:
        del self.hosts[name]


@dataclass
class FakeHostWork:
    """Hosts that converge at once. `broken`: host -> the error its provisioning raises;
    `unhealthy`: hosts whose checks fail; `interrupt_on`: the host whose provisioning gets Ctrl-C.
    `provisioned` and `wiped` list the hosts worked on, in order; `provisioned_new` those the
    command said it had just made (they get the course's images before SSH answers)."""

    broken: dict[str, str] = field(default_factory=dict)
    unhealthy: set[str] = field(default_factory=set)
    interrupt_on: str | None = None
    provisioned: list[str] = field(default_factory=list)
    wiped: list[str] = field(default_factory=list)
    provisioned_new: list[str] = field(default_factory=list)
    _ready: set[str] = field(default_factory=set)  # machine IDs already converged

    def _provision(self, machine, hashes):
        self.provisioned.append(machine.name)
        if machine.name == self.interrupt_on:
            raise KeyboardInterrupt
        if machine.name in self.broken:
            raise RuntimeError(self.broken[machine.name])
        if machine.machine_id in self._ready:
            return []
        self._ready.add(machine.machine_id)
        return [f"account {name}" for name in sorted(hashes) if machine.student in (None, name)]

    def provision_and_check(self, machine, hashes, access, course, backend, passwords, *, fresh_exercises=False,
                            new_host=False, wipe=None, keep_home=False, keep_swarm=False, password_login=False,
                            repairable=True):
        if new_host:
            self.provisioned_new.append(machine.name)
        if wipe is not None:
            self.wiped.append(machine.name)
        return self._provision(machine, hashes), self._check(machine)

    def clean_swarm(self, cluster, access, backend):
        return []

    def _check(self, machine):
        if machine.name in self.unhealthy:
            return {**ALL_OK, "docker": False}, "docker does not answer"
        return dict(ALL_OK), None

    def check_all(self, room, machines, passwords, on_done=None, *, swarm_passwords=None):
        results = {}
        for machine in machines:
            results[machine.name] = self._check(machine)
            if on_done:
                on_done(machine)
        return results

    def converge_swarm(self, machines, access, layout, progress):
        return SwarmReport(cluster_id=None, manager=None, nodes=[])

    def release_nodes(self, machines, access, names, progress):
        return []

    def swarm_status(self, machines, access, layout):
        return SwarmStatus(nodes=[])

    def routing_mesh(self, machines, access):
        return None


# --- recorders -------------------------------------------------------------------------------------
class ProgressRecorder:
    """A Progress that keeps everything it is given: `steps` (as tuples), `notes`, and `lines`,
    the text the screen would show."""

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

    @property
    def lines(self) -> list[str]:
        shown = {"start": lambda s: f"start {s[1]}: {s[2]}", "advance": lambda s: f"advance {s[1]}: {s[3]}",
                 "finish": lambda s: f"finish {s[1]}"}
        return [shown[step[0]](step) for step in self.steps] + [f"note: {note}" for note in self.notes]


class LogCapture(logging.Handler):
    """Every log record of every logger it is attached to, formatted (what a log file would hold)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # a record that cannot be formatted is not a leak
            pass


# --- AWS stand-ins: Pulumi's engine and what a classroom leaves in EC2 (moto) ------------------------
try:
    import boto3
    import grpc
    import pulumi
    from pulumi.automation import CommandResult, PulumiCommand
    from pulumi.automation.errors import create_command_error
    from pulumi.runtime.proto import events_pb2, events_pb2_grpc
    from semver import VersionInfo

    PulumiMocks = pulumi.runtime.Mocks
except ImportError:  # no `aws` extra: the aws test modules skip (importorskip), nothing below runs
    PulumiCommand = PulumiMocks = object

REGION = "eu-west-3"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk6Yx3JQ0i6kE0DVqVXhF3ZPc2GJeb7h3F6Kc1e1vQd classroom-demo"
INSTANCE = "aws:ec2/instance:Instance"
TAGS = {"classroom": "demo", "managed-by": "classroom"}


class Mocks(PulumiMocks):
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


def run_under_mocks(mocks, stack: str, program) -> dict:
    """Run a Pulumi program under `mocks`, set for this run only (nothing leaks between tests);
    returns the outputs `program()` returns, resolved.

    At every resource Pulumi walks the whole call stack, for the source positions the engine shows
    beside errors; under pytest that stack is deep, and the walk was a fifth of a run. Mocks never
    read it, so here it is left empty (when this Pulumi still has that hook)."""
    from pulumi.runtime import resource as registration
    from pulumi.runtime.proto import source_pb2

    pulumi.runtime.set_mocks(mocks, project="classroom", stack=stack, preview=False)
    outputs: dict = {}

    @pulumi.runtime.test
    def body():
        return pulumi.Output.from_input(program()).apply(outputs.update)

    walk = getattr(registration, "_get_stack_trace", None)
    if walk is not None:
        registration._get_stack_trace = source_pb2.StackTrace
    try:
        body()
    finally:
        if walk is not None:
            registration._get_stack_trace = walk
    return outputs


def deploy(config: dict[str, str], program=None) -> tuple[dict, list]:
    """What the engine would do with this configuration: run the program (inline, as the backend
    hands it over) under mocks; returns the stack outputs and the resources."""
    from stacks.classroom_stack import main

    main = program or main
    mocks = Mocks()
    exported: dict = {}
    real_export = pulumi.export
    pulumi.export = lambda key, value: exported.__setitem__(key, value)
    pulumi.runtime.set_all_config(config)
    try:
        outputs = run_under_mocks(mocks, config["classroom:name"], lambda: (main(), exported)[1])
    finally:
        pulumi.export = real_export
        pulumi.runtime.set_all_config({})
    return outputs, mocks.resources


class FakePulumi(PulumiCommand):
    """Stands in for the `pulumi` binary behind the Automation API.

    Its `up` runs the real program under mocks with the stack's configuration, then does to EC2
    (moto) what the engine would: launches each host's instance with the tags the program gave
    it, replaces the hosts named by `--replace`, retags the others. `fail_hosts` are hosts AWS
    refuses: without `--continue-on-error` nothing more is created after one fails (the engine
    starts no new operation), with it the others are. Like the real engine, a targeted update
    leaves the stack's outputs as they were. `destroy` terminates the instances, except `leave`."""

    def __init__(self) -> None:  # no `pulumi version` subprocess
        self.command = "pulumi"
        self.version = VersionInfo.parse("3.272.0")
        self.calls: list[tuple[list[str], str, dict[str, str]]] = []
        self.stacks: dict[str, dict] = {}
        self.fail_up: str | None = None
        self.fail_hosts: dict[str, str] = {}
        self.leave: set[str] = set()

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
            return self._up(argv, stack)
        elif argv[:1] == ["destroy"]:
            state = self.stacks[stack]
            self._emit(argv, [{"resOutputsEvent": {"metadata": {
                "op": "delete", "urn": urn(r.name, r.typ), "type": r.typ, "provider": ""}}}
                for r in state["resources"]])
            doomed = [i["InstanceId"] for i in live_instances(stack, state["config"]) if host_tag(i) not in self.leave]
            if doomed:
                ec2_client(state["config"]).terminate_instances(InstanceIds=doomed)
            state.update(outputs={}, resources=[])
        elif argv[:2] == ["stack", "output"]:
            return CommandResult(json.dumps(self.stacks[stack]["outputs"]), "", 0)
        elif argv[:2] == ["stack", "history"]:
            return CommandResult(json.dumps([{
                "kind": "update", "startTime": "2030-03-01T09:00:00.000Z", "message": "", "environment": {},
                "config": {}, "result": "succeeded", "endTime": "2030-03-01T09:00:01.000Z", "version": 1}]), "", 0)
        return CommandResult("", "", 0)

    def _up(self, argv: list[str], stack: str):
        state = self.stacks[stack]
        config = state["config"]
        if self.fail_up:
            self._emit(argv, [{"diagnosticEvent": {"message": self.fail_up + "\n", "color": "never",
                                                   "severity": "error", "urn": urn("student-01")}}])
            return self._fail("error: update failed")
        replaced = [argv[i + 1] for i, a in enumerate(argv) if a == "--replace"]
        targets = {argv[i + 1].rsplit("::", 1)[-1] for i, a in enumerate(argv) if a == "--target"}
        outputs, resources = deploy(config)
        ec2 = ec2_client(config)
        live = {host_tag(i): i["InstanceId"] for i in live_instances(stack, config)}
        events, failed = [], []
        for resource in (r for r in resources if r.typ == INSTANCE):
            name = resource.name
            if targets and name not in targets:
                continue
            if name in self.fail_hosts or (failed and "--continue-on-error" not in argv):
                if name in self.fail_hosts:
                    failed.append(name)
                    events.append({"diagnosticEvent": {"message": self.fail_hosts[name] + "\n", "color": "never",
                                                       "severity": "error", "urn": urn(name)}})
                continue
            tags = [{"Key": k, "Value": v} for k, v in resource.inputs["tags"].items()]
            op = "same"
            if urn(name) in replaced and name in live:
                ec2.terminate_instances(InstanceIds=[live.pop(name)])
                op = "replace"
            if name in live:
                ec2.create_tags(Resources=[live[name]], Tags=tags)  # tags change in place
            else:
                ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, InstanceType="t3.small",
                                  TagSpecifications=[{"ResourceType": kind, "Tags": tags}
                                                     for kind in ("instance", "volume")])
                op = "replace" if op == "replace" else "create"
            events.append({"resOutputsEvent": {"metadata": {"op": op, "urn": urn(name), "type": INSTANCE,
                                                            "provider": ""}}})
        self._emit(argv, events)
        if not targets:  # a targeted update leaves the outputs stale, as the engine does
            state.update(outputs=outputs, resources=resources)
        if failed:
            return self._fail("error: update failed")
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


def ec2_client(config: dict[str, str]):
    return boto3.client("ec2", region_name=config.get("aws:region") or REGION)


def host_tag(instance: dict) -> str:
    return {t["Key"]: t["Value"] for t in instance.get("Tags", [])}.get("host", "")


def live_instances(stack: str, config: dict[str, str]) -> list[dict]:
    filters = [{"Name": "tag:classroom", "Values": [config.get("classroom:name") or stack]},
               {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}]
    reservations = ec2_client(config).describe_instances(Filters=filters)["Reservations"]
    return [i for r in reservations for i in r["Instances"]]


def urn(name: str, typ: str = INSTANCE) -> str:
    return f"urn:pulumi:demo::classroom::{typ}::{name}"


def launch_instance(ec2, host: str, classroom: str = "demo", role: str = "student") -> str:
    tags = {**TAGS, "classroom": classroom, "host": host, "role": role,
            "student": host if role == "student" else "none"}
    spec = [{"ResourceType": kind, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
            for kind in ("instance", "volume")]
    reservation = ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, InstanceType="t3.small",
                                    TagSpecifications=spec)
    return reservation["Instances"][0]["InstanceId"]


def tag_spec(kind: str, classroom: str = "demo") -> list[dict]:
    tags = {**TAGS, "classroom": classroom, "Name": f"classroom-{classroom}-{kind}"}
    return [{"ResourceType": kind, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]


def publish_image(ec2, ssm, parameter: str) -> str:
    """An image registered in moto and named by `parameter`, as Debian names its AMIs in SSM."""
    image = ec2.register_image(Name="debian-12-amd64-test", Description="stands in for Debian 12")["ImageId"]
    ssm.put_parameter(Name=parameter, Value=image, Type="String", Overwrite=True)
    return image


def make_lost_classroom(ec2) -> dict[str, str]:
    """What a classroom leaves in AWS, as the program makes it, with no stack to destroy it."""
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16", TagSpecifications=tag_spec("vpc"))["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.42.0.0/20",
                               TagSpecifications=tag_spec("subnet"))["Subnet"]["SubnetId"]
    gateway = ec2.create_internet_gateway(
        TagSpecifications=tag_spec("internet-gateway"))["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=gateway, VpcId=vpc)
    table = ec2.create_route_table(VpcId=vpc, TagSpecifications=tag_spec("route-table"))["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", GatewayId=gateway)
    ec2.associate_route_table(RouteTableId=table, SubnetId=subnet)
    group = ec2.create_security_group(GroupName="hosts-1234567", Description="classroom demo", VpcId=vpc,
                                      TagSpecifications=tag_spec("security-group"))["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[
        {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": group}]}])
    ec2.import_key_pair(KeyName="admin-key-1234567", PublicKeyMaterial=KEY.encode(),
                        TagSpecifications=tag_spec("key-pair"))
    instance = launch_instance(ec2, "student-01")
    return {"vpc": vpc, "subnet": subnet, "gateway": gateway, "table": table, "group": group, "instance": instance}
