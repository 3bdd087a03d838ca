"""Refuse what would fail on AWS, before anything is created.

Checked with boto3, in this order, each failure a `BadInput` (exit 2) of one line that says what
to do: the allowed CIDR, the region's name, the credentials (STS), the region is enabled, the
instance type exists there and in which availability zone, the Debian 12 AMI resolves (public SSM
parameter), and the Running On-Demand Standard instances vCPU quota (L-1216C47A) covers the hosts.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stacks import DEBIAN_AMI_PARAMETER, MANAGED_BY

from ...errors import BadInput

VCPU_QUOTA_CODE = "L-1216C47A"  # EC2: Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances
# Each classroom makes one VPC and one internet gateway (both 5 per region by default).
NETWORK_QUOTAS = (("L-F678F1CE", "VPCs per Region", "describe_vpcs", "Vpcs"),
                  ("L-A4707A72", "Internet gateways per Region", "describe_internet_gateways", "InternetGateways"))
REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
STANDARD_FAMILY_RE = re.compile(r"^[acdhimrtz]\d")  # families counted by L-1216C47A
CREDENTIAL_ERRORS = {"InvalidClientTokenId", "UnrecognizedClientException", "SignatureDoesNotMatch",
                     "ExpiredToken", "ExpiredTokenException", "AuthFailure", "InvalidSignatureException",
                     "RequestExpired", "InvalidAccessKeyId"}
DENIED_ERRORS = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"}
CREDENTIALS_HELP = ("run `aws configure` (or `aws sso login`), or set AWS_PROFILE or "
                    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")

ClientFactory = Callable[[str], Any]


@dataclass(frozen=True)
class PreflightResult:
    account: str
    region: str
    instance_type: str
    architecture: str  # amd64 | arm64 (Debian's names)
    vcpus_per_host: int
    ami: str
    ami_parameter: str
    availability_zone: str | None
    vcpus_needed: int
    vcpus_in_use: int  # by running instances of other classrooms and everything else
    vcpu_quota: float | None  # None: could not be read (see warnings)
    warnings: tuple[str, ...] = ()


def default_clients(region: str) -> ClientFactory:
    """boto3 clients for `region`, one per service, with short timeouts."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(region_name=region)
    config = Config(connect_timeout=10, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"})
    cache: dict[str, Any] = {}

    def client(service: str) -> Any:
        if service not in cache:
            cache[service] = session.client(service, region_name=region, config=config)
        return cache[service]

    return client


def check_cidr(cidr: str) -> None:
    try:
        ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        raise BadInput(f"aws.allowed_cidr: {cidr!r} is not a network like 203.0.113.0/24 or 0.0.0.0/0") from None


@functools.cache
def known_regions() -> frozenset[str]:
    """Every region this boto3 knows, in every partition (offline)."""
    import boto3

    session = boto3.session.Session()
    regions: set[str] = set()
    for partition in session.get_available_partitions():
        regions.update(session.get_available_regions("ec2", partition_name=partition))
    return frozenset(regions)


def check_region_name(region: str) -> None:
    if not REGION_RE.match(region or ""):
        raise BadInput(f"aws.region: {region!r} is not an AWS region name like eu-west-3 or us-east-1")
    if region not in known_regions():
        raise BadInput(f"aws.region: {region!r} is not an AWS region (if it is new, upgrade boto3: "
                       "pip install -U boto3)")


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return response.get("Error", {}).get("Code", "")


def aws_call(what: str, region: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
    """Call boto3; credentials, network and permission problems become one-line BadInput."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
    )

    try:
        return fn(**kwargs)
    except (NoCredentialsError, PartialCredentialsError):
        raise BadInput(f"no AWS credentials found: {CREDENTIALS_HELP}") from None
    except NoRegionError:
        raise BadInput("aws.region: no region set in the classroom file") from None
    except EndpointConnectionError:
        raise BadInput(f"cannot reach AWS in {region} ({what}): check the network and aws.region") from None
    except ClientError as exc:
        code = _error_code(exc)
        if code in CREDENTIAL_ERRORS:
            raise BadInput(f"AWS refused the credentials ({code}): {CREDENTIALS_HELP}") from None
        if code in DENIED_ERRORS:
            raise BadInput(f"AWS denied {what} ({code}): the AWS user needs EC2, SSM and Service "
                           "Quotas permissions") from None
        raise
    except BotoCoreError as exc:
        raise BadInput(f"AWS {what} failed: {exc}") from None


def run(*, region: str, instance_type: str, hosts: int, allowed_cidr: str, classroom: str,
        clients: ClientFactory | None = None, ami_parameter: str | None = None) -> PreflightResult:
    """Every check, in order; the first failure raises BadInput. Nothing is created."""
    from botocore.exceptions import ClientError

    check_cidr(allowed_cidr)
    check_region_name(region)
    client = clients or default_clients(region)
    warnings: list[str] = []

    # Credentials: who are we?
    identity = aws_call("sts:GetCallerIdentity", region, client("sts").get_caller_identity)
    account = identity.get("Account", "?")
    ec2 = client("ec2")

    # The region is enabled for the account.
    regions = aws_call("ec2:DescribeRegions", region, ec2.describe_regions, AllRegions=True)["Regions"]
    entry = next((r for r in regions if r.get("RegionName") == region), None)
    if entry is None:
        raise BadInput(f"aws.region: {region!r} is not a region of this AWS account's partition")
    if entry.get("OptInStatus") == "not-opted-in":
        raise BadInput(f"aws.region: {region} is not enabled for account {account}: enable it in the "
                       "AWS console (Account, AWS Regions) or choose another region")

    # The instance type: vCPUs, architecture, where it is offered.
    try:
        types = aws_call("ec2:DescribeInstanceTypes", region, ec2.describe_instance_types,
                          InstanceTypes=[instance_type])["InstanceTypes"]
    except ClientError as exc:
        if _error_code(exc).startswith("InvalidInstanceType"):
            types = []
        else:
            raise
    if not types:
        raise BadInput(f"aws.instance_type: {instance_type!r} is not an EC2 instance type in {region} "
                       "(e.g. t3.small, t3.medium)")
    info = types[0]
    vcpus = int(info.get("VCpuInfo", {}).get("DefaultVCpus", 0)) or 1
    archs = info.get("ProcessorInfo", {}).get("SupportedArchitectures", ["x86_64"])
    architecture = "amd64" if "x86_64" in archs else "arm64"
    offerings = aws_call("ec2:DescribeInstanceTypeOfferings", region, ec2.describe_instance_type_offerings,
                          LocationType="availability-zone",
                          Filters=[{"Name": "instance-type", "Values": [instance_type]}])
    zones = sorted(o["Location"] for o in offerings.get("InstanceTypeOfferings", []))
    if not zones:
        raise BadInput(f"aws.instance_type: {instance_type} is offered in no availability zone of "
                       f"{region}: choose another instance type or region")

    # The image: the public SSM parameter names the current Debian 12 AMI.
    parameter = ami_parameter or DEBIAN_AMI_PARAMETER.format(arch=architecture)
    try:
        ami = aws_call("ssm:GetParameter", region, client("ssm").get_parameter,
                        Name=parameter)["Parameter"]["Value"]
    except ClientError as exc:
        if _error_code(exc) in ("ParameterNotFound", "ValidationException"):
            raise BadInput(f"no Debian 12 image for {architecture} in {region} (SSM parameter "
                           f"{parameter} not found): choose another region") from None
        raise
    try:
        images = aws_call("ec2:DescribeImages", region, ec2.describe_images, ImageIds=[ami])["Images"]
    except ClientError as exc:
        if _error_code(exc).startswith("InvalidAMIID"):
            images = []
        else:
            raise
    if not images:
        raise BadInput(f"the image {ami} named by {parameter} does not exist in {region}: "
                       "try again later or choose another region")

    # The vCPU quota covers this classroom's hosts beside what already runs in the region.
    needed = hosts * vcpus
    quota = _vcpu_quota(client("service-quotas"), region, warnings)
    in_use = _vcpus_in_use(ec2, region, classroom)
    if quota is not None and in_use + needed > quota:
        raise BadInput(
            f"{hosts} × {instance_type} need {needed} vCPUs but the Running On-Demand Standard instances "
            f"quota in {region} is {quota:g} with {in_use} in use: request an increase in Service Quotas "
            f"(EC2, {VCPU_QUOTA_CODE}), or use fewer students or a smaller aws.instance_type")

    check_network_quotas(client("service-quotas"), ec2, region, classroom, warnings)

    return PreflightResult(account=account, region=region, instance_type=instance_type,
                           architecture=architecture, vcpus_per_host=vcpus, ami=ami,
                           ami_parameter=parameter, availability_zone=zones[0], vcpus_needed=needed,
                           vcpus_in_use=in_use, vcpu_quota=quota, warnings=tuple(warnings))


def _vcpu_quota(quotas: Any, region: str, warnings: list[str]) -> float | None:
    from botocore.exceptions import ClientError

    try:
        return float(quotas.get_service_quota(ServiceCode="ec2", QuotaCode=VCPU_QUOTA_CODE)["Quota"]["Value"])
    except ClientError as exc:
        code = _error_code(exc)
        if code == "NoSuchResourceException":  # never changed: the default applies
            try:
                return float(quotas.get_aws_default_service_quota(
                    ServiceCode="ec2", QuotaCode=VCPU_QUOTA_CODE)["Quota"]["Value"])
            except ClientError:
                pass
        elif code in CREDENTIAL_ERRORS:
            raise BadInput(f"AWS refused the credentials ({code}): {CREDENTIALS_HELP}") from None
        warnings.append(f"could not read the vCPU quota {VCPU_QUOTA_CODE} in {region} ({code or exc}): "
                        "not checked")
        return None


def check_network_quotas(quotas: Any, ec2: Any, region: str, classroom: str, warnings: list[str]) -> None:
    """A new classroom needs one more VPC and internet gateway than the region has."""
    from botocore.exceptions import BotoCoreError, ClientError

    mine = [{"Name": "tag:classroom", "Values": [classroom]}, {"Name": "tag:managed-by", "Values": [MANAGED_BY]}]
    for code, label, describe, key in NETWORK_QUOTAS:
        if aws_call(f"ec2:{describe}", region, getattr(ec2, describe), Filters=mine)[key]:
            continue  # this classroom has its own already
        try:
            quota = float(quotas.get_service_quota(ServiceCode="vpc", QuotaCode=code)["Quota"]["Value"])
        except (ClientError, BotoCoreError) as exc:
            code_text = _error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__
            if code_text in CREDENTIAL_ERRORS:
                raise BadInput(f"AWS refused the credentials ({code_text}): {CREDENTIALS_HELP}") from None
            warnings.append(f"could not read the {label} quota {code} in {region} ({code_text}): not checked")
            continue
        in_use = len(aws_call(f"ec2:{describe}", region, getattr(ec2, describe))[key])
        if in_use + 1 > quota:
            raise BadInput(f"the {label} quota in {region} is {quota:g} and {in_use} exist: each classroom "
                           f"needs its own; remove unused ones or request an increase in Service Quotas "
                           f"(VPC, {code})")


def _vcpus_in_use(ec2: Any, region: str, classroom: str) -> int:
    """vCPUs of pending and running standard-family instances that are not this classroom's."""
    unknown: dict[str, int] = {}  # instance type -> how many, for those without CpuOptions
    total = 0
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}])
    for page in aws_call("ec2:DescribeInstances", region, lambda: list(pages)):
        for reservation in page.get("Reservations", []):
            for instance in reservation.get("Instances", []):
                tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
                if tags.get("classroom") == classroom and tags.get("managed-by") == MANAGED_BY:
                    continue
                kind = instance.get("InstanceType", "")
                if not STANDARD_FAMILY_RE.match(kind):
                    continue
                cpu = instance.get("CpuOptions") or {}
                if cpu.get("CoreCount") and cpu.get("ThreadsPerCore"):
                    total += int(cpu["CoreCount"]) * int(cpu["ThreadsPerCore"])
                else:
                    unknown[kind] = unknown.get(kind, 0) + 1
    kinds = sorted(unknown)
    for start in range(0, len(kinds), 100):
        batch = kinds[start:start + 100]
        described = aws_call("ec2:DescribeInstanceTypes", region, ec2.describe_instance_types,
                              InstanceTypes=batch)["InstanceTypes"]
        for item in described:
            total += int(item["VCpuInfo"]["DefaultVCpus"]) * unknown.get(item["InstanceType"], 0)
    return total
