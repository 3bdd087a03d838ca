"""The Pulumi program of `stacks/`, run under Pulumi's mocks (no engine, no cloud)."""

from __future__ import annotations

import inspect
import json
import py_compile
import re
import runpy
import shutil
import subprocess
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest

pulumi = pytest.importorskip("pulumi")
pulumi_aws = pytest.importorskip("pulumi_aws")
yaml = pytest.importorskip("yaml")

from stacks import (
    EPHEMERAL_PORTS,
    FORBIDDEN_PORTS,
    ClassroomSpec,
    HostEntry,
    ami_parameter,
    architecture,
    instance_urn,
    plan_host_entries,
    spec_from_values,
    spec_to_config,
)
from stacks.classroom_stack import classroom_program, main
from stacks.userdata import USER_DATA_LIMIT

from fakes import run_under_mocks

ROOT = Path(__file__).resolve().parent.parent
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk6 classroom-demo"
EXPIRES = datetime(2030, 1, 2, 17, 30, tzinfo=timezone.utc)
INSTANCE = "aws:ec2/instance:Instance"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
SG = "aws:ec2/securityGroup:SecurityGroup"
REQUIRED_TAGS = {"classroom", "role", "student", "expires-at", "managed-by"}
SECRET_SIG = "4dabf18193072939515e22adb298388d"  # how Pulumi marks a secret value (rpc.py)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pulumi_aws's own


class Recorder(pulumi.runtime.Mocks):
    """Records every resource and invoke; instances get addresses like the real provider's."""

    def __init__(self) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []
        self.calls: list[pulumi.runtime.MockCallArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.resources.append(args)
        state = dict(args.inputs)
        index = len(self.resources)
        if args.typ == INSTANCE:
            state.update(publicIp=f"203.0.113.{index}", privateIp=f"10.42.0.{index}",
                         publicDns=f"ec2-203-0-113-{index}.eu-west-3.compute.amazonaws.com")
        if args.typ == "aws:ec2/keyPair:KeyPair":
            state["keyName"] = f"{args.name}-0a1b2c"
        return [f"{args.name}-id", state]

    def call(self, args: pulumi.runtime.MockCallArgs):
        self.calls.append(args)
        if args.token == "aws:ssm/getParameter:getParameter":
            return {"id": args.args["name"], "name": args.args["name"], "value": "ami-0ssm0debian12",
                    "insecureValue": "ami-0ssm0debian12", "type": "String", "arn": "arn:x", "version": 1,
                    "withDecryption": True}
        raise AssertionError(f"unexpected invoke {args.token}")

    def of(self, typ: str) -> list[pulumi.runtime.MockResourceArgs]:
        return [r for r in self.resources if r.typ == typ]


@pytest.fixture
def host_keys(tmp_path) -> dict[str, tuple[str, str]]:
    """Real host keys, made as the tool makes them (provision.state)."""
    from provision.state import ClassroomState

    state = ClassroomState("demo", root=tmp_path / "state")
    keys = {name: state.host_key(name) for name in ("student-01", "student-02", "swarm-1")}
    return {name: (key.private_openssh, key.public_line) for name, key in keys.items()}


def make_spec(students: int = 2, swarm: int = 0, **changes) -> ClassroomSpec:
    values = {"name": "demo", "hosts": plan_host_entries(students, swarm), "admin_public_key": KEY,
                  "expires_at": EXPIRES, "allowed_cidr": "198.51.100.0/24"}
    values.update(changes)
    return ClassroomSpec(**values)


def run_program(spec: ClassroomSpec, program=None) -> tuple[Recorder, dict]:
    """Run the program under fresh mocks (set per run: nothing leaks between tests)."""
    mocks = Recorder()
    return mocks, run_under_mocks(mocks, spec.name, lambda: (program or classroom_program)(spec))


@pytest.mark.parametrize(("students", "swarm"), [(1, 0), (3, 0), (2, 3), (30, 3)])
def test_one_network_one_group_one_key_and_an_instance_per_host(students, swarm):
    mocks, _ = run_program(make_spec(students, swarm))
    counts: dict[str, int] = {}
    for resource in mocks.resources:
        counts[resource.typ] = counts.get(resource.typ, 0) + 1
    assert counts == {
        "aws:ec2/vpc:Vpc": 1,
        "aws:ec2/subnet:Subnet": 1,
        "aws:ec2/internetGateway:InternetGateway": 1,
        "aws:ec2/routeTable:RouteTable": 1,
        "aws:ec2/route:Route": 1,
        "aws:ec2/routeTableAssociation:RouteTableAssociation": 1,
        SG: 2 if swarm else 1,  # Swarm nodes get a second group: Swarm's published range
        INGRESS: 5 + (1 if swarm else 0),  # 22, 80, 5000, 8000-8010, between hosts (+ Swarm's range)
        EGRESS: 1,
        "aws:ec2/keyPair:KeyPair": 1,
        INSTANCE: students + swarm,
    }
    names = [r.name for r in mocks.of(INSTANCE)]
    assert sorted(names) == sorted(h.name for h in plan_host_entries(students, swarm))


def test_network_is_its_own_vpc_with_a_public_route():
    mocks, _ = run_program(make_spec(availability_zone="eu-west-3b"))
    vpc = mocks.of("aws:ec2/vpc:Vpc")[0].inputs
    assert vpc["enableDnsHostnames"] is True  # public DNS names for the sheets
    subnet = mocks.of("aws:ec2/subnet:Subnet")[0].inputs
    assert subnet["vpcId"] == "vpc-id" and subnet["mapPublicIpOnLaunch"] is True
    assert subnet["availabilityZone"] == "eu-west-3b"
    route = mocks.of("aws:ec2/route:Route")[0].inputs
    assert route == {"routeTableId": "routes-id", "destinationCidrBlock": "0.0.0.0/0", "gatewayId": "gateway-id"}
    association = mocks.of("aws:ec2/routeTableAssociation:RouteTableAssociation")[0].inputs
    assert association == {"routeTableId": "routes-id", "subnetId": "subnet-id"}


def _rule(inputs: dict) -> tuple:
    source = inputs.get("cidrIpv4") or inputs.get("cidrIpv6") or f"sg:{inputs.get('referencedSecurityGroupId')}"
    return inputs["ipProtocol"], inputs.get("fromPort"), inputs.get("toPort"), source


def test_security_group_rules_exactly():
    mocks, _ = run_program(make_spec())
    group = mocks.of(SG)[0]
    assert "ingress" not in group.inputs and "egress" not in group.inputs  # standalone rules only
    ingress = {_rule(r.inputs) for r in mocks.of(INGRESS)}
    assert ingress == {
        ("tcp", 22, 22, "198.51.100.0/24"),
        ("tcp", 80, 80, "198.51.100.0/24"),  # the default `ports:` of the course
        ("tcp", 5000, 5000, "198.51.100.0/24"),
        ("tcp", 8000, 8010, "198.51.100.0/24"),
        ("-1", None, None, "sg:hosts-id"),  # everything between the hosts: Swarm 2377, 7946, 4789
    }
    egress = {_rule(r.inputs) for r in mocks.of(EGRESS)}
    assert egress == {("-1", None, None, "0.0.0.0/0")}
    for rule in mocks.of(INGRESS) + mocks.of(EGRESS):
        assert rule.inputs["securityGroupId"] == "hosts-id"


@pytest.mark.parametrize("cidr", ["0.0.0.0/0", "203.0.113.7/32", "2001:db8::/32"])
def test_docker_api_ports_are_never_open(cidr):
    mocks, _ = run_program(make_spec(allowed_cidr=cidr))
    for rule in mocks.of(INGRESS):
        inputs = rule.inputs
        if "referencedSecurityGroupId" in inputs:
            assert not ({"cidrIpv4", "cidrIpv6"} & set(inputs))
            continue
        assert inputs["ipProtocol"] == "tcp"  # never "all traffic" from outside
        for port in FORBIDDEN_PORTS:
            assert not inputs["fromPort"] <= port <= inputs["toPort"], (port, inputs)


def test_ipv6_network_uses_ipv6_rules():
    mocks, _ = run_program(make_spec(allowed_cidr="2001:db8::/32"))
    public = [r.inputs for r in mocks.of(INGRESS) if "referencedSecurityGroupId" not in r.inputs]
    assert public and all(r["cidrIpv6"] == "2001:db8::/32" and "cidrIpv4" not in r for r in public)


def _secret_value(value):
    """The plain value of a secret input, asserting that it is one (kept encrypted in the state)."""
    assert isinstance(value, dict) and value.get(SECRET_SIG) == "1b47061264138c4ac30d75fd1eb44270", \
        f"not a secret: {str(value)[:60]}"
    return value["value"]


def _user_data(mocks: Recorder, host: str) -> tuple[str, dict]:
    instance = next(r for r in mocks.of(INSTANCE) if r.name == host)
    text = _secret_value(instance.inputs["userData"])
    return text, yaml.safe_load(text)


def _file(cloud: dict, path: str) -> dict | None:
    return next((f for f in cloud.get("write_files", []) if f["path"] == path), None)


def test_user_data_is_cloud_config_that_installs_docker_and_enables_passwords():
    mocks, _ = run_program(make_spec(1, 1))
    for host in ("student-01", "swarm-1"):
        text, cloud = _user_data(mocks, host)
        assert text.startswith("#cloud-config\n")
        assert cloud["hostname"] == host
        assert cloud["ssh_pwauth"] is True
        assert cloud["disable_root"] is False  # the tool logs in as root with the admin key
        assert cloud["ssh_authorized_keys"] == [KEY]
        sshd = _file(cloud, "/etc/ssh/sshd_config.d/01-classroom.conf")
        assert "PasswordAuthentication yes" in sshd["content"].splitlines()
        install = _file(cloud, "/usr/local/sbin/classroom-install-docker")
        assert install["permissions"] == "0755"
        assert "https://download.docker.com/linux/${ID}" in install["content"]
        for package in ("docker-ce", "docker-compose-plugin", "containerd.io"):
            assert f" {package}" in install["content"]
        assert ["/usr/local/sbin/classroom-install-docker"] in cloud["runcmd"]
        start = _file(cloud, "/usr/local/sbin/classroom-start-docker")
        assert start["permissions"] == "0755" and "systemctl start docker" in start["content"]


def test_expiry_is_an_instance_tag_read_over_imdsv2_and_instances_terminate_on_power_off():
    """Issue 9, item 2: the expiry can move without replacing a host (`classroom extend`)."""
    mocks, _ = run_program(make_spec(2, 0))
    for instance in mocks.of(INSTANCE):
        assert instance.inputs["instanceInitiatedShutdownBehavior"] == "terminate"
        assert instance.inputs["tags"]["expires-at"] == "2030-01-02T17:30:00Z"
        metadata = instance.inputs["metadataOptions"]
        assert metadata["instanceMetadataTags"] == "enabled"  # the host reads its tags over IMDS
        text, cloud = _user_data(mocks, instance.name)
        assert "2030" not in text  # the expiry itself is not in the user-data
        timer = _file(cloud, "/etc/systemd/system/classroom-expire.timer")["content"].splitlines()
        assert "OnUnitActiveSec=1min" in timer and "OnBootSec=1min" in timer
        service = _file(cloud, "/etc/systemd/system/classroom-expire.service")["content"]
        assert "ExecStart=/usr/local/sbin/classroom-expire-check" in service
        check = _file(cloud, "/usr/local/sbin/classroom-expire-check")["content"]
        assert "/latest" in check and "/api/token" in check and "X-aws-ec2-metadata-token" in check  # IMDSv2
        assert "/meta-data/tags/instance/expires-at" in check and '"/sbin/shutdown", "-P", "now"' in check
        # armed first, before the Docker install that might fail
        assert cloud["runcmd"].index(["systemctl", "enable", "--now", "classroom-expire.timer"]) < \
            cloud["runcmd"].index(["/usr/local/sbin/classroom-install-docker"])


def test_expiry_check_powers_off_only_once_the_tag_has_passed(tmp_path):
    """Run the host's checker against a stand-in IMDS (loopback), as the timer does each minute."""
    import http.server
    import threading

    mocks, _ = run_program(make_spec(1, 0))
    _, cloud = _user_data(mocks, "student-01")
    script = _file(cloud, "/usr/local/sbin/classroom-expire-check")["content"]
    answers = {"expires-at": ""}
    seen_tokens = []

    class Imds(http.server.BaseHTTPRequestHandler):
        def do_PUT(self):  # noqa: N802
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"token-1")

        def do_GET(self):  # noqa: N802
            seen_tokens.append(self.headers.get("X-aws-ec2-metadata-token"))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(answers["expires-at"].encode())

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Imds)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    shutdown = tmp_path / "shutdown"
    shutdown.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/powered-off\n")
    shutdown.chmod(0o755)
    local = (script.replace("http://169.254.169.254", f"http://127.0.0.1:{server.server_port}")
             .replace("/var/lib/classroom/expires-at", str(tmp_path / "cache"))
             .replace("/sbin/shutdown", str(shutdown)))
    checker = tmp_path / "check.py"
    checker.write_text(local)
    try:
        answers["expires-at"] = "2999-01-01T00:00:00Z"  # extended far away: keeps running
        subprocess.run(["python3", str(checker)], check=True, timeout=30)
        assert not (tmp_path / "powered-off").exists() and seen_tokens == ["token-1"]
        answers["expires-at"] = "2001-01-01T00:00:00Z"  # passed: powers off
        subprocess.run(["python3", str(checker)], check=True, timeout=30)
        assert "expired at 2001-01-01T00:00:00Z" in (tmp_path / "powered-off").read_text()
    finally:
        server.shutdown()


def test_registry_mirror_goes_to_daemon_json_only_when_set():
    mocks, _ = run_program(make_spec(1, 0, registry_mirror="http://10.0.0.5:5000"))
    _, cloud = _user_data(mocks, "student-01")
    daemon = _file(cloud, "/etc/docker/daemon.json")
    assert json.loads(daemon["content"]) == {"registry-mirrors": ["http://10.0.0.5:5000"],
                                             "insecure-registries": ["10.0.0.5:5000"]}
    mocks, _ = run_program(make_spec(1, 0))
    _, cloud = _user_data(mocks, "student-01")
    assert _file(cloud, "/etc/docker/daemon.json") is None


def test_instances_boot_debian_on_gp3_with_the_classroom_key():
    mocks, _ = run_program(make_spec(2, 1, instance_type="t3.medium"))
    for instance in mocks.of(INSTANCE):
        inputs = instance.inputs
        assert inputs["ami"] == "ami-0ssm0debian12"
        assert inputs["instanceType"] == "t3.medium"
        assert inputs["rootBlockDevice"]["volumeType"] == "gp3"
        assert inputs["rootBlockDevice"]["volumeSize"] == 20
        assert inputs["rootBlockDevice"]["deleteOnTermination"] is True
        assert inputs["keyName"] == "admin-key-0a1b2c"  # the key pair's (generated) name
        swarm = ["swarm-id"] if instance.name.startswith("swarm-") else []
        assert inputs["vpcSecurityGroupIds"] == ["hosts-id", *swarm] and inputs["subnetId"] == "subnet-id"
        assert inputs["metadataOptions"]["httpTokens"] == "required"
    assert mocks.of("aws:ec2/keyPair:KeyPair")[0].inputs["publicKey"] == KEY
    lookups = [c.args["name"] for c in mocks.calls if c.token == "aws:ssm/getParameter:getParameter"]
    assert lookups == ["/aws/service/debian/release/12/latest/amd64"]


def test_a_pinned_ami_is_used_without_lookup_and_graviton_gets_arm64():
    mocks, _ = run_program(make_spec(1, 0, ami="ami-0pinned"))
    assert mocks.of(INSTANCE)[0].inputs["ami"] == "ami-0pinned"
    assert mocks.calls == []
    mocks, _ = run_program(make_spec(1, 0, instance_type="t4g.small"))
    assert mocks.calls[0].args["name"] == "/aws/service/debian/release/12/latest/arm64"
    assert architecture("m7gd.large") == "arm64" and architecture("t3a.small") == "amd64"
    assert ami_parameter("c5.large").endswith("/amd64")


def _accepts_tags(token: str) -> bool:
    module, cls = token.split(":")[1].split("/")[0], token.split(":")[-1]
    args_class = getattr(getattr(pulumi_aws, module), f"{cls}Args")
    return "tags" in inspect.signature(args_class.__init__).parameters


def test_every_taggable_resource_is_tagged():
    mocks, _ = run_program(make_spec(2, 2))
    untaggable = set()
    for resource in mocks.resources:
        if not _accepts_tags(resource.typ):
            untaggable.add(resource.typ)
            assert "tags" not in resource.inputs
            continue
        tags = resource.inputs.get("tags")
        assert tags, f"{resource.typ} {resource.name} has no tags"
        assert set(tags) >= REQUIRED_TAGS, (resource.name, tags)
        assert tags["classroom"] == "demo" and tags["managed-by"] == "classroom"
        assert tags["expires-at"] == "2030-01-02T17:30:00Z"
    # only the route and its association cannot carry tags in pulumi-aws
    assert untaggable == {"aws:ec2/route:Route", "aws:ec2/routeTableAssociation:RouteTableAssociation"}
    hosts = {r.name: r.inputs for r in mocks.of(INSTANCE)}
    assert hosts["student-02"]["tags"]["role"] == "student"
    assert hosts["student-02"]["tags"]["student"] == "student-02"
    assert hosts["student-02"]["tags"]["host"] == "student-02"
    assert hosts["swarm-1"]["tags"]["role"] == "swarm-manager"
    assert hosts["swarm-2"]["tags"]["role"] == "swarm-worker"
    assert hosts["swarm-2"]["tags"]["student"] == "none"
    assert hosts["swarm-2"]["rootBlockDevice"]["tags"]["classroom"] == "demo"  # the disk too


def test_outputs_name_every_host_with_its_addresses():
    spec = make_spec(2, 1)
    mocks, outputs = run_program(spec)
    hosts = outputs["hosts"]
    assert [h["name"] for h in hosts] == ["student-01", "student-02", "swarm-1"]
    by_name = {r.name: r for r in mocks.of(INSTANCE)}
    for host in hosts:
        assert set(host) == {"name", "role", "student", "instance_id", "public_ip", "public_dns", "private_ip"}
        assert host["instance_id"] == f"{host['name']}-id"
        assert host["public_ip"].startswith("203.0.113.")
        assert host["public_dns"].endswith(".compute.amazonaws.com")
        assert by_name[host["name"]].inputs["tags"]["role"] == host["role"]
    assert hosts[0]["student"] == "student-01" and hosts[2]["student"] is None
    assert hosts[2]["role"] == "swarm-manager"
    assert outputs["vpc_id"] == "vpc-id" and outputs["security_group_id"] == "hosts-id"
    assert outputs["expires_at"] == "2030-01-02T17:30:00Z"


def test_config_round_trip_and_main_reads_the_stack_config(monkeypatch):
    spec = make_spec(2, 1, registry_mirror="http://mirror:5000", ami="ami-0pinned", region="eu-west-3")
    config = spec_to_config(spec)
    assert config["aws:region"] == "eu-west-3"
    values = {k.split(":", 1)[1]: v for k, v in config.items() if k.startswith("classroom:")}
    back = spec_from_values(values.get, "demo")
    assert back.hosts == spec.hosts and back.expires_at == spec.expires_at
    assert (back.registry_mirror, back.ami, back.allowed_cidr) == ("http://mirror:5000", "ami-0pinned",
                                                                    "198.51.100.0/24")
    # a value dropped from the classroom file is dropped from the stack (set to "", read as None)
    plain = spec_to_config(make_spec(1, 0))
    assert plain["classroom:registryMirror"] == "" and plain["classroom:ami"] == ""

    exported: dict = {}
    monkeypatch.setattr(pulumi, "export", lambda key, value: exported.__setitem__(key, value))
    pulumi.runtime.set_all_config(config)
    try:
        mocks, outputs = run_program(spec, program=lambda _spec: (main(), exported)[1])
    finally:
        pulumi.runtime.set_all_config({})
    assert sorted(r.name for r in mocks.of(INSTANCE)) == ["student-01", "student-02", "swarm-1"]
    assert mocks.of(INSTANCE)[0].inputs["ami"] == "ami-0pinned"
    assert [h["name"] for h in outputs["hosts"]] == ["student-01", "student-02", "swarm-1"]


def test_stacks_folder_runs_as_the_pulumi_program(monkeypatch):
    """What `pulumi up` does from the repo root (Pulumi.yaml, main: stacks/): run the folder."""
    spec = make_spec(1, 1)
    monkeypatch.setattr(pulumi, "export", lambda key, value: None)
    pulumi.runtime.set_all_config(spec_to_config(spec))
    try:
        mocks, _ = run_program(spec, program=lambda _spec: runpy.run_path(str(ROOT / "stacks"),
                                                                          run_name="__main__") and {})
    finally:
        pulumi.runtime.set_all_config({})
    assert sorted(r.name for r in mocks.of(INSTANCE)) == ["student-01", "swarm-1"]


def test_plain_cli_config_counts_and_ttl():
    values = {"adminPublicKey": KEY, "students": "3", "swarmNodes": "2", "swarmMode": "shared", "ttl": "90m"}
    now = datetime(2030, 1, 1, 8, 0, 30, tzinfo=timezone.utc)
    spec = spec_from_values(values.get, "my-stack", now=now)
    assert spec.name == "my-stack"
    assert [h.name for h in spec.hosts] == ["student-01", "student-02", "student-03", "swarm-1", "swarm-2"]
    assert [h.role for h in spec.hosts][-2:] == ["swarm-manager", "swarm-worker"]
    assert spec.expires_at == datetime(2030, 1, 1, 9, 30, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match="adminPublicKey"):
        spec_from_values({}.get, "x")
    # Per-student (the default): each student's host is node 1, their other nodes follow it.
    own = spec_from_values({**values, "swarmMode": "per-student", "students": "2", "swarmNodes": "3"}.get, "s")
    assert [(h.name, h.role, h.student) for h in own.hosts] == [
        ("student-01", "student", "student-01"), ("student-01-node-2", "swarm-worker", "student-01"),
        ("student-01-node-3", "swarm-worker", "student-01"), ("student-02", "student", "student-02"),
        ("student-02-node-2", "swarm-worker", "student-02"), ("student-02-node-3", "swarm-worker", "student-02")]


def test_instance_urn_is_the_top_level_instance():
    assert instance_urn("demo", "student-07") == \
        "urn:pulumi:demo::classroom::aws:ec2/instance:Instance::student-07"
    assert HostEntry("swarm-1", "swarm-manager").as_dict() == {"name": "swarm-1", "role": "swarm-manager",
                                                             "student": None}


def test_pulumi_yaml_runs_the_program_in_stacks():
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert project["name"] == "classroom"
    runtime = project["runtime"]
    assert (runtime if isinstance(runtime, str) else runtime["name"]) == "python"
    assert (ROOT / project["main"] / "__main__.py").is_file()


# --- AWS's own rules, which neither the mocks nor moto check (issue 9) ------------------------------
# Security groups and their rules: "a-z, A-Z, 0-9, spaces, and ._-:/()#,@[]+=&;{}!$*", up to 255.
SG_TEXT = re.compile(r"^[a-zA-Z0-9 ._\-:/()#,@\[\]+=&;{}!$*]{0,255}$")
# Tags: keys 1-127 characters, values up to 256, neither starting with aws:.
# Instance tags readable in instance metadata (instance_metadata_tags: enabled): keys only
# "a-z, A-Z, 0-9, + - = . , _ : @", no spaces or /, and not ".", ".." or "_index".
IMDS_TAG_KEY = re.compile(r"^[a-zA-Z0-9+\-=.,_:@]{1,127}$")
# Logical names become resource names with a 7-character suffix (key pair: 255 chars max;
# security group names: the SG_TEXT characters, and not starting with "sg-").
NAME_SUFFIX = 8


def aws_problems(resource) -> list[str]:
    """Everything AWS would refuse in what the program declares for one resource."""
    problems = []
    inputs = resource.inputs
    if resource.typ in (SG, INGRESS, EGRESS):
        text = inputs.get("description", "")
        if not SG_TEXT.match(text):
            problems.append(f"{resource.name}: description {text!r} has characters AWS refuses or is too long")
    if resource.typ == SG and (not SG_TEXT.match(resource.name) or resource.name.startswith("sg-")):
        problems.append(f"{resource.name}: not a valid security group name")
    if len(resource.name) + NAME_SUFFIX > 255:
        problems.append(f"{resource.name}: name too long")
    tags = dict(inputs.get("tags") or {})
    if resource.typ == INSTANCE:
        tags.update({f"root:{k}": v for k, v in (inputs["rootBlockDevice"].get("tags") or {}).items()})
    for key, value in tags.items():
        key = key.removeprefix("root:")
        if not 1 <= len(key) <= 127 or len(value) > 256:
            problems.append(f"{resource.name}: tag {key!r} too long")
        if key.lower().startswith("aws:") or value.lower().startswith("aws:"):
            problems.append(f"{resource.name}: tag {key!r} uses the aws: prefix")
        if resource.typ == INSTANCE and (not IMDS_TAG_KEY.match(key) or key in (".", "..", "_index")):
            problems.append(f"{resource.name}: tag key {key!r} cannot be exposed in instance metadata")
    return problems


def test_the_rule_checker_catches_what_aws_refuses():
    """The checker below must be able to fail: the apostrophe the review found, a slash in an
    instance tag key, an aws: tag."""
    bad_rule = type("R", (), {"typ": INGRESS, "name": "in-tcp-22", "inputs": {
        "description": "tcp 22 from the classroom's network"}})()
    assert aws_problems(bad_rule)
    bad_tags = type("R", (), {"typ": INSTANCE, "name": "student-01", "inputs": {
        "tags": {"team/name": "x", "aws:owner": "y"}, "rootBlockDevice": {}}})()
    assert len(aws_problems(bad_tags)) == 2


@pytest.mark.parametrize(("students", "swarm", "cidr"), [(2, 0, "198.51.100.0/24"), (30, 3, "0.0.0.0/0"),
                                                          (1, 1, "2001:db8::/32")])
def test_every_description_name_and_tag_is_one_aws_accepts(students, swarm, cidr):
    """Issue 9, item 1: AWS refuses `'` in rule descriptions (moto does not)."""
    name = "a-forty-character-classroom-name-abcdefg"[:40]
    spec = make_spec(students, swarm, name=name, allowed_cidr=cidr, ephemeral_ports=True,
                     registry_mirror="https://mirror.example.org")
    mocks, _ = run_program(spec)
    problems = [p for resource in mocks.resources for p in aws_problems(resource)]
    assert problems == []
    assert {r.typ for r in mocks.resources} >= {SG, INGRESS, EGRESS, INSTANCE}


def test_user_data_fits_ec2s_limit_and_is_valid_cloud_config(tmp_path, host_keys):
    """EC2 refuses user data over 16 KB; cloud-init ignores a file that breaks its schema."""
    spec = make_spec(1, 1, registry_mirror="https://a-long-registry-mirror-name.example.org:5443",
                     host_keys=host_keys)
    mocks, _ = run_program(spec)
    for host in ("student-01", "swarm-1"):
        text, _cloud = _user_data(mocks, host)
        assert len(text.encode()) <= USER_DATA_LIMIT
        if shutil.which("cloud-init") is None:
            pytest.skip("cloud-init is not installed (apt-get install cloud-init): schema not checked")
        path = tmp_path / f"{host}.yaml"
        path.write_text(text)
        done = subprocess.run(["cloud-init", "schema", "--config-file", str(path)], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr


def test_scripts_and_units_in_user_data_are_valid(tmp_path):
    mocks, _ = run_program(make_spec(1, 0))
    _, cloud = _user_data(mocks, "student-01")
    units = []
    for item in cloud["write_files"]:
        path = tmp_path / Path(item["path"]).name
        path.write_text(item["content"])
        if item["content"].startswith("#!/bin/sh"):
            done = subprocess.run(["sh", "-n", str(path)], capture_output=True, text=True)
            assert done.returncode == 0, (item["path"], done.stderr)
            if shutil.which("shellcheck"):
                done = subprocess.run(["shellcheck", "-s", "sh", str(path)], capture_output=True, text=True)
                assert done.returncode == 0, (item["path"], done.stdout)
        elif item["content"].startswith("#!/usr/bin/python3"):
            py_compile.compile(str(path), doraise=True)
        elif item["path"].startswith("/etc/systemd/system/"):
            units.append(path)
    assert {u.name for u in units} == {"classroom-expire.service", "classroom-expire.timer",
                                       "classroom-imds-guard.service"}
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed: units not verified")
    # ExecStart names scripts of the host: give them here so that verify can resolve them.
    bin_dir = tmp_path / "sbin"
    bin_dir.mkdir()
    for unit in units:
        text = unit.read_text().replace("/usr/local/sbin/", f"{bin_dir}/")
        unit.write_text(text)
    for script in ("classroom-expire-check", "classroom-imds-guard"):
        (bin_dir / script).write_text("#!/bin/sh\n")
        (bin_dir / script).chmod(0o755)
    done = subprocess.run(["systemd-analyze", "verify", *map(str, units)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "classroom" not in done.stdout + done.stderr, done.stdout + done.stderr


def test_docker_install_waits_for_apt_and_retries_every_network_step():
    """Issue 9, item 3: the GPG download is retried with the rest; apt waits for other apt runs."""
    mocks, _ = run_program(make_spec(1, 0))
    _, cloud = _user_data(mocks, "student-01")
    script = _file(cloud, "/usr/local/sbin/classroom-install-docker")["content"]
    loop = script[script.index("until "):script.index("done")]
    assert "curl -fsSL" in loop and "download.docker.com/linux/${ID}/gpg" in loop
    assert "update" in loop and "install -y" in loop
    assert "DPkg::Lock::Timeout=" in script and "$apt update" in loop
    assert "package_update" not in cloud and "packages" not in cloud  # no apt before the retry loop


def test_instances_wait_for_their_route_to_the_internet(monkeypatch):
    """Issue 9, item 3: an instance that boots before its route out never gets Docker."""
    opts = capture_instance_options(monkeypatch)
    mocks, _ = run_program(make_spec(2, 1))
    assert sorted(opts) == ["student-01", "student-02", "swarm-1"]
    for name, options in opts.items():
        depends = {type(r).__name__ for r in options.depends_on}
        assert depends >= {"Route", "RouteTableAssociation", "SecurityGroupEgressRule"}, name


def capture_instance_options(monkeypatch) -> dict:
    """The resource options the program gives each instance (the mocks do not see them)."""
    captured: dict = {}
    real = pulumi_aws.ec2.Instance

    def recording(name, *args, **kwargs):
        captured[name] = kwargs["opts"]
        return real(name, *args, **kwargs)

    monkeypatch.setattr(pulumi_aws.ec2, "Instance", recording)
    return captured


def test_a_running_host_keeps_its_user_data_and_a_replaced_one_gets_the_current(monkeypatch, host_keys):
    """Issue 9, item 2: user-data is stable for a host's life (nothing in it changes with the
    expiry, ports or a later `up`), running hosts ignore new user-data and AMIs, and the host
    being replaced does not (the engine would copy its old inputs into the replacement)."""
    first, _ = run_program(make_spec(2, 0, host_keys=host_keys))
    later_spec = make_spec(2, 0, host_keys=host_keys, expires_at=datetime(2031, 5, 5, tzinfo=timezone.utc),
                           ports=((80, 80), (3000, 3010)), ephemeral_ports=True, ami="ami-0newer")
    later, _ = run_program(later_spec)
    for host in ("student-01", "student-02"):
        assert _user_data(first, host)[0] == _user_data(later, host)[0]

    opts = capture_instance_options(monkeypatch)
    run_program(replace(later_spec, replacing=("student-02",)))
    assert opts["student-01"].ignore_changes == ["ami", "userData"]
    assert not opts["student-02"].ignore_changes


def test_host_keys_are_in_the_secret_user_data_and_sshd_gets_exactly_that_key(host_keys):
    """Issue 8's keys on AWS: cloud-init installs the tool's key, deletes the image's, makes no other."""
    mocks, _ = run_program(make_spec(2, 0, host_keys=host_keys))
    for host in ("student-01", "student-02"):
        _, cloud = _user_data(mocks, host)  # (asserts the user-data is a secret)
        private, public = host_keys[host]
        assert cloud["ssh_keys"] == {"ed25519_private": private.strip() + "\n", "ed25519_public": public}
        assert cloud["ssh_deletekeys"] is True and cloud["ssh_genkeytypes"] == ["ed25519"]
    assert _user_data(mocks, "student-01")[1]["ssh_keys"] != _user_data(mocks, "student-02")[1]["ssh_keys"]


def test_imds_is_v2_one_hop_and_root_only():
    """The user-data holds a private key: students (local users) and their containers must not
    read it from the instance metadata service."""
    mocks, _ = run_program(make_spec(1, 0))
    metadata = mocks.of(INSTANCE)[0].inputs["metadataOptions"]
    assert metadata == {"httpTokens": "required", "httpEndpoint": "enabled", "httpPutResponseHopLimit": 1,
                        "instanceMetadataTags": "enabled"}
    _, cloud = _user_data(mocks, "student-01")
    guard = _file(cloud, "/usr/local/sbin/classroom-imds-guard")["content"]
    assert "OUTPUT -d 169.254.169.254/32 -m owner ! --uid-owner 0 -j REJECT" in guard
    unit = _file(cloud, "/etc/systemd/system/classroom-imds-guard.service")["content"]
    assert "WantedBy=multi-user.target" in unit and "Before=ssh.service" in unit
    install = _file(cloud, "/usr/local/sbin/classroom-install-docker")["content"]
    assert "systemctl enable --now classroom-imds-guard.service" in install


@pytest.mark.parametrize(("instance_type", "credits"), [("t3.small", "standard"), ("t3a.medium", "standard"),
                                                        ("t4g.small", "standard"), ("m5.large", None)])
def test_burstable_hosts_never_run_unlimited(instance_type, credits):
    """Issue 9, item 9: no "unlimited" surplus credit charges on t-family hosts."""
    mocks, _ = run_program(make_spec(1, 0, instance_type=instance_type))
    credit = mocks.of(INSTANCE)[0].inputs.get("creditSpecification")
    assert (credit or {}).get("cpuCredits") == credits


def test_password_guessing_is_slowed_and_banned():
    """Issue 9, item 8: fail2ban (sshd, journal backend) and MaxAuthTries; the school's network
    (allowed_cidr) is never banned, the whole Internet is not exempt."""
    for cidr, exempt in (("198.51.100.0/24", "198.51.100.0/24"), ("0.0.0.0/0", None)):
        mocks, _ = run_program(make_spec(1, 0, allowed_cidr=cidr))
        _, cloud = _user_data(mocks, "student-01")
        sshd = _file(cloud, "/etc/ssh/sshd_config.d/01-classroom.conf")["content"].splitlines()
        assert "MaxAuthTries 5" in sshd
        jail = _file(cloud, "/etc/fail2ban/jail.d/classroom.local")["content"].splitlines()
        assert "[sshd]" in jail and "enabled = true" in jail and "backend = systemd" in jail
        ignore = next(line for line in jail if line.startswith("ignoreip = ")).split()[2:]
        assert "0.0.0.0/0" not in ignore and (exempt is None or exempt in ignore)
        install = _file(cloud, "/usr/local/sbin/classroom-install-docker")["content"]
        assert " fail2ban python3-systemd " in install


def test_ports_open_exactly_the_course_list_plus_ssh():
    """Issue 9, item 7: the course's `ports:`, 22, `-P`'s range only when asked; Swarm's range
    only on Swarm nodes."""
    spec = make_spec(2, 0, ports=((80, 80), (3000, 3005)))
    mocks, _ = run_program(spec)
    public = sorted((r.inputs["fromPort"], r.inputs["toPort"]) for r in mocks.of(INGRESS) if "cidrIpv4" in r.inputs)
    assert public == [(22, 22), (80, 80), (3000, 3005)]
    mocks, _ = run_program(replace(spec, ephemeral_ports=True))
    public = sorted((r.inputs["fromPort"], r.inputs["toPort"]) for r in mocks.of(INGRESS) if "cidrIpv4" in r.inputs)
    assert public == [(22, 22), (80, 80), (3000, 3005), EPHEMERAL_PORTS]
    mocks, _ = run_program(make_spec(1, 2, ports=()))
    swarm_rules = [r.inputs for r in mocks.of(INGRESS) if r.inputs["securityGroupId"] == "swarm-id"]
    assert [(r["fromPort"], r["toPort"]) for r in swarm_rules] == [(30000, 32767)]
    groups = {r.name: r.inputs["vpcSecurityGroupIds"] for r in mocks.of(INSTANCE)}
    assert groups == {"student-01": ["hosts-id"], "swarm-1": ["hosts-id", "swarm-id"],
                      "swarm-2": ["hosts-id", "swarm-id"]}
