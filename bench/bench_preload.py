"""Benchmark of issue 3: preload of two ~25 MB images and exercises, resets. Prints figures.

    python bench/bench_preload.py --students 30

Targets on a 2-core machine: `up` of 30 from nothing <= 2.5 x floor; a second `up` <= 5 s;
soft reset <= 3 s; hard reset <= 15 s. Nothing here asserts: these are measurements.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from common import REPO, classroom_cmd, floor_seconds, row  # noqa: F401  (REPO puts the package on sys.path)


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
    parser.add_argument("--port-base", type=int, default=41000)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-preload-"))
    home = work / "home"
    make_course(work, args.students, args.port_base, args.megabytes)
    n = args.students
    try:
        floor = floor_seconds(n, args.port_base + 500, home)
        up, result = classroom_cmd("up", cwd=work, home=home)
        again, _ = classroom_cmd("up", cwd=work, home=home)
        status, _ = classroom_cmd("status", cwd=work, home=home)
        soft, _ = classroom_cmd("reset", "student-02", cwd=work, home=home)
        hard, _ = classroom_cmd("reset", "student-03" if n >= 3 else "student-01", "--hard", cwd=work, home=home)
        down, _ = classroom_cmd("down", "--yes", cwd=work, home=home)
    finally:
        classroom_cmd("down", "--yes", cwd=work, home=home, check=False)
        shutil.rmtree(work, ignore_errors=True)
    print(f"\npreload benchmark: {n} hosts, 2 images of ~{args.megabytes + 2} MB, cores={os.cpu_count()}")
    print(row(f"floor ({n} bare hosts answer docker info)", floor))
    print(row(f"up from nothing ({n} hosts)", up, floor, "target <= 2.5 x floor"))
    print(row("second up (ready classroom)", again, None, "target <= 5 s"))
    print(row("status", status, None, "target <= 2 s"))
    print(row("reset (soft, one student)", soft, None, "target <= 3 s (whole command)"))
    print(row("reset --hard (one student)", hard, None, "target <= 15 s (whole command)"))
    print(row("down", down, None, "target <= 10 s"))


if __name__ == "__main__":
    main()
