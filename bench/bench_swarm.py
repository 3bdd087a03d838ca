#!/usr/bin/env python3
"""Time what Swarm formation adds to `up`. Prints figures; asserts nothing.

For each size M (default 3 and 5), in a fresh classroom (1 student, M Swarm nodes):
  hosts      `up` of the classroom (hosts, accounts), the part that exists without Swarm,
  form       `converge_swarm` on the fresh nodes: init on swarm-1, tokens, joins, all Ready,
  again      `converge_swarm` on the formed cluster (nothing to do: what every later `up` pays),
  status     `swarm_status` (what `classroom status` adds),
  replace    `converge_swarm` after swarm-M (a worker) was replaced (`reset swarm-M --hard`).

Target (issue 4): form <= 5 s for 3 nodes.

    python bench/bench_swarm.py --sizes 3,5 [--managers 1]

Uses its own CLASSROOM_HOME (a temporary folder), classroom names `sw-bench-M-XXXX`, SSH ports
from 45000, and removes only what it made (by its own labels).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import remove_by_label  # noqa: E402  (also puts the package on sys.path)

from provision.backends.local import SWARM_PORT_OFFSET  # noqa: E402
from provision.commands import Classroom, down, up  # noqa: E402
from provision.config import load_config  # noqa: E402
from provision.provisioning import provision_host  # noqa: E402
from provision.swarm import converge_swarm, swarm_status  # noqa: E402

TARGET_FORM_3 = 5.0


def free_base(count: int, low: int = 45000, high: int = 60000) -> int:
    for base in range(low, high - count, 200):
        ok = True
        for port in range(base + 1, base + count + 1):
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise SystemExit(f"no {count} free ports between {low} and {high}")


def bench(nodes: int, managers: int, folder: Path) -> dict[str, float]:
    name = f"sw-bench-{nodes}-{uuid.uuid4().hex[:6]}"
    path = folder / f"{name}.yaml"
    path.write_text(f"name: {name}\nstudents: 1\nswarm:\n  nodes: {nodes}\n  managers: {managers}\n  mode: shared\n"
                    f"local:\n  ssh_port_base: {free_base(SWARM_PORT_OFFSET + nodes + 1)}\nttl: 1h\n")
    room = Classroom.open(load_config(path))
    figures: dict[str, float] = {}
    try:
        started = time.perf_counter()
        result = up(room)
        figures["hosts"] = time.perf_counter() - started
        if result.failed:
            raise SystemExit(f"up failed: {[(h.name, h.error) for h in result.failed]}")
        key = room.state.admin_key()

        def timed(label: str, work):
            started = time.perf_counter()
            outcome = work()
            figures[label] = time.perf_counter() - started
            return outcome

        # `up` forms the cluster itself: the time it spent on that is what Swarm adds to `up`.
        report = result.swarm
        if report is None or not report.ok:
            raise SystemExit(f"formation failed: {report and [(n.name, n.error) for n in report.failed]}")
        figures["form"] = report.seconds
        timed("again", lambda: converge_swarm(room.backend.machines(), room.admin_access(), managers))
        status = timed("status", lambda: swarm_status(room.backend.machines(), room.admin_access()))
        if status.ready_nodes != nodes:
            raise SystemExit(f"status: {status.summary}")
        spec = next(h for h in room.planned_hosts() if h.name == f"swarm-{nodes}")
        machine = room.backend.replace(spec, key.public_line)
        provision_host(machine, room.state.password_hashes(room.state.known_passwords()), room.admin_access())
        report = timed("replace", lambda: converge_swarm(room.backend.machines(), room.admin_access(), managers))
        if not report.ok:
            raise SystemExit(f"rejoin failed: {[(n.name, n.error) for n in report.failed]}")
        return figures
    finally:
        try:
            down(room)
        finally:
            remove_by_label(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="3,5", help="Swarm node counts, comma-separated")
    parser.add_argument("--managers", type=int, default=1, help="managers (odd, at most the node count)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-swarm-"))
    os.environ["CLASSROOM_HOME"] = str(folder / "home")
    try:
        print(f"{'nodes':>5} {'hosts (up)':>11} {'form':>7} {'again':>7} {'status':>7} {'replace':>8}")
        for size in [int(s) for s in args.sizes.split(",") if s.strip()]:
            f = bench(size, min(args.managers, size), folder)
            print(f"{size:>5} {f['hosts']:>10.2f}s {f['form']:>6.2f}s {f['again']:>6.2f}s "
                  f"{f['status']:>6.2f}s {f['replace']:>7.2f}s", flush=True)
            if size == 3:
                verdict = "ok" if f["form"] <= TARGET_FORM_3 else "OVER"
                print(f"      formation of 3 nodes: {f['form']:.2f} s (target <= {TARGET_FORM_3:.0f} s: {verdict})")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
