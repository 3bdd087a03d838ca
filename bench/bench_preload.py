"""Benchmark of issues 3 and 10: up with two ~25 MB images and exercises, status, resets. Prints figures.

    python bench/bench_preload.py --students 30

Targets on a 2-core machine (issue 10): `up` of 30 from nothing <= 1.6 x floor, and of a classroom
with accounts only (no images, no exercises) <= 1.3 x floor; a second `up` <= 3 s; `status` of
30 <= 1.5 s; soft reset <= 2 s; hard reset <= 8 s (whole commands). Each `up` from nothing is
compared with a floor taken just before it. Nothing here asserts: these are measurements. Each
figure is printed with the machine's 1-minute load average when it was taken (the machine is shared).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from common import REPO, CpuMeter, classroom_cmd, floor_seconds, row  # noqa: F401  (REPO puts the package on sys.path)


def make_course(folder: Path, students: int, port_base: int, megabytes: int) -> None:
    for name in ("alpha", "beta"):
        image = folder / "images" / name
        image.mkdir(parents=True)
        shutil.copy("/bin/busybox", image / "busybox")
        (image / "payload.bin").write_bytes(os.urandom(megabytes << 20))  # incompressible, like real layers
        (image / "Dockerfile").write_text(
            "FROM scratch\nCOPY busybox /bin/busybox\nCOPY payload.bin /payload.bin\nCMD [\"/bin/busybox\", \"sh\"]\n")
    ex = folder / "exercises" / "web"
    ex.mkdir(parents=True)
    (ex / "Dockerfile").write_text("FROM debian:jessie\nRUN apt-get update && apt-get install -y nginx\n")
    (folder / "exercises" / "README.md").write_text("# Exercises\n" * 200)
    (folder / "classroom.yaml").write_text(
        f"name: bench-preload\nstudents: {students}\nswarm: {{nodes: 0}}\n"
        f"local: {{ssh_port_base: {port_base}}}\nexercises: ./exercises\nimages:\n"
        "  - {name: bench/alpha:1, build: ./images/alpha}\n  - {name: bench/beta:1, build: ./images/beta}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--megabytes", type=int, default=23, help="payload per image (plus 2 MB of busybox)")
    parser.add_argument("--port-base", type=int, default=24000,
                        help="SSH ports from here (default 24000: below the ephemeral range, "
                             "where outgoing connections may hold a port)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-preload-"))
    home = work / "home"
    make_course(work, args.students, args.port_base, args.megabytes)
    n = args.students
    bare = work / "accounts-only"
    bare.mkdir()
    (bare / "classroom.yaml").write_text(f"name: bench-accounts\nstudents: {n}\nswarm: {{nodes: 0}}\n"
                                         f"local: {{ssh_port_base: {args.port_base + 200}}}\n")
    figures = {}

    def timed(label: str, *command: str, cwd: Path = work) -> None:
        load = os.getloadavg()[0]
        with CpuMeter("bench-accounts" if cwd == bare else "bench-preload") as cpu:
            seconds, result = classroom_cmd(*command, cwd=cwd, home=home)
        figures[label] = (seconds, load)
        # As taken (a later failure keeps it), with the command's own stage times and where the
        # CPU went: the remaining time, explained.
        stages = [line.strip() for line in (result.stdout + result.stderr).splitlines() if "done in" in line]
        stages.append(cpu.line())
        print(f"  {label}: {seconds:.2f} s (load {load:.1f})" + "".join(f"\n      {s}" for s in stages), flush=True)

    def floor(label: str) -> None:
        load = os.getloadavg()[0]
        with CpuMeter("-") as cpu:
            figures[label] = (floor_seconds(n, args.port_base + 500, home), load)
        print(f"  {label}: {figures[label][0]:.2f} s (load {load:.1f})\n      machine busy {cpu.busy:.2f} CPU-s "
              "(with the bare hosts' removal)",
              flush=True)

    try:
        # Each `up` from nothing right after a floor of its own: on a shared machine the load
        # moves, and a ratio means something only against a floor taken under the same load.
        floor("floor")
        timed("up", "up")
        timed("again", "up")
        timed("again2", "up")
        timed("status", "status")
        timed("soft", "reset", "student-02")
        timed("soft2", "reset", "student-02")
        timed("hard", "reset", "student-03" if n >= 3 else "student-01", "--hard")
        timed("down", "down", "--yes")
        floor("floor2")
        timed("bare", "up", cwd=bare)
        classroom_cmd("down", "--yes", cwd=bare, home=home)
    finally:
        classroom_cmd("down", "--yes", cwd=work, home=home, check=False)
        classroom_cmd("down", "--yes", cwd=bare, home=home, check=False)
        shutil.rmtree(work, ignore_errors=True)
    print(f"\npreload benchmark: {n} hosts, 2 images of ~{args.megabytes + 2} MB, cores={os.cpu_count()}")
    lines = [("floor", f"floor ({n} bare hosts answer docker info)", None, ""),
             ("up", f"up from nothing ({n} hosts)", figures["floor"][0], "target <= 1.6 x floor"),
             ("floor2", "floor, taken again before the next", None, ""),
             ("bare", f"up, accounts only ({n} hosts)", figures["floor2"][0], "target <= 1.3 x floor (the one above)"),
             ("again", "second up (ready classroom)", None, "target <= 3 s"),
             ("again2", "third up (ready classroom)", None, "target <= 3 s"),
             ("status", f"status ({n} hosts)", None, "target <= 1.5 s"),
             ("soft", "reset (soft, one student)", None, "target <= 2 s (whole command)"),
             ("soft2", "reset (soft, again)", None, "target <= 2 s (whole command)"),
             ("hard", "reset --hard (one student)", None, "target <= 8 s (whole command)"),
             ("down", "down", None, "target <= 10 s")]
    for key, label, against, target in lines:
        seconds, load = figures[key]
        print(row(label, seconds, against, target) + f"  (load {load:.1f})")


if __name__ == "__main__":
    main()
