"""Whether Swarm's routing mesh can work on the classroom's hosts, asked once per classroom.

The ingress routing mesh and service VIPs are IPVS. A host whose kernel has no IPVS (a nested
engine on a kernel without the ip_vs module, as on the machines these tests run on) accepts
`docker service create -p 8080:80` and then never answers on 8080: published services need
`--publish mode=host` or `--endpoint-mode dnsrr` there. Students are told on their sheets rather
than left to find out.
"""

from __future__ import annotations

from ..model import Machine
from ..ssh import AdminAccess, admin_connection, opened, run
from .session import UNANSWERED

# /proc/net/ip_vs exists once the module is in the kernel; root on a VM may load it (a container cannot).
IPVS_PRESENT = "test -e /proc/net/ip_vs || { modprobe -q ip_vs 2>/dev/null && test -e /proc/net/ip_vs; }"
ASK_SECONDS = 10.0


def routing_mesh(machines: list[Machine], access: AdminAccess) -> bool | None:
    """True when the first running host's kernel has IPVS, False when it has not, None when no
    host answered (asked again next time). All hosts of a classroom share one kind of kernel."""
    for machine in (m for m in machines if m.running):
        try:
            with opened(admin_connection(machine, access), ASK_SECONDS) as connection:
                return run(connection, IPVS_PRESENT, timeout=30).ok
        except UNANSWERED:  # any host that answers will do; none: unknown
            continue
    return None
