#!/usr/bin/env python3
"""Time `classroom up` of N students with a Swarm cluster of their own (issue 11) against its floor.
Prints figures; asserts nothing.

  floor      N × M bare hosts of the host image, with the local backend's own code, until each
             answers `docker info` (bench/common.py): what no tool can beat on this engine,
  up         `classroom up` of N students × M nodes (per-student, formed) from nothing (the host
             image already built): hosts, accounts, the course's image, N clusters formed,
  up again   the same `up` on the ready classroom (nothing to do),
  status     `classroom status --json`,
  memory     what the hosts hold once idle (`docker stats`): per host, and in all,
  down       `classroom down --yes`.

    python bench/bench_swarm_own.py --students 30 --nodes 3    # the issue's figure
    python bench/bench_swarm_own.py --students 4 --nodes 3     # on a loaded machine

Uses its own CLASSROOM_HOME (a temporary folder), a classroom named `t-bench-own-XXXX`, SSH ports
from 40000, and removes only what it made (by its own labels).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import classroom_cmd, floor_seconds, remove_by_label, row  # noqa: E402  (puts the package on sys.path)

import docker  # noqa: E402

from provision.backends.local import NODE_PORT_STEP, port_free  # noqa: E402


def free_base(students: int, nodes: int) -> int:
    """A port base whose hosts' and nodes' ports are all free (bench range: from 40000)."""
    for base in range(40000, 60000 - NODE_PORT_STEP * nodes, 100):
        ports = [base + NODE_PORT_STEP * k + i for k in range(nodes) for i in range(1, students + 1)]
        if all(port_free("127.0.0.1", port) for port in ports):
            return base
    raise SystemExit("no free port range from 40000")


def idle_memory_mb(client: docker.DockerClient, name: str) -> list[float]:
    """Each host container's memory use, as `docker stats` counts it (page cache left out)."""
    sizes = []
    for container in client.containers.list(filters={"label": f"classroom.name={name}"}):
        stats = container.stats(stream=False)["memory_stats"]
        cache = (stats.get("stats") or {}).get("total_inactive_file") or (stats.get("stats") or {}).get("cache") or 0
        sizes.append((stats.get("usage", 0) - cache) / 2**20)
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--no-floor", action="store_true", help="skip the floor (already measured)")
    args = parser.parse_args()
    hosts = args.students * args.nodes
    home = Path(tempfile.mkdtemp(prefix="bench-own-"))
    name = f"t-bench-own-{uuid.uuid4().hex[:6]}"
    client = docker.from_env()
    try:
        floor = None if args.no_floor else floor_seconds(hosts, free_base(hosts, 1), home / "floor")
        course = home / "course"
        course.mkdir()
        (course / "classroom.yaml").write_text(
            f"name: {name}\nstudents: {args.students}\nswarm:\n  nodes: {args.nodes}\n  mode: per-student\n"
            f"local:\n  ssh_port_base: {free_base(args.students, args.nodes)}\nttl: 2h\n")
        print(f"{args.students} students × {args.nodes} nodes = {hosts} hosts ({args.students} clusters)")
        if floor is not None:
            print(row(f"floor ({hosts} bare hosts)", floor))
        up, _ = classroom_cmd("up", "--yes", cwd=course, home=home)
        print(row("up (from nothing)", up, floor))
        again, _ = classroom_cmd("up", "--yes", cwd=course, home=home)
        print(row("up again (nothing to do)", again, floor))
        status, _ = classroom_cmd("status", "--json", cwd=course, home=home)
        print(row("status", status))
        sizes = idle_memory_mb(client, name)
        if sizes:
            print(f"{'memory, idle':<38} {sum(sizes) / 1024:7.2f} GB  {sum(sizes) / len(sizes):.0f} MB per host "
                  f"(largest {max(sizes):.0f} MB)")
        down, _ = classroom_cmd("down", "--yes", cwd=course, home=home)
        print(row("down", down))
    finally:
        remove_by_label(name)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
