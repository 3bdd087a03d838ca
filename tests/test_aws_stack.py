"""The Pulumi program of `stacks/`, run under Pulumi's mocks (no engine, no cloud)."""

from __future__ import annotations

import inspect
import json
import runpy
from datetime import datetime, timezone
from pathlib import Path

import pytest

pulumi = pytest.importorskip("pulumi")
pulumi_aws = pytest.importorskip("pulumi_aws")
yaml = pytest.importorskip("yaml")

from stacks import (
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

ROOT = Path(__file__).resolve().parent.parent
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk6 classroom-demo"
EXPIRES = datetime(2030, 1, 2, 17, 30, tzinfo=timezone.utc)
INSTANCE = "aws:ec2/instance:Instance"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
SG = "aws:ec2/securityGroup:SecurityGroup"
REQUIRED_TAGS = {"classroom", "role", "student", "expires-at", "managed-by"}
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


def make_spec(students: int = 2, swarm: int = 0, **changes) -> ClassroomSpec:
    values = {"name": "demo", "hosts": plan_host_entries(students, swarm), "admin_public_key": KEY,
                  "expires_at": EXPIRES, "allowed_cidr": "198.51.100.0/24"}
    values.update(changes)
    return ClassroomSpec(**values)


def run_program(spec: ClassroomSpec, program=None) -> tuple[Recorder, dict]:
    """Run the program under fresh mocks (set per run: nothing leaks between tests)."""
    mocks = Recorder()
    pulumi.runtime.set_mocks(mocks, project="classroom", stack=spec.name, preview=False)
    outputs: dict = {}

    @pulumi.runtime.test
    def body():
        result = (program or classroom_program)(spec)
        return pulumi.Output.from_input(result).apply(outputs.update)

    body()
    return mocks, outputs


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
        SG: 1,
        INGRESS: 5,
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
        ("tcp", 80, 80, "198.51.100.0/24"),
        ("tcp", 8000, 9000, "198.51.100.0/24"),
        ("tcp", 32768, 60999, "198.51.100.0/24"),
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


def _user_data(mocks: Recorder, host: str) -> tuple[str, dict]:
    instance = next(r for r in mocks.of(INSTANCE) if r.name == host)
    text = instance.inputs["userData"]
    return text, yaml.safe_load(text)


def _file(cloud: dict, path: str) -> dict | None:
    return next((f for f in cloud.get("write_files", []) if f["path"] == path), None)


def test_user_data_is_cloud_config_that_installs_docker_and_enables_passwords():
    mocks, _ = run_program(make_spec(1, 1))
    for host in ("student-01", "swarm-1"):
        text, cloud = _user_data(mocks, host)
        assert text.startswith("#cloud-config\n")
        assert len(text.encode()) < 16384  # EC2's limit on user data
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


def test_user_data_schedules_the_expiry_and_instances_terminate_on_power_off():
    mocks, _ = run_program(make_spec(2, 0))
    for instance in mocks.of(INSTANCE):
        assert instance.inputs["instanceInitiatedShutdownBehavior"] == "terminate"
        cloud = yaml.safe_load(instance.inputs["userData"])
        timer = _file(cloud, "/etc/systemd/system/classroom-expire.timer")["content"]
        assert "OnCalendar=2030-01-02 17:30:00 UTC" in timer.splitlines()
        assert "Persistent=true" in timer.splitlines()
        service = _file(cloud, "/etc/systemd/system/classroom-expire.service")["content"]
        assert "ExecStart=/sbin/shutdown -P now" in service
        # armed first, before the Docker install that might fail
        assert cloud["runcmd"].index(["systemctl", "enable", "--now", "classroom-expire.timer"]) < \
            cloud["runcmd"].index(["/usr/local/sbin/classroom-install-docker"])


def test_registry_mirror_goes_to_daemon_json_only_when_set():
    mocks, _ = run_program(make_spec(1, 0, registry_mirror="http://10.0.0.5:5000"))
    _, cloud = _user_data(mocks, "student-01")
    daemon = _file(cloud, "/etc/docker/daemon.json")
    assert json.loads(daemon["content"]) == {"registry-mirrors": ["http://10.0.0.5:5000"]}
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
        assert inputs["vpcSecurityGroupIds"] == ["hosts-id"] and inputs["subnetId"] == "subnet-id"
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
    values = {"adminPublicKey": KEY, "students": "3", "swarmNodes": "2", "ttl": "90m"}
    now = datetime(2030, 1, 1, 8, 0, 30, tzinfo=timezone.utc)
    spec = spec_from_values(values.get, "my-stack", now=now)
    assert spec.name == "my-stack"
    assert [h.name for h in spec.hosts] == ["student-01", "student-02", "student-03", "swarm-1", "swarm-2"]
    assert [h.role for h in spec.hosts][-2:] == ["swarm-manager", "swarm-worker"]
    assert spec.expires_at == datetime(2030, 1, 1, 9, 30, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match="adminPublicKey"):
        spec_from_values({}.get, "x")


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
