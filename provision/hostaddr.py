"""This machine's address on its default route: where students reach the local backend's hosts.

Read from the routing table (/proc/net/route) and the interface's own address (an ioctl on a
socket that is never connected): no packet is sent, no name is resolved.
"""

from __future__ import annotations

import fcntl
import socket
import struct
from pathlib import Path

ROUTE_TABLE = Path("/proc/net/route")
RTF_UP = 0x1
SIOCGIFADDR = 0x8915  # linux/sockios.h: an interface's IPv4 address


def default_route_interface(table: str) -> str | None:
    """The interface of the default IPv4 route (destination and mask 0, up; lowest metric wins)
    in the text of /proc/net/route, or None when there is none."""
    best: tuple[int, str] | None = None
    for line in table.splitlines()[1:]:  # the first line names the columns
        fields = line.split()
        if len(fields) < 8:
            continue
        iface, destination, _gateway, flags, _refs, _use, metric, mask = fields[:8]
        try:
            default = int(destination, 16) == 0 and int(mask, 16) == 0 and int(flags, 16) & RTF_UP
            rank = int(metric)
        except ValueError:
            continue
        if default and (best is None or rank < best[0]):
            best = (rank, iface)
    return best[1] if best else None


def interface_address(iface: str) -> str | None:
    """The IPv4 address of interface `iface` (e.g. `eth0`), or None when it has none."""
    name = iface.encode()[:15]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            answer = fcntl.ioctl(probe.fileno(), SIOCGIFADDR, struct.pack("256s", name))
        except OSError:
            return None
    return socket.inet_ntoa(answer[20:24])


def default_route_address(table: Path = ROUTE_TABLE) -> str | None:
    """This machine's address on its default route, or None (no default route, not Linux)."""
    try:
        iface = default_route_interface(table.read_text())
    except OSError:
        return None
    return interface_address(iface) if iface else None
