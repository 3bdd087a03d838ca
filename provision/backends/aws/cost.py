"""What a cloud classroom costs: a small, dated price table and an estimate.

Prices are AWS on-demand list prices for Linux in USD, read from the public price pages on the
date below. They drift: the estimate says which date it is based on, and says so plainly when
the instance type or region is not in the table rather than guessing.
"""

from __future__ import annotations

from dataclasses import dataclass

PRICES_AS_OF = "2024-06-01"
PRICING_URL = "https://aws.amazon.com/ec2/pricing/on-demand/"

# USD per instance-hour, on-demand, Linux.
INSTANCE_PRICES: dict[str, dict[str, float]] = {
    "us-east-1": {
        "t3.micro": 0.0104, "t3.small": 0.0208, "t3.medium": 0.0416, "t3.large": 0.0832,
        "t3.xlarge": 0.1664,
        "t3a.micro": 0.0094, "t3a.small": 0.0188, "t3a.medium": 0.0376, "t3a.large": 0.0752,
        "m5.large": 0.096, "c5.large": 0.085,
    },
    "us-west-2": {
        "t3.micro": 0.0104, "t3.small": 0.0208, "t3.medium": 0.0416, "t3.large": 0.0832,
        "t3.xlarge": 0.1664,
        "t3a.micro": 0.0094, "t3a.small": 0.0188, "t3a.medium": 0.0376, "t3a.large": 0.0752,
        "m5.large": 0.096, "c5.large": 0.085,
    },
    "eu-west-1": {
        "t3.micro": 0.0114, "t3.small": 0.0228, "t3.medium": 0.0456, "t3.large": 0.0912,
        "t3.xlarge": 0.1824,
        "t3a.micro": 0.0102, "t3a.small": 0.0204, "t3a.medium": 0.0408, "t3a.large": 0.0816,
        "m5.large": 0.107, "c5.large": 0.096,
    },
    "eu-west-3": {
        "t3.micro": 0.0118, "t3.small": 0.0236, "t3.medium": 0.0472, "t3.large": 0.0944,
        "t3.xlarge": 0.1888,
        "t3a.micro": 0.0106, "t3a.small": 0.0212, "t3a.medium": 0.0424, "t3a.large": 0.0848,
        "m5.large": 0.112, "c5.large": 0.101,
    },
    "eu-central-1": {
        "t3.micro": 0.012, "t3.small": 0.024, "t3.medium": 0.048, "t3.large": 0.096,
        "t3.xlarge": 0.192,
        "t3a.micro": 0.0108, "t3a.small": 0.0216, "t3a.medium": 0.0432, "t3a.large": 0.0864,
        "m5.large": 0.115, "c5.large": 0.097,
    },
}

# USD per GB-month of gp3 storage (3000 IOPS / 125 MB/s baseline included).
GP3_GB_MONTH: dict[str, float] = {
    "us-east-1": 0.08, "us-west-2": 0.08, "eu-west-1": 0.088, "eu-west-3": 0.0928,
    "eu-central-1": 0.0952,
}
DEFAULT_GP3_GB_MONTH = 0.0952  # the dearest of the table, when the region is not in it
PUBLIC_IPV4_HOUR = 0.005  # every public IPv4 address, since 2024-02-01
# What the estimate leaves out. Burstable hosts run with `standard` CPU credits (stacks/), so
# no "unlimited" surplus credits are ever charged; data sent out to the Internet is billed per GB.
EXCLUDES = "excludes data transfer out, billed per GB"
HOURS_PER_MONTH = 730


@dataclass(frozen=True)
class Estimate:
    instance_type: str
    region: str
    hosts: int
    disk_gb: int
    hours: float
    per_hour: float  # USD for the whole classroom; without compute when `known` is False
    total: float  # per_hour * hours
    known: bool  # the instance price was in the table
    note: str = ""  # why the estimate is partial or approximate

    def line(self) -> str:
        what = f"{self.hosts} × {self.instance_type} in {self.region}"
        if not self.known:
            return (f"cost: unknown for {what} (no price for {self.instance_type} in the table of "
                    f"{PRICES_AS_OF}; storage and addresses alone ${self.per_hour:.2f}/h, "
                    f"${self.total:.2f} for {self.hours:g} h; {EXCLUDES}): see {PRICING_URL}")
        extra = f"; {self.note}" if self.note else ""
        return (f"cost: about ${self.per_hour:.2f}/h for {what}, ${self.total:.2f} for {self.hours:g} h "
                f"(list prices of {PRICES_AS_OF}{extra}; {EXCLUDES})")


def instance_price(instance_type: str, region: str) -> tuple[float | None, str]:
    """The hourly price, and a note when it was borrowed from another region."""
    regional = INSTANCE_PRICES.get(region)
    if regional is not None:
        return regional.get(instance_type), ""
    price = INSTANCE_PRICES["us-east-1"].get(instance_type)
    return price, f"{region} not in the table, us-east-1 prices used"


def estimate(instance_type: str, region: str, hosts: int, disk_gb: int = 20,
             hours: float = 8.0) -> Estimate:
    """What `hosts` instances with a `disk_gb` gp3 root volume and a public IPv4 cost."""
    if hosts < 0 or disk_gb < 0 or hours < 0:
        raise ValueError("hosts, disk_gb and hours must not be negative")
    price, note = instance_price(instance_type, region)
    storage_hour = disk_gb * GP3_GB_MONTH.get(region, DEFAULT_GP3_GB_MONTH) / HOURS_PER_MONTH
    per_host = storage_hour + PUBLIC_IPV4_HOUR + (price or 0.0)
    per_hour = round(hosts * per_host, 4)
    return Estimate(instance_type=instance_type, region=region, hosts=hosts, disk_gb=disk_gb,
                    hours=hours, per_hour=per_hour, total=round(per_hour * hours, 4),
                    known=price is not None, note=note)
