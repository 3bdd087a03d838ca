"""What students publish, and where they reach it from their laptop.

The course's `ports:` (config.py) are the ports students publish on their own host (`docker run
-p 8080:80`). On aws each host opens them on its own address (the security group). On the local
backend every host is a container on one machine, so each student gets a block of public ports
on `local.public_host`, one per course port, mapped to that port on their host:

    student N's k-th course port  ->  ssh_port_base + PUBLISHED_OFFSET + (N - 1) * K + k + 1

with K the number of course ports (k from 0, in ascending order). SSH ports are ssh_port_base + 1
to ssh_port_base + 109 (students, then Swarm nodes at +101), so the blocks never meet them, and
no two students' blocks overlap. Pure functions: the backend creates the mappings, the roster
prints them.
"""

from __future__ import annotations

PUBLISHED_OFFSET = 1000  # the first student's first public port is ssh_port_base + 1001
# Each published port costs one docker-proxy process on this machine (~3.3 MB): 30 students
# with the default 13 ports is 390 of them. More than this per student is surely a mistake.
MAX_LOCAL_PORTS = 100


def course_ports(ranges: list[tuple[int, int]]) -> list[int]:
    """[(80, 80), (8000, 8002)] -> [80, 8000, 8001, 8002]."""
    return [port for low, high in sorted(ranges) for port in range(low, high + 1)]


def local_port_map(ssh_port_base: int, ranges: list[tuple[int, int]], index: int) -> list[tuple[int, int]]:
    """(port on the host, public port) for student number `index` (1-based)."""
    ports = course_ports(ranges)
    first = ssh_port_base + PUBLISHED_OFFSET + (index - 1) * len(ports) + 1
    return [(port, first + k) for k, port in enumerate(ports)]


def local_ports_problem(ssh_port_base: int, ranges: list[tuple[int, int]], students: int) -> str | None:
    """Why these ports cannot be given to `students` students on the local backend, or None."""
    count = len(course_ports(ranges))
    if count > MAX_LOCAL_PORTS:
        return (f"ports: {count} ports per student, at most {MAX_LOCAL_PORTS} on the local backend (each costs a "
                "proxy process on this machine): list only the ports the course publishes")
    if not count:
        return None
    last = local_port_map(ssh_port_base, ranges, students)[-1][1]
    if last > 65535:
        return (f"ports: {students} students x {count} ports from local.ssh_port_base {ssh_port_base} would end at "
                f"public port {last}, past 65535: lower local.ssh_port_base or list fewer ports")
    return None


def url(address: str, port: int) -> str:
    """`http://ADDRESS:PORT` (an IPv6 address in brackets)."""
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}"
