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
    EPHEMERAL_PORTS,
    MANAGED_BY,
    PROJECT,
    SSH_PORTS,
    SUBNET_CIDR,
    SWARM_PUBLISHED_PORTS,
    VPC_CIDR,
    ClassroomSpec,
    HostEntry,
    ami_parameter,
    burstable,
    spec_from_values,
)
from .userdata import render_user_data

UserDataRenderer = Callable[[HostEntry, ClassroomSpec], str]
EXPIRES_TAG = "expires-at"  # read on each host over IMDSv2 (instance_metadata_tags): the expiry


def classroom_tags(spec: ClassroomSpec, role: str = "shared", student: str | None = None,
                   name: str | None = None) -> dict[str, str]:
    tags = {
        **spec.extra_tags,
        "classroom": spec.name,
        "role": role,
        "student": student or "none",
        EXPIRES_TAG: spec.expires_at_text,
        "managed-by": MANAGED_BY,
    }
    if name:
        tags["Name"] = name
    return tags


def _cidr_args(cidr: str) -> dict[str, str]:
    network = ipaddress.ip_network(cidr, strict=False)
    return {"cidr_ipv6" if network.version == 6 else "cidr_ipv4": str(network)}


def public_ports(spec: ClassroomSpec) -> list[tuple[int, int]]:
    """What every host opens to allowed_cidr: SSH, the course's ports, `-P`'s range if asked."""
    ranges = [SSH_PORTS, *spec.ports]
    if spec.ephemeral_ports:
        ranges.append(EPHEMERAL_PORTS)
    return sorted(set(ranges))


def instance_options(host: HostEntry, spec: ClassroomSpec,
                     depends_on: list[pulumi.Resource]) -> pulumi.ResourceOptions:
    """A running host keeps the user-data and AMI it was made with: a new template or image must
    never stop and restart it mid-class. A host being replaced (`reset --hard`) gets both anew: the
    engine would otherwise copy its old inputs back into the replacement."""
    ignored = [] if host.name in spec.replacing else ["ami", "userData"]
    # Boot race: cloud-init installs Docker from the Internet at first boot, so an instance
    # must not start before its route out exists.
    return pulumi.ResourceOptions(ignore_changes=ignored, depends_on=depends_on)


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
    route = aws.ec2.Route("default-route", route_table_id=table.id, destination_cidr_block="0.0.0.0/0",
                          gateway_id=gateway.id)
    association = aws.ec2.RouteTableAssociation("routes-subnet", route_table_id=table.id, subnet_id=subnet.id)

    # --- security groups: standalone rules (pulumi-aws v7 drops AWS's default egress) --------
    # Descriptions use only the characters AWS accepts there (a-zA-Z0-9, space, ._-:/()#,@[]+=&;{}!$*).
    group = aws.ec2.SecurityGroup("hosts", vpc_id=vpc.id, tags=tags("hosts"),
                                  description=f"classroom {spec.name}: student and Swarm hosts")
    source = _cidr_args(spec.allowed_cidr)
    for low, high in public_ports(spec):
        label = str(low) if low == high else f"{low}-{high}"
        aws.vpc.SecurityGroupIngressRule(
            f"in-tcp-{label}", security_group_id=group.id, ip_protocol="tcp", from_port=low,
            to_port=high, description=f"tcp {label} from the classroom network (allowed_cidr)",
            tags=tags(f"in-tcp-{label}"), **source)
    # Swarm (2377/tcp, 7946/tcp+udp, 4789/udp) and anything else between the hosts.
    aws.vpc.SecurityGroupIngressRule(
        "in-group", security_group_id=group.id, ip_protocol="-1", referenced_security_group_id=group.id,
        description="all traffic between the classroom hosts (Swarm)", tags=tags("in-group"))
    egress = aws.vpc.SecurityGroupEgressRule(
        "out-all-ipv4", security_group_id=group.id, ip_protocol="-1", cidr_ipv4="0.0.0.0/0",
        description="all outbound (apt, Docker Hub)", tags=tags("out-all-ipv4"))
    swarm_groups: list[pulumi.Output[str]] = []
    # The shared nodes, or each student's own nodes and their host (node 1 of their cluster).
    swarm_hosts = {h.name for h in spec.hosts if h.role != "student"}
    swarm_hosts |= {h.name for h in spec.hosts if h.role == "student" and any(
        n.student == h.student for n in spec.hosts if n.name in swarm_hosts)}
    if swarm_hosts:
        # Services published without a port of the course's list land in Swarm's default range.
        swarm = aws.ec2.SecurityGroup("swarm", vpc_id=vpc.id, tags=tags("swarm"),
                                      description=f"classroom {spec.name}: published Swarm services")
        low, high = SWARM_PUBLISHED_PORTS
        aws.vpc.SecurityGroupIngressRule(
            f"swarm-tcp-{low}-{high}", security_group_id=swarm.id, ip_protocol="tcp", from_port=low,
            to_port=high, description=f"tcp {low}-{high} Swarm published ports (allowed_cidr)",
            tags=tags(f"swarm-tcp-{low}-{high}"), **source)
        swarm_groups.append(swarm.id)

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
            vpc_security_group_ids=[group.id, *(swarm_groups if host.name in swarm_hosts else [])],
            associate_public_ip_address=True,
            key_name=key.key_name,
            # It carries the host's private SSH key: kept encrypted in the stack's state.
            user_data=pulumi.Output.secret(render(host, spec)),
            instance_initiated_shutdown_behavior="terminate",
            root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(
                volume_type="gp3", volume_size=spec.disk_gb, delete_on_termination=True,
                encrypted=True, tags=host_tags),
            # IMDSv2 only, one hop (containers on the host cannot get a token), tags readable:
            # the expiry is a tag, so `classroom extend` moves it without touching the host.
            metadata_options=aws.ec2.InstanceMetadataOptionsArgs(
                http_tokens="required", http_endpoint="enabled", http_put_response_hop_limit=1,
                instance_metadata_tags="enabled"),
            # Burstable types: never the "unlimited" surplus credits charged on top of the hour.
            credit_specification=(aws.ec2.InstanceCreditSpecificationArgs(cpu_credits="standard")
                                  if burstable(spec.instance_type) else None),
            tags=host_tags,
            opts=instance_options(host, spec, [route, association, egress]),
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


def main(host_keys: dict[str, tuple[str, str]] | None = None) -> None:
    """The program as Pulumi runs it: configuration in, resources declared, outputs exported.

    `host_keys` is how the tool hands the hosts' SSH keys over, in-process (its inline program);
    the plain `pulumi` CLI reads them from the secret `classroom:hostKeys` instead."""
    spec = spec_from_config()
    if host_keys:
        from dataclasses import replace

        spec = replace(spec, host_keys=dict(host_keys))
    outputs = classroom_program(spec)
    for key, value in outputs.items():
        pulumi.export(key, value)
