#!/usr/bin/env python3
"""`classroom web` under a class's load. Prints figures; asserts nothing.

N students (default 30) each sign in and open a terminal at once, while a trainer's dashboard
asks /api/status and /api/progress every 5 s, as the page does. Measured:
  first prompt    from opening the WebSocket to the shell's prompt on screen, per student,
  echo            from sending one key to seeing it echoed, 10 keys per student, all at once,
  dashboard       how long /api/status and /api/progress take meanwhile,
  memory          the server's resident memory before and with the N terminals open.

    python bench/bench_web.py --students 30

Uses its own CLASSROOM_HOME (a temporary folder), a classroom named `t-bench-web-XXXX`, SSH ports
from 40000, and removes only what it made.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, classroom_cmd, remove_by_label  # noqa: E402

import httpx  # noqa: E402
from tornado.httpclient import HTTPRequest  # noqa: E402
from tornado.websocket import websocket_connect  # noqa: E402

from provision.untrusted import clean  # noqa: E402


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def figures(values: list[float]) -> str:
    values = sorted(values)
    if not values:
        return "no data"
    p95 = values[min(len(values) - 1, int(len(values) * 0.95))]
    return (f"median {statistics.median(values) * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms   "
            f"max {values[-1] * 1000:7.1f} ms   (n={len(values)})")


class Terminal:
    def __init__(self, base: str, cookie: str):
        self.base, self.cookie = base, cookie
        self.socket = None
        self.screen = ""

    async def open(self) -> float:
        started = time.monotonic()
        request = HTTPRequest(self.base.replace("http", "ws") + "/api/terminal?cols=100&rows=30",
                              headers={"Cookie": f"classroom_session={self.cookie}"}, request_timeout=300)
        self.socket = await websocket_connect(request)
        await self.until(lambda: clean(self.screen).rstrip().endswith("$"))
        return time.monotonic() - started

    async def until(self, seen, timeout: float = 300) -> None:
        while not seen():
            message = await asyncio.wait_for(self.socket.read_message(), timeout)
            if message is None:
                raise RuntimeError("the terminal closed")
            self.screen += message.decode(errors="replace") if isinstance(message, bytes) else message

    async def echo(self, key: str) -> float:
        self.screen = ""
        started = time.monotonic()
        self.socket.write_message(json.dumps({"data": key}))
        await self.until(lambda: key in self.screen)
        return time.monotonic() - started


async def dashboard(base: str, token: str, stop: asyncio.Event, times: dict[str, list[float]]) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=300, headers={"Authorization": f"Bearer {token}"}) as client:
        while not stop.is_set():
            for path in ("/api/status", "/api/progress"):
                started = time.monotonic()
                answer = await client.get(path)
                answer.raise_for_status()
                times[path].append(time.monotonic() - started)
            try:
                await asyncio.wait_for(stop.wait(), 5)
            except asyncio.TimeoutError:
                pass


async def load(base: str, token: str, cookies: list[str], pid: int) -> dict:
    times: dict[str, list[float]] = {"/api/status": [], "/api/progress": []}
    stop = asyncio.Event()
    trainer = asyncio.create_task(dashboard(base, token, stop, times))
    terminals = [Terminal(base, cookie) for cookie in cookies]
    prompts = await asyncio.gather(*(t.open() for t in terminals))
    memory_open = rss_mb(pid)

    async def keys(terminal: Terminal) -> list[float]:
        found = []
        for letter in "abcdefghij":
            found.append(await terminal.echo(letter))
        terminal.socket.write_message(json.dumps({"data": "\x15"}))  # ^U: the line is empty again (no echo)
        return found

    echoes = [t for found in await asyncio.gather(*(keys(t) for t in terminals)) for t in found]
    await asyncio.sleep(6)  # one more dashboard round with every terminal open
    stop.set()
    await trainer
    for terminal in terminals:
        terminal.socket.close()
    return {"prompts": prompts, "echoes": echoes, "memory_open": memory_open, "dashboard": times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=30)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-web-"))
    home = work / "home"
    name = f"t-bench-web-{uuid.uuid4().hex[:6]}"
    (work / "checks" / "01-hello").mkdir(parents=True)
    (work / "checks" / "01-hello" / "check.sh").write_text('test -f "$HOME/done.txt"\n')
    (work / "classroom.yaml").write_text(f"name: {name}\nstudents: {args.students}\nswarm:\n  nodes: 0\n"
                                         f"local:\n  ssh_port_base: {40000 + (os.getpid() % 500) * 10}\n"
                                         "checks: ./checks\nttl: 2h\n")
    server = None
    try:
        seconds, _ = classroom_cmd("up", cwd=work, home=home)
        print(f"classroom up --students {args.students}: {seconds:.1f} s")
        roster = json.loads(classroom_cmd("roster", "--format", "json", cwd=work, home=home)[1].stdout)
        port = free_port()
        env = {**os.environ, "CLASSROOM_HOME": str(home), "PYTHONPATH": str(REPO)}
        server = subprocess.Popen([sys.executable, "-m", "provision.cli", "web", "--listen", f"127.0.0.1:{port}"],
                                  cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []
        while not any(line.startswith("Ctrl-C") for line in lines):
            line = server.stdout.readline()
            if not line:
                raise SystemExit("classroom web ended:\n" + "".join(lines))
            lines.append(line)
        token = next(line for line in lines if line.startswith("Trainer:")).split("token=", 1)[1].strip()
        base = f"http://127.0.0.1:{port}"
        memory_idle = rss_mb(server.pid)
        cookies = []
        for row in roster:
            with httpx.Client(base_url=base, timeout=60) as client:
                client.post("/api/login", json={"student": row["student"], "password": row["password"]}).raise_for_status()
                cookies.append(client.cookies["classroom_session"])
        result = asyncio.run(load(base, token, cookies, server.pid))
        print(f"students with an open terminal: {len(cookies)} (machine: {os.cpu_count()} cores, "
              f"load {os.getloadavg()[0]:.1f})")
        print(f"time to first prompt   {figures(result['prompts'])}")
        print(f"keystroke echo         {figures(result['echoes'])}")
        for path, values in result["dashboard"].items():
            print(f"{path:<22} {figures(values)}")
        print(f"server memory          {memory_idle:.0f} MB idle, {result['memory_open']:.0f} MB with "
              f"{len(cookies)} terminals")
    finally:
        if server is not None and server.poll() is None:
            server.send_signal(signal.SIGINT)
            server.wait(30)
        classroom_cmd("down", "--yes", cwd=work, home=home, check=False)
        remove_by_label(name)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
