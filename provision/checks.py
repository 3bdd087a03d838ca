"""Live checks of hosts, as a student would see them: log in with the password, use Docker,
find the course's images (by ID) and their exercises. One SSH session per host, in parallel."""

from __future__ import annotations

from typing import TYPE_CHECKING
from collections.abc import Callable, Mapping

import paramiko

from .backends.base import Machine
from .errors import last_line
from .exercises import CHECK_SCRIPT as EXERCISES_CHECK
from .preload import IMAGES_FILE
from .ssh import HostKeyMismatch, in_parallel, open_with_retry, run, student_connection

if TYPE_CHECKING:
    from .commands import Classroom

CHECK_CONNECT_SECONDS = 8.0

# One `docker image ls` both proves the engine answers (the `docker` check) and lists the
# images to compare: each `docker` run costs ~40 ms of a host's CPU, times 30 hosts.
IMAGES_CHECK = rf"""
if have=$(docker image ls --no-trunc --format '{{{{.Repository}}}}:{{{{.Tag}}}} {{{{.ID}}}}' 2>/dev/null); then
  echo "docker ok"
else
  echo "docker -"
fi
if [ -f {IMAGES_FILE} ]; then
  bad=0
  while read -r name id; do
    if [ "$id" = "-" ]; then printf '%s\n' "$have" | grep -q "^$name " || bad=$((bad + 1))
    else printf '%s\n' "$have" | grep -qxF "$name $id" || bad=$((bad + 1)); fi
  done < {IMAGES_FILE}
  echo "images 1 $bad"
else
  echo "images 0 0"
fi
"""
DOCKER_CHECK = "docker info --format 'docker {{.ServerVersion}}' 2>/dev/null || echo 'docker -'"


def check_user(machine: Machine, passwords: dict[str, str]) -> str | None:
    """Whom to log in as: the host's student; on a Swarm node, the first student."""
    if machine.student:
        return machine.student if machine.student in passwords else None
    return min(passwords) if passwords else None


def check_host(machine: Machine, passwords: dict[str, str], host_keys: Mapping[str, str], *,
               images: bool = False, exercises: bool = False) -> tuple[dict[str, bool], str | None]:
    checks = {"ssh": False, "docker": False}
    if images:
        checks["images"] = False
    exercises = exercises and machine.role == "student"
    if exercises:
        checks["exercises"] = False
    user = check_user(machine, passwords)
    if user is None:
        return checks, "no student account known"
    if machine.name not in host_keys:
        return checks, "no host key known for it: `classroom up` gives it one"
    connection = student_connection(machine, user, passwords[user], host_keys[machine.name])
    try:
        open_with_retry(connection, CHECK_CONNECT_SECONDS)
    except HostKeyMismatch as exc:
        return checks, exc.message
    except paramiko.AuthenticationException:
        return checks, f"{user}'s password is refused"
    except Exception as exc:  # any failure to connect is a failed check, reported per host
        return checks, last_line(exc)
    script = "id -un\n" + (IMAGES_CHECK if images else DOCKER_CHECK)
    if exercises:
        script += "\n" + EXERCISES_CHECK
    try:
        result = run(connection, script, timeout=60)
    finally:
        connection.close()
    lines = result.stdout.splitlines()
    details = []
    checks["ssh"] = bool(lines) and lines[0].strip() == user
    fields = {line.split()[0]: line.split()[1:] for line in lines[1:] if line.split()}
    checks["docker"] = fields.get("docker", ["-"])[0] != "-"
    if not checks["docker"]:
        details.append("docker does not answer")
    if images:
        present, bad = (fields.get("images") or ["0", "0"])[:2]
        checks["images"] = present == "1" and bad == "0" and checks["docker"]
        if present != "1":
            details.append("images never preloaded")
        elif bad != "0":
            details.append(f"{bad} image(s) missing")
    if exercises:
        present, changed, missing = (fields.get("exercises") or ["0", "0", "0"])[:3]
        checks["exercises"] = present == "1"
        if present != "1":
            details.append("no ~/exercises")
        elif changed != "0" or missing != "0":
            details.append(f"exercises: {changed} changed, {missing} deleted by the student")
    return checks, "; ".join(details) or None


def check_hosts(room: Classroom, machines: list[Machine], passwords: dict[str, str],
                on_done: Callable[[Machine], None] | None = None,
                ) -> dict[str, tuple[dict[str, bool], str | None]]:
    images = bool(room.config.images)
    exercises = room.config.exercises is not None
    host_keys = room.state.host_keys()
    outcomes = in_parallel(
        machines, lambda m: check_host(m, passwords, host_keys, images=images, exercises=exercises),
        limit=max(len(machines), 1),  # one short session each: status of 30 hosts stays under 2 s
        on_done=(lambda m, _r, _e: on_done(m)) if on_done else None,
    )
    results = {}
    for machine, outcome, error in outcomes:
        results[machine.name] = outcome if outcome is not None else ({"ssh": False, "docker": False},
                                                                     last_line(error))
    return results
