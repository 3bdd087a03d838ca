"""Preflight against moto: every refusal is one BadInput line, before anything is created."""

from __future__ import annotations

import pytest

boto3 = pytest.importorskip("boto3")
moto = pytest.importorskip("moto")
from botocore.stub import Stubber
from conftest import fake_aws_credentials
from fakes import publish_image

from provision.backends.aws import preflight as aws_preflight
from provision.errors import BadInput, ExitCode

REGION = "eu-west-3"
PARAMETER = "/classroom-test/debian-12/amd64"  # moto reserves /aws/...: the test names its own
QUOTA = {"ServiceCode": "ec2", "QuotaCode": "L-1216C47A"}
VPC_QUOTA = {"ServiceCode": "vpc", "QuotaCode": "L-F678F1CE"}
GATEWAY_QUOTA = {"ServiceCode": "vpc", "QuotaCode": "L-A4707A72"}
_SESSION: list = []


def client(service: str, region: str = REGION):
    """Clients from one session: botocore then loads each service model once for the module."""
    if not _SESSION:
        _SESSION.append(boto3.session.Session())
    return _SESSION[0].client(service, region_name=region)


@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    fake_aws_credentials(monkeypatch, tmp_path)
    with moto.mock_aws():
        yield


class Clients:
    """boto3 clients on moto, except service-quotas, answered by botocore's Stubber."""

    def __init__(self, region: str = REGION):
        self.region = region
        self.quotas = client("service-quotas", region)
        self.stub = Stubber(self.quotas)
        self.stub.activate()
        self.asked: list[str] = []

    def __call__(self, service: str):
        self.asked.append(service)
        if service == "service-quotas":
            return self.quotas
        return client(service, self.region)

    def quota(self, value: float, vpcs: float = 5, gateways: float = 5) -> Clients:
        self.stub.add_response("get_service_quota", {"Quota": {"Value": value, **QUOTA}}, QUOTA)
        return self.network(vpcs, gateways)

    def network(self, vpcs: float = 5, gateways: float = 5) -> Clients:
        self.stub.add_response("get_service_quota", {"Quota": {"Value": vpcs, **VPC_QUOTA}}, VPC_QUOTA)
        self.stub.add_response("get_service_quota", {"Quota": {"Value": gateways, **GATEWAY_QUOTA}}, GATEWAY_QUOTA)
        return self


def debian_image() -> str:
    """Publish a moto AMI under our parameter name, as Debian does under /aws/service/debian."""
    return publish_image(client("ec2"), client("ssm"), PARAMETER)


def run(clients, hosts=3, **changes):
    values = {"region": REGION, "instance_type": "t3.small", "hosts": hosts, "allowed_cidr": "0.0.0.0/0",
                  "classroom": "demo", "clients": clients, "ami_parameter": PARAMETER}
    values.update(changes)
    return aws_preflight.run(**values)


def launch(count: int, instance_type: str, tags: dict[str, str] | None = None) -> None:
    ec2 = client("ec2")
    image = ec2.register_image(Name="someone-elses-image")["ImageId"]
    extra = {}
    if tags:
        extra["TagSpecifications"] = [{"ResourceType": "instance",
                                       "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]
    ec2.run_instances(ImageId=image, MinCount=count, MaxCount=count, InstanceType=instance_type, **extra)


def test_everything_resolves(aws_env):
    image = debian_image()
    clients = Clients().quota(64)
    result = run(clients, hosts=30)
    assert result.account == "123456789012"
    assert result.ami == image and result.ami_parameter == PARAMETER
    assert result.architecture == "amd64" and result.vcpus_per_host == 2
    assert result.availability_zone == "eu-west-3a"
    assert (result.vcpus_needed, result.vcpus_in_use, result.vcpu_quota) == (60, 0, 64.0)
    assert result.warnings == ()
    clients.stub.assert_no_pending_responses()  # the quota was asked for, with L-1216C47A


def test_the_default_parameter_is_debian_12_and_missing_image_is_refused(aws_env):
    with pytest.raises(BadInput) as caught:
        run(Clients().quota(64), ami_parameter=None)
    assert str(caught.value) == ("no Debian 12 image for amd64 in eu-west-3 (SSM parameter "
                                 "/aws/service/debian/release/12/latest/amd64 not found): choose another region")
    assert caught.value.exit_code == ExitCode.BAD_INPUT


def test_a_parameter_naming_a_vanished_image_is_refused(aws_env):
    client("ssm").put_parameter(Name=PARAMETER, Value="ami-0123456789abcdef0", Type="String")
    with pytest.raises(BadInput, match="the image ami-0123456789abcdef0 named by .* does not exist"):
        run(Clients().quota(64))


def test_quota_too_small_is_refused_with_what_to_do(aws_env):
    debian_image()
    with pytest.raises(BadInput) as caught:
        run(Clients().quota(8), hosts=5)
    message = str(caught.value)
    assert "5 × t3.small need 10 vCPUs" in message
    assert "quota in eu-west-3 is 8 with 0 in use" in message
    assert "L-1216C47A" in message and "\n" not in message


def test_running_instances_of_others_count_but_this_classrooms_do_not(aws_env):
    debian_image()
    launch(3, "t3.large")  # 2 vCPUs each: 6 in use
    launch(2, "t3.small", {"classroom": "demo", "managed-by": "classroom"})  # ours: being converged
    launch(4, "g4dn.xlarge")  # another quota (G and VT instances)
    assert run(Clients().quota(16), hosts=5).vcpus_in_use == 6  # 10 + 6 = 16: fits
    with pytest.raises(BadInput, match="need 12 vCPUs .* is 16 with 6 in use"):
        run(Clients().quota(16), hosts=6)


def test_default_quota_when_never_changed_and_a_warning_when_unreadable(aws_env):
    debian_image()
    clients = Clients()
    clients.stub.add_client_error("get_service_quota", "NoSuchResourceException", expected_params=QUOTA)
    clients.stub.add_response("get_aws_default_service_quota", {"Quota": {"Value": 5.0, **QUOTA}}, QUOTA)
    with pytest.raises(BadInput, match="quota in eu-west-3 is 5 "):
        run(clients, hosts=3)

    clients = Clients()
    clients.stub.add_client_error("get_service_quota", "AccessDeniedException", expected_params=QUOTA)
    clients.network()
    result = run(clients, hosts=3)
    assert result.vcpu_quota is None
    assert result.warnings == (("could not read the vCPU quota L-1216C47A in eu-west-3 "
                               "(AccessDeniedException): not checked"),)


def test_unknown_instance_type_is_refused(aws_env):
    debian_image()
    with pytest.raises(BadInput) as caught:
        run(Clients().quota(64), instance_type="t9.huge")
    assert str(caught.value) == ("aws.instance_type: 't9.huge' is not an EC2 instance type in eu-west-3 "
                                 "(e.g. t3.small, t3.medium)")


def _no_aws(service):
    raise AssertionError(f"AWS asked ({service}) before the local checks")


@pytest.mark.parametrize(("changes", "message"), [
    ({"region": "Paris"}, "aws.region: 'Paris' is not an AWS region name like eu-west-3 or us-east-1"),
    ({"region": "eu-west-9"}, ("aws.region: 'eu-west-9' is not an AWS region (if it is new, upgrade boto3: "
                              "pip install -U boto3)")),
    ({"allowed_cidr": "my office"}, ("aws.allowed_cidr: 'my office' is not a network like 203.0.113.0/24 "
                                    "or 0.0.0.0/0")),
])
def test_local_checks_come_first(aws_env, changes, message):
    with pytest.raises(BadInput) as caught:
        run(_no_aws, **changes)
    assert str(caught.value) == message


def test_no_credentials(aws_env, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(BadInput) as caught:
        run(aws_preflight.default_clients(REGION))
    assert str(caught.value).startswith("no AWS credentials found: run `aws configure`")


def test_refused_credentials(aws_env):
    sts = client("sts")
    stub = Stubber(sts)
    stub.add_client_error("get_caller_identity", "InvalidClientTokenId", "The security token is invalid")
    stub.activate()
    with pytest.raises(BadInput, match=r"^AWS refused the credentials \(InvalidClientTokenId\): run `aws"):
        run(lambda service: sts if service == "sts" else _no_aws(service))


def test_a_region_not_enabled_is_refused(aws_env):
    ec2 = client("ec2", "eu-south-2")
    stub = Stubber(ec2)
    stub.add_response("describe_regions", {"Regions": [
        {"RegionName": "eu-south-2", "OptInStatus": "not-opted-in", "Endpoint": "ec2.eu-south-2.amazonaws.com"}]},
        {"AllRegions": True})
    stub.activate()
    sts = client("sts", "eu-south-2")
    with pytest.raises(BadInput) as caught:
        run(lambda service: {"sts": sts, "ec2": ec2}[service], region="eu-south-2")
    assert str(caught.value) == ("aws.region: eu-south-2 is not enabled for account 123456789012: enable it "
                                 "in the AWS console (Account, AWS Regions) or choose another region")


def test_a_new_classroom_needs_a_vpc_and_an_internet_gateway_the_quota_allows(aws_env):
    """Issue 9, item 10: VPCs and internet gateways per region (5 by default) are checked too."""
    debian_image()
    ec2 = client("ec2")
    vpcs = len(ec2.describe_vpcs()["Vpcs"])  # moto's default VPC
    with pytest.raises(BadInput) as caught:
        run(Clients().quota(64, vpcs=vpcs))
    assert str(caught.value) == (
        f"the VPCs per Region quota in eu-west-3 is {vpcs} and {vpcs} exist: each classroom needs its own; "
        "remove unused ones or request an increase in Service Quotas (VPC, L-F678F1CE)")
    gateways = len(ec2.describe_internet_gateways()["InternetGateways"])
    with pytest.raises(BadInput, match="the Internet gateways per Region quota in eu-west-3 is"):
        run(Clients().quota(64, vpcs=vpcs + 1, gateways=gateways))
    # a classroom that has its network already needs no new one
    tags = [{"ResourceType": kind, "Tags": [{"Key": "classroom", "Value": "demo"},
                                            {"Key": "managed-by", "Value": "classroom"}]}
            for kind in ("vpc", "internet-gateway")]
    ec2.create_vpc(CidrBlock="10.42.0.0/16", TagSpecifications=tags[:1])
    ec2.create_internet_gateway(TagSpecifications=tags[1:])
    clients = Clients()
    clients.stub.add_response("get_service_quota", {"Quota": {"Value": 64, **QUOTA}}, QUOTA)
    assert run(clients).warnings == ()
