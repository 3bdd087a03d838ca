"""Shared pieces of the benchmarks: the floor, timing a command, a private classroom home.

The floor is what no provisioning tool can beat on this engine: N bare hosts of the same image,
started with the same options by the same backend code, each answering `docker info`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def classroom_cmd(*args: str, cwd: Path, home: Path, check: bool = True) -> tuple[float, subprocess.CompletedProcess]:
    """Run `classroom ARGS` as a trainer would (a real process); returns (seconds, result)."""
    env = {**os.environ, "CLASSROOM_HOME": str(home), "PYTHONPATH": str(REPO)}
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "provision.cli", *args], cwd=cwd, env=env,
                            capture_output=True, text=True, stdin=subprocess.DEVNULL)
    elapsed = time.monotonic() - started
    if check and result.returncode != 0:
        raise SystemExit(f"classroom {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return elapsed, result


def floor_seconds(count: int, port_base: int, home: Path) -> float:
    """Start `count` bare hosts (host image, same DinD options) until each answers `docker info`."""
    from provision.backends.local import LocalBackend
    from provision.config import ClassroomConfig
    from provision.roster import plan_hosts
    from provision.state import ClassroomState

    config = ClassroomConfig.model_validate({"name": f"bench-floor-{os.getpid()}", "students": count,
                                             "swarm": {"nodes": 0},
                                             "local": {"ssh_port_base": port_base, "public_host": "127.0.0.1"}})
    backend = LocalBackend(config, ClassroomState(config.name, home))
    backend.ensure_host_image()
    try:
        started = time.monotonic()
        machines = backend.ensure(plan_hosts(config), "ssh-ed25519 AAAA bench").machines

        def wait_for_docker(machine) -> None:
            container = backend.client.containers.get(machine.machine_id)
            while container.exec_run(["docker", "info"]).exit_code != 0:
                time.sleep(0.2)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(wait_for_docker, machines))
        return time.monotonic() - started
    finally:
        backend.destroy()


def row(label: str, seconds: float, floor: float | None = None, target: str = "") -> str:
    ratio = f"{seconds / floor:4.2f} x floor" if floor else ""
    return f"{label:<38} {seconds:7.2f} s  {ratio:<14} {target}"


def remove_by_label(name: str) -> None:
    """Last-resort cleanup of a benchmark classroom: the backend's own destroy, by its label."""
    from provision.backends.local import LocalBackend
    from provision.config import ClassroomConfig
    from provision.state import ClassroomState

    config = ClassroomConfig.model_validate({"name": name})
    LocalBackend(config, ClassroomState(name)).destroy()


# --- where the CPU went -----------------------------------------------------------------------------
def _machine_busy() -> float:
    """CPU-seconds the whole machine spent busy since boot (every core, everyone: /proc/stat)."""
    fields = [int(v) for v in open("/proc/stat").readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _container_cpu(container_id: str) -> float | None:
    """CPU-seconds used by one container's processes (its nested engine, sshd, what they ran)."""
    for path, scale in ((f"/sys/fs/cgroup/cpuacct/docker/{container_id}/cpuacct.usage", 1e-9),
                        (f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/cpu.stat", 1e-6)):
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        if path.endswith("cpu.stat"):
            text = next((line.split()[1] for line in text.splitlines() if line.startswith("usage_usec")), "0")
        return int(text) * scale
    return None


class CpuMeter:
    """CPU spent during one command: by the `classroom` process (client), by the classroom's host
    containers (hosts), and by the whole machine (busy: also the outer engine, and on a shared
    machine everyone else). On a quiet machine, busy - client - hosts is the outer engine's share."""

    def __init__(self, classroom: str):
        self.classroom = classroom

    def _hosts(self) -> dict[str, float]:
        import docker

        client = docker.from_env()
        found = {}
        for summary in client.containers.list(all=True, sparse=True, filters={"label": f"classroom.name={self.classroom}"}):
            used = _container_cpu(summary.id)
            if used is not None:
                found[summary.id] = used
        return found

    def __enter__(self) -> CpuMeter:
        import resource

        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        self._client, self._busy, self._before = usage.ru_utime + usage.ru_stime, _machine_busy(), self._hosts()
        return self

    def __exit__(self, *exc) -> None:
        import resource

        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.client = usage.ru_utime + usage.ru_stime - self._client
        self.busy = _machine_busy() - self._busy
        after = self._hosts()
        self.hosts = sum(used - self._before.get(cid, 0.0) for cid, used in after.items())

    def line(self) -> str:
        return (f"CPU-s: client {self.client:.2f}, hosts {self.hosts:.2f}, machine busy {self.busy:.2f} "
                f"(outer engine and anyone else: {max(0.0, self.busy - self.client - self.hosts):.2f})")
