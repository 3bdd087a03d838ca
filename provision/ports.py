"""What students publish, and where they reach it from their laptop.

The course's `ports:` (config.py) are the ports students publish on their own host (`docker run
-p 8080:80`). On aws each host opens them on its own address (the security group). On the local
backend every host is a container on one machine, so each student gets a block of public ports
on `local.public_host`, one per course port, mapped to that port on their host:

    student N's k-th course port  ->  ssh_port_base + published_offset(M) + (N - 1) * K + k + 1

with K the number of course ports (k from 0, in ascending order) and M the nodes of each
student's own Swarm cluster (1 without one). SSH ports are below: students from ssh_port_base + 1,
shared Swarm nodes from + 101, and node J of a student's own cluster at their port + 1000 × (J - 1)
(NODE_PORT_STEP), so the blocks never meet them, and no two students' blocks overlap. Pure
functions: the backend creates the mappings, the roster prints them.
"""

from __future__ import annotations

# A student's own node J listens on their host's port + 1000 × (J - 1): with the base 2200,
# student-07 is 2207, student-07-node-2 is 3207, student-07-node-3 is 4207.
NODE_PORT_STEP = 1000
PUBLISHED_OFFSET = NODE_PORT_STEP  # without own nodes, the first public port is ssh_port_base + 1001
# Each published port costs one docker-proxy process on this machine (~3.3 MB): 30 students
# with the default 13 ports is 390 of them. More than this per student is surely a mistake.
MAX_LOCAL_PORTS = 100


def course_ports(ranges: list[tuple[int, int]]) -> list[int]:
    """[(80, 80), (8000, 8002)] -> [80, 8000, 8001, 8002]."""
    return [port for low, high in sorted(ranges) for port in range(low, high + 1)]


def published_offset(own_nodes: int = 1) -> int:
    """Where the public ports start past ssh_port_base: after the SSH ports of every student's
    own Swarm nodes (`own_nodes` per cluster, their host included; 1 without)."""
    return NODE_PORT_STEP * max(own_nodes, 1)


def local_port_map(ssh_port_base: int, ranges: list[tuple[int, int]], index: int,
                   own_nodes: int = 1) -> list[tuple[int, int]]:
    """(port on the host, public port) for student number `index` (1-based)."""
    ports = course_ports(ranges)
    first = ssh_port_base + published_offset(own_nodes) + (index - 1) * len(ports) + 1
    return [(port, first + k) for k, port in enumerate(ports)]


def local_ports_problem(ssh_port_base: int, ranges: list[tuple[int, int]], students: int,
                        own_nodes: int = 1) -> str | None:
    """Why these ports cannot be given to `students` students on the local backend, or None."""
    highest_node = ssh_port_base + students + NODE_PORT_STEP * (own_nodes - 1)
    if highest_node > 65535:
        return (f"local.ssh_port_base: {ssh_port_base} leaves no room for the students' Swarm nodes (port "
                f"{highest_node} would be needed): lower it")
    count = len(course_ports(ranges))
    if count > MAX_LOCAL_PORTS:
        return (f"ports: {count} ports per student, at most {MAX_LOCAL_PORTS} on the local backend (each costs a "
                "proxy process on this machine): list only the ports the course publishes")
    if not count:
        return None
    last = local_port_map(ssh_port_base, ranges, students, own_nodes)[-1][1]
    if last > 65535:
        return (f"ports: {students} students x {count} ports from local.ssh_port_base {ssh_port_base} would end at "
                f"public port {last}, past 65535: lower local.ssh_port_base or list fewer ports")
    return None


def url(address: str, port: int) -> str:
    """`http://ADDRESS:PORT` (an IPv6 address in brackets)."""
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}"
