"""Stand-ins and recorders shared by the test modules (one copy each; test modules never import
one another). Only Pulumi mocks, moto and recorders live here: the rest of the suite runs the real
engine, real sshd and real Fabric sessions."""

from __future__ import annotations

import itertools
import json
import logging


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
