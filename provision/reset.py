"""Soft reset of one student's host, as the admin over SSH: back to the course, nothing else.

Only the named host is touched; the student's password is kept. What the course provides
(images by ID, ~/exercises) is restored by the same provisioning code that `up` runs.

A reset is honest: the host's engine is started first (a wipe against no engine removes
nothing), any Docker error fails it, and what is left afterwards is looked for, not assumed.
"""

from __future__ import annotations

import shlex

from fabric import Connection

from .preload import IMAGES_FILE
from .ssh import RemoteError, check

# Shell shared by the wipe and the verification: which images are the course's. The course's
# images are "REF ID" lines in IMAGES_FILE; an untagged image (`<none>`) is kept when its ID is one
# of them. `course_image REF ID` succeeds for those.
COURSE_IMAGES = r"""
K=__IMAGES__; [ -f "$K" ] || K=/dev/null
course_image() {
  grep -qxF "$1 $2" "$K" && return 0
  case "$1" in *:"<none>") awk -v i="$2" '$2 == i { found = 1 } END { exit !found }' "$K" ;; *) return 1 ;; esac
}
""".replace("__IMAGES__", IMAGES_FILE)

IMAGE_LIST = "docker image ls --no-trunc --format '{{.Repository}}:{{.Tag}} {{.ID}}'"

# $1: the student. Leaves any Swarm; removes containers, networks, volumes, images that are not
# the course's (by name and ID), build cache; ends the student's processes; fresh home folder.
# Every Docker failure ends it with the engine's message. Images are removed in up to two rounds:
# an image can only go once the images built on it are gone.
SOFT_RESET_SCRIPT = r"""
set -eu
U=$1
docker info >/dev/null 2>&1 || { echo "the host's Docker engine does not answer" >&2; exit 1; }
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
__COURSE_IMAGES__
if [ "$(docker info --format '{{.Swarm.LocalNodeState}}')" != inactive ]; then docker swarm leave --force >/dev/null; fi
ids=$(docker ps -aq); [ -z "$ids" ] || docker rm -f $ids >/dev/null
docker network prune -f >/dev/null
vols=$(docker volume ls -q); [ -z "$vols" ] || docker volume rm -f $vols >/dev/null
remove_images() {
  __IMAGE_LIST__ > "$W/images" || return 1
  failed=0
  while read -r ref id; do
    course_image "$ref" "$id" && continue
    case "$ref" in *:"<none>") target=$id ;; *) target=$ref ;; esac
    docker rmi -f "$target" >/dev/null 2>"$W/error" || failed=1
  done < "$W/images"
  return $failed
}
remove_images || remove_images || { cat "$W/error" >&2; exit 1; }
docker builder prune -af >/dev/null
pkill -KILL -u "$U" 2>/dev/null || true; sleep 0.2; pkill -KILL -u "$U" 2>/dev/null || true
H=$(getent passwd "$U" | cut -d: -f6)
case "$H" in /home/?*) ;; *) echo "unexpected home folder for $U: $H" >&2; exit 1;; esac
rm -rf "$H" && cp -rT /etc/skel "$H" && chown -R "$U:$U" "$H" && chmod 755 "$H"
find /tmp /var/tmp -xdev -user "$U" -delete 2>/dev/null || true
crontab -r -u "$U" 2>/dev/null || true
echo done
""".replace("__COURSE_IMAGES__", COURSE_IMAGES).replace("__IMAGE_LIST__", IMAGE_LIST)

# After a reset: one "KIND NAME" line for anything of the student's still on the engine.
LEFT_SCRIPT = r"""
set -eu
__COURSE_IMAGES__
out=$(docker ps -aq); [ -z "$out" ] || printf 'container %s\n' $out
out=$(docker volume ls -q); [ -z "$out" ] || printf 'volume %s\n' $out
out=$(docker network ls -q --filter type=custom); [ -z "$out" ] || printf 'network %s\n' $out
out=$(__IMAGE_LIST__)
printf '%s\n' "$out" | while read -r ref id; do
  [ -n "$ref" ] || continue
  course_image "$ref" "$id" || printf 'image %s\n' "$ref"
done
swarm=$(docker info --format '{{.Swarm.LocalNodeState}}'); [ "$swarm" = inactive ] || echo "swarm $swarm"
""".replace("__COURSE_IMAGES__", COURSE_IMAGES).replace("__IMAGE_LIST__", IMAGE_LIST)


def wipe_student(connection: Connection, user: str) -> list[str]:
    """Start the engine if it stopped, wipe, verify; returns what had to be done besides the wipe.
    A RemoteError when the wipe fails or leaves anything: that host is not clean."""
    from .provisioning import ensure_engine

    changes = ["docker engine started"] if ensure_engine(connection) else []
    check(connection, f"sh -c {shlex.quote(SOFT_RESET_SCRIPT)} reset {shlex.quote(user)}",
          what="resetting", timeout=300)
    left = leftovers_after_reset(connection)
    if left:
        raise RemoteError(f"not clean: the reset left {describe_leftovers(left)}")
    return changes


def leftovers_after_reset(connection: Connection) -> list[tuple[str, str]]:
    """(kind, name) of every container, volume, custom network, image that is not the course's,
    and Swarm membership still on the host's engine."""
    lines = check(connection, f"sh -c {shlex.quote(LEFT_SCRIPT)}", what="verifying the reset").splitlines()
    return [(kind, name) for kind, _, name in (line.partition(" ") for line in lines) if kind]


def describe_leftovers(left: list[tuple[str, str]], shown: int = 3) -> str:
    """`2 containers, 1 volume (data), 1 image (extra:2)`: counts, and a few names."""
    kinds: dict[str, list[str]] = {}
    for kind, name in left:
        kinds.setdefault(kind, []).append(name)
    parts = []
    for kind, names in kinds.items():
        label = kind if len(names) == 1 else f"{kind}s"
        listed = ", ".join(names[:shown]) + (", …" if len(names) > shown else "")
        parts.append(f"{len(names)} {label} ({listed})")
    return ", ".join(parts)
