"""The cost estimate: a dated price table, and honesty when a price is unknown."""

from __future__ import annotations

from datetime import date

import pytest

from provision.backends.aws import cost


def test_estimate_adds_instances_storage_and_public_addresses():
    result = cost.estimate("t3.small", "eu-west-3", hosts=30, disk_gb=20, hours=8)
    per_host = 0.0236 + 20 * 0.0928 / 730 + 0.005
    assert result.known is True
    assert result.per_hour == pytest.approx(30 * per_host, abs=1e-4)
    assert result.total == pytest.approx(30 * per_host * 8, abs=1e-3)
    line = result.line()
    assert "$0.93/h" in line and "$7.47 for 8 h" in line and cost.PRICES_AS_OF in line


@pytest.mark.parametrize("instance_type", ["t3.micro", "t3.small", "t3.medium", "t3.large", "t3a.micro",
                                           "t3a.small", "t3a.medium", "t3a.large", "m5.large", "c5.large"])
@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1", "eu-west-3", "eu-central-1"])
def test_common_types_are_priced_in_common_regions(instance_type, region):
    result = cost.estimate(instance_type, region, hosts=1, disk_gb=0, hours=1)
    assert result.known and result.per_hour > cost.PUBLIC_IPV4_HOUR


def test_prices_grow_with_size_and_scale_with_hosts_and_hours():
    small = cost.estimate("t3.small", "us-east-1", 10, 20, 8)
    medium = cost.estimate("t3.medium", "us-east-1", 10, 20, 8)
    assert medium.per_hour > small.per_hour
    assert cost.estimate("t3.small", "us-east-1", 20, 20, 8).per_hour == pytest.approx(2 * small.per_hour)
    assert cost.estimate("t3.small", "us-east-1", 10, 20, 16).total == pytest.approx(2 * small.total)
    assert cost.estimate("t3.small", "us-east-1", 0, 20, 8).total == 0


def test_unknown_type_is_flagged_not_a_crash():
    result = cost.estimate("x9z.mega", "eu-west-3", hosts=3, disk_gb=20, hours=8)
    assert result.known is False
    assert result.per_hour == pytest.approx(3 * (20 * 0.0928 / 730 + 0.005), abs=1e-4)  # storage + IPv4 only
    line = result.line()
    assert line.startswith("cost: unknown for 3 × x9z.mega in eu-west-3")
    assert cost.PRICING_URL in line


def test_unknown_region_borrows_us_east_1_and_says_so():
    result = cost.estimate("t3.small", "ap-southeast-4", hosts=1, disk_gb=20, hours=1)
    assert result.known and "us-east-1 prices used" in result.note and "us-east-1" in result.line()


def test_the_table_is_dated_and_negative_input_refused():
    assert date.fromisoformat(cost.PRICES_AS_OF) <= date.today()
    with pytest.raises(ValueError):
        cost.estimate("t3.small", "eu-west-3", hosts=-1)


def test_the_estimate_says_what_it_excludes():
    """Item 9 of issue 9: a trainer reading the line knows data transfer is not in it."""
    for result in (cost.estimate("t3.small", "eu-west-3", 30, 20, 8), cost.estimate("x9z.mega", "eu-west-3", 3)):
        assert "excludes data transfer out" in result.line()
