#!/usr/bin/env python3
"""Time the local backend against its floor. Prints figures; asserts nothing.

For each size N (default 3, 10, 30):
  floor     start N bare hosts of the host image with the local backend's own code (its
            Docker-in-Docker options), until every one answers `docker info` (bench/common.py),
  up        `classroom up --students N` from nothing (the host image already built),
  up again  the same `up` on the ready classroom (converging: nothing to do),
  status    `classroom status --json`,
  down      `classroom down --yes`,
and once: `classroom --help`. Commands run as a user would run them: a new process each time.

Targets (issue 2, a 2-core machine): up of 30 <= 2 x floor; status of 30 <= 2 s;
down of 30 <= 10 s; classroom --help <= 0.5 s.

    python bench/bench_local.py --sizes 3,10,30

Uses its own CLASSROOM_HOME (a temporary folder), classroom names `t-bench-N-XXXX`, SSH ports
from 40000, and removes only what it made (by its own labels).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, floor_seconds, remove_by_label  # noqa: E402  (REPO also puts the package on sys.path)

import docker  # noqa: E402
import docker.errors  # noqa: E402

from provision.backends.local import host_image_tag  # noqa: E402
TARGETS = {"up_ratio": 2.0, "status": 2.0, "down": 10.0, "help": 0.5}


def classroom_argv() -> list[str]:
    """The `classroom` of this interpreter's environment, else `python -m provision.cli`."""
    script = Path(sys.executable).with_name("classroom")
    return [str(script)] if script.exists() else [sys.executable, "-m", "provision.cli"]


def run(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - started, done


def check(done: subprocess.CompletedProcess, what: str) -> None:
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise SystemExit(f"{what} failed (exit {done.returncode}):\n" + "\n".join(tail))


def ports_free(ports) -> bool:
    for port in ports:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


# --- the classroom ---------------------------------------------------------------------------------
def bench_size(client, image: str, count: int, port_base: int, home: Path, env: dict[str, str]) -> dict:
    run_id = uuid.uuid4().hex[:6]
    floor_base = port_base + 500
    if not ports_free(range(port_base + 1, port_base + count + 1)) or \
            not ports_free(range(floor_base + 1, floor_base + count + 1)):
        raise SystemExit(f"ports {port_base}+ or {floor_base}+ are in use: pass another --port-base")
    figures: dict[str, float] = {"students": count}
    # The shared floor (bench/common.py): the backend's own code starts N bare hosts of the host
    # image with its Docker-in-Docker options, timed until each answers `docker info`.
    figures["floor"] = floor_seconds(count, floor_base, home / "floor")

    name = f"t-bench-{count}-{run_id}"
    folder = home / "files" / name  # not under CLASSROOM_HOME: `down` removes the classroom's folder there
    folder.mkdir(parents=True)
    (folder / "classroom.yaml").write_text(
        f"name: {name}\nstudents: {count}\nswarm:\n  nodes: 0\nlocal:\n  ssh_port_base: {port_base}\nttl: 1h\n")
    cli = classroom_argv()
    try:
        figures["up"], done = run([*cli, "up"], env, folder)
        check(done, f"up of {count}")
        figures["up_again"], done = run([*cli, "up"], env, folder)
        check(done, f"second up of {count}")
        timings = []
        for _ in range(2):
            seconds, done = run([*cli, "status", "--json"], env, folder)
            check(done, "status")
            timings.append(seconds)
        states = {h["state"] for h in json.loads(done.stdout)["hosts"]}
        if states != {"ready"}:
            print(f"  warning: status says {states}", file=sys.stderr)
        figures["status"] = min(timings)
        figures["down"], done = run([*cli, "down", "--yes"], env, folder)
        check(done, f"down of {count}")
    finally:
        subprocess.run([*cli, "down", "--yes"], env=env, cwd=folder, capture_output=True, stdin=subprocess.DEVNULL)
        remove_by_label(name)
    figures["up_ratio"] = figures["up"] / figures["floor"]
    return figures


def help_time(env: dict[str, str], runs: int = 5) -> float:
    return min(run([*classroom_argv(), "--help"], env, REPO)[0] for _ in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="3,10,30", help="classroom sizes, comma-separated (default 3,10,30)")
    parser.add_argument("--port-base", type=int, default=40000, help="SSH ports start here (default 40000)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    client = docker.from_env(timeout=300)
    client.ping()
    home = Path(tempfile.mkdtemp(prefix="classroom-bench-"))
    env = {**os.environ, "CLASSROOM_HOME": str(home / "state"), "PYTHONPATH": str(REPO), "COLUMNS": "120"}

    # The host image first, so that no figure includes its one-time build.
    image = host_image_tag()
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        print(f"building {image} first (once)...", file=sys.stderr)
        folder = home / "files" / "t-bench-image"
        folder.mkdir(parents=True)
        (folder / "classroom.yaml").write_text("name: t-bench-image\nstudents: 1\nswarm:\n  nodes: 0\n"
                                               f"local:\n  ssh_port_base: {args.port_base + 900}\n")
        check(run([*classroom_argv(), "up"], env, folder)[1], "building the host image")
        run([*classroom_argv(), "down", "--yes"], env, folder)

    print(f"classroom bench: {os.cpu_count()} cores, host image {image}, {classroom_argv()[0]}")
    print(f"{'N':>4} {'floor':>7} {'up':>7} {'up/floor':>9} {'up again':>9} {'status':>7} {'down':>7}")
    results = []
    try:
        for count in sizes:
            figures = bench_size(client, image, count, args.port_base, home, env)
            results.append(figures)
            print(f"{count:>4} {figures['floor']:>6.1f}s {figures['up']:>6.1f}s {figures['up_ratio']:>8.2f}x"
                  f" {figures['up_again']:>8.1f}s {figures['status']:>6.2f}s {figures['down']:>6.1f}s",
                  flush=True)
        seconds = help_time(env)
        print(f"classroom --help: {seconds:.2f}s (best of 5)")
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print("targets: up <= 2.0x floor, status <= 2 s and down <= 10 s at 30 students; --help <= 0.5 s")


if __name__ == "__main__":
    main()
