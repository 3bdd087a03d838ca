"""Soft reset of one student's host, as the admin over SSH: back to the course, nothing else.

Only the named host is touched; the student's password is kept. What the course provides
(images by ID, ~/exercises) is restored by the same provisioning code that `up` runs.
"""

from __future__ import annotations

import shlex

from fabric import Connection

from .preload import IMAGES_FILE
from .ssh import check

# $1: the student. Leaves any Swarm; removes containers, networks, volumes, images that are not
# the course's (by name and ID), build cache; ends the student's processes; fresh home folder.
SOFT_RESET_SCRIPT = r"""
set -u
U=$1
docker swarm leave --force >/dev/null 2>&1 || true
ids=$(docker ps -aq); [ -z "$ids" ] || docker rm -f $ids >/dev/null
docker network prune -f >/dev/null
vols=$(docker volume ls -q); [ -z "$vols" ] || docker volume rm -f $vols >/dev/null
touch /tmp/.classroom-keep; [ -f __IMAGES__ ] && cp __IMAGES__ /tmp/.classroom-keep
docker image ls --no-trunc --format '{{.Repository}}:{{.Tag}} {{.ID}}' | while read -r ref id; do
  if grep -qx "$ref $id" /tmp/.classroom-keep; then continue; fi
  if [ "$ref" = "<none>:<none>" ]; then
    awk '{print $2}' /tmp/.classroom-keep | grep -qx "$id" || docker rmi -f "$id" >/dev/null 2>&1
  else
    docker rmi -f "$ref" >/dev/null 2>&1
  fi
done
rm -f /tmp/.classroom-keep
docker builder prune -af >/dev/null 2>&1 || true
pkill -KILL -u "$U" 2>/dev/null; sleep 0.2; pkill -KILL -u "$U" 2>/dev/null
H=$(getent passwd "$U" | cut -d: -f6)
case "$H" in /home/?*) ;; *) echo "unexpected home folder for $U: $H" >&2; exit 1;; esac
rm -rf "$H" && cp -rT /etc/skel "$H" && chown -R "$U:$U" "$H" && chmod 755 "$H"
find /tmp /var/tmp -xdev -user "$U" -delete 2>/dev/null || true
crontab -r -u "$U" 2>/dev/null || true
echo done
""".replace("__IMAGES__", IMAGES_FILE)


def wipe_student(connection: Connection, user: str) -> None:
    check(connection, f"sh -c {shlex.quote(SOFT_RESET_SCRIPT)} reset {shlex.quote(user)}",
          what="resetting", timeout=300)


# After a reset: nothing of the student's left on the engine.
LEFT_SCRIPT = "echo $(docker ps -aq | wc -l) $(docker volume ls -q | wc -l) " \
              "$(docker network ls -q --filter type=custom | wc -l)"


def leftovers_after_reset(connection: Connection) -> tuple[int, int, int]:
    containers, volumes, networks = (int(x) for x in check(connection, LEFT_SCRIPT, what="verifying").split())
    return containers, volumes, networks
