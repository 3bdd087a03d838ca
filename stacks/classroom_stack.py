"""The Pulumi program of one classroom on AWS.

One VPC with a public subnet, internet gateway and route table (teardown never depends on the
account's default VPC); one security group with standalone rules; one key pair; one instance
per host. Every taggable resource carries the classroom's tags. Instances power themselves off
at expiry (cloud-init) and terminate when they do.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

import pulumi
import pulumi_aws as aws

from . import (
    MANAGED_BY,
    PROJECT,
    PUBLIC_TCP_PORTS,
    SUBNET_CIDR,
    VPC_CIDR,
    ClassroomSpec,
    HostEntry,
    ami_parameter,
    spec_from_values,
)
from .userdata import render_user_data

UserDataRenderer = Callable[[HostEntry, ClassroomSpec], str]


def classroom_tags(spec: ClassroomSpec, role: str = "shared", student: str | None = None,
                   name: str | None = None) -> dict[str, str]:
    tags = {
        **spec.extra_tags,
        "classroom": spec.name,
        "role": role,
        "student": student or "none",
        "expires-at": spec.expires_at_text,
        "managed-by": MANAGED_BY,
    }
    if name:
        tags["Name"] = name
    return tags


def _cidr_args(cidr: str) -> dict[str, str]:
    network = ipaddress.ip_network(cidr, strict=False)
    return {"cidr_ipv6" if network.version == 6 else "cidr_ipv4": str(network)}


def classroom_program(spec: ClassroomSpec, render: UserDataRenderer = render_user_data) -> dict[str, Any]:
    """Declare the classroom's resources; returns the outputs (the caller exports them)."""
    prefix = f"{PROJECT}-{spec.name}"

    def tags(suffix: str, role: str = "shared", student: str | None = None) -> dict[str, str]:
        return classroom_tags(spec, role, student, name=f"{prefix}-{suffix}")

    # --- network ---------------------------------------------------------------------------
    vpc = aws.ec2.Vpc("vpc", cidr_block=VPC_CIDR, enable_dns_support=True, enable_dns_hostnames=True,
                      tags=tags("vpc"))
    subnet = aws.ec2.Subnet("subnet", vpc_id=vpc.id, cidr_block=SUBNET_CIDR,
                            map_public_ip_on_launch=True, availability_zone=spec.availability_zone,
                            tags=tags("subnet"))
    gateway = aws.ec2.InternetGateway("gateway", vpc_id=vpc.id, tags=tags("gateway"))
    table = aws.ec2.RouteTable("routes", vpc_id=vpc.id, tags=tags("routes"))
    aws.ec2.Route("default-route", route_table_id=table.id, destination_cidr_block="0.0.0.0/0",
                  gateway_id=gateway.id)
    aws.ec2.RouteTableAssociation("routes-subnet", route_table_id=table.id, subnet_id=subnet.id)

    # --- security group: standalone rules (pulumi-aws v7 drops AWS's default egress) ---------
    group = aws.ec2.SecurityGroup("hosts", vpc_id=vpc.id, tags=tags("hosts"),
                                  description=f"classroom {spec.name}: student and Swarm hosts")
    source = _cidr_args(spec.allowed_cidr)
    for low, high in PUBLIC_TCP_PORTS:
        label = str(low) if low == high else f"{low}-{high}"
        aws.vpc.SecurityGroupIngressRule(
            f"in-tcp-{label}", security_group_id=group.id, ip_protocol="tcp", from_port=low,
            to_port=high, description=f"tcp {label} from the classroom's network",
            tags=tags(f"in-tcp-{label}"), **source)
    # Swarm (2377/tcp, 7946/tcp+udp, 4789/udp) and anything else between the hosts.
    aws.vpc.SecurityGroupIngressRule(
        "in-group", security_group_id=group.id, ip_protocol="-1", referenced_security_group_id=group.id,
        description="all traffic between the classroom's hosts (Swarm)", tags=tags("in-group"))
    aws.vpc.SecurityGroupEgressRule(
        "out-all-ipv4", security_group_id=group.id, ip_protocol="-1", cidr_ipv4="0.0.0.0/0",
        description="all outbound (apt, Docker Hub)", tags=tags("out-all-ipv4"))

    key = aws.ec2.KeyPair("admin-key", public_key=spec.admin_public_key, tags=tags("admin-key"))

    ami: pulumi.Input[str]
    if spec.ami:
        ami = spec.ami
    else:
        ami = aws.ssm.get_parameter_output(name=ami_parameter(spec.instance_type)).value

    # --- hosts ---------------------------------------------------------------------------------
    hosts = []
    for host in spec.hosts:
        host_tags = {**classroom_tags(spec, host.role, host.student, name=f"{prefix}-{host.name}"),
                     "host": host.name}
        instance = aws.ec2.Instance(
            host.name,
            ami=ami,
            instance_type=spec.instance_type,
            subnet_id=subnet.id,
            vpc_security_group_ids=[group.id],
            associate_public_ip_address=True,
            key_name=key.key_name,
            user_data=render(host, spec),
            instance_initiated_shutdown_behavior="terminate",
            root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(
                volume_type="gp3", volume_size=spec.disk_gb, delete_on_termination=True,
                encrypted=True, tags=host_tags),
            metadata_options=aws.ec2.InstanceMetadataOptionsArgs(http_tokens="required",
                                                                 http_endpoint="enabled"),
            tags=host_tags,
            # A new AMI or template must not touch running hosts; a replaced host gets both anew.
            opts=pulumi.ResourceOptions(ignore_changes=["ami", "userData"]),
        )
        hosts.append({
            "name": host.name,
            "role": host.role,
            "student": host.student,
            "instance_id": instance.id,
            "public_ip": instance.public_ip,
            "public_dns": instance.public_dns,
            "private_ip": instance.private_ip,
        })

    return {
        "hosts": hosts,
        "vpc_id": vpc.id,
        "security_group_id": group.id,
        "key_name": key.key_name,
        "expires_at": spec.expires_at_text,
    }


def spec_from_config() -> ClassroomSpec:
    """The spec from the stack's configuration (`classroom:*` keys)."""
    config = pulumi.Config(PROJECT)
    spec = spec_from_values(config.get, pulumi.get_stack())
    region = pulumi.Config("aws").get("region")
    if region:
        from dataclasses import replace

        spec = replace(spec, region=region)
    return spec


def main() -> None:
    """The program as Pulumi runs it: configuration in, resources declared, outputs exported."""
    outputs = classroom_program(spec_from_config())
    for key, value in outputs.items():
        pulumi.export(key, value)
