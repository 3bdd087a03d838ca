"""Issue 9, item 11: the version floors in pyproject.toml match what the aws code uses."""

from __future__ import annotations

import importlib.metadata
import inspect
import re
import tomllib
from pathlib import Path

import pytest

pulumi = pytest.importorskip("pulumi")
pulumi_aws = pytest.importorskip("pulumi_aws")
pytest.importorskip("boto3")
from semver import VersionInfo

from provision.backends.aws import backend as aws_backend

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def floors() -> dict[str, tuple[str, str | None]]:
    """package -> (floor, ceiling or None), from the aws extra."""
    extra = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]["aws"]
    found = {}
    for requirement in extra:
        name = re.match(r"^[A-Za-z0-9_.-]+", requirement).group(0).lower()
        low = re.search(r">=([\d.]+)", requirement)
        high = re.search(r"<([\d.]+)", requirement)
        found[name] = (low.group(1) if low else None, high.group(1) if high else None)
    return found


def as_version(text: str) -> VersionInfo:
    parts = (text.split(".") + ["0", "0"])[:3]
    return VersionInfo(*map(int, parts))


def test_the_floors_are_what_the_code_needs():
    found = floors()
    assert as_version(found["pulumi"][0]) >= as_version(aws_backend.MIN_PULUMI)
    assert found["pulumi-aws"] == ("7", "8")  # the program is written against pulumi-aws 7
    assert found["boto3"][0] is not None


def test_the_installed_packages_meet_the_floors():
    for name, (low, high) in floors().items():
        installed = as_version(importlib.metadata.version(name))
        assert installed >= as_version(low), (name, str(installed), low)
        if high:
            assert installed < as_version(high), (name, str(installed), high)


def test_the_automation_api_has_what_the_backend_calls():
    from pulumi import automation as auto

    up = inspect.signature(auto.Stack.up).parameters
    assert {"refresh", "continue_on_error", "replace", "target", "on_event", "color"} <= set(up)
    assert {"refresh", "remove", "continue_on_error"} <= set(inspect.signature(auto.Stack.destroy).parameters)
    assert "version" in inspect.signature(auto.PulumiCommand.__init__).parameters
    assert hasattr(auto, "ConcurrentUpdateError") and hasattr(auto, "StackNotFoundError")


def test_pulumi_aws_has_what_the_program_declares():
    metadata = inspect.signature(pulumi_aws.ec2.InstanceMetadataOptionsArgs.__init__).parameters
    assert {"http_tokens", "http_put_response_hop_limit", "instance_metadata_tags"} <= set(metadata)
    assert "cpu_credits" in inspect.signature(pulumi_aws.ec2.InstanceCreditSpecificationArgs.__init__).parameters
    assert hasattr(pulumi_aws.vpc, "SecurityGroupIngressRule") and hasattr(pulumi_aws.vpc, "SecurityGroupEgressRule")


def test_an_older_pulumi_cli_is_refused_in_one_line(tmp_path, monkeypatch):
    """The backend asks the CLI for at least MIN_PULUMI (a fake `pulumi` answering 3.100.0)."""
    from provision.backends.aws.backend import AwsBackend
    from provision.config import ClassroomConfig
    from provision.errors import BadInput
    from provision.state import ClassroomState

    fake = tmp_path / "bin" / "pulumi"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho v3.100.0\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    monkeypatch.delenv("PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK", raising=False)
    backend = AwsBackend(ClassroomConfig(backend="aws"), ClassroomState("demo", root=tmp_path / "state"))
    with pytest.raises(BadInput, match=r"^the Pulumi CLI is too old .*3\.134\.0"):
        backend._require_pulumi()
