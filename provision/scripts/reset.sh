# Run as root. $1 what: `wipe`, `leftovers` or `clean-swarm`; $2 the file where the host records
# the course's images ("REF ID" lines); $3 (wipe) the student; then flags, in any order:
# `keep-swarm` (wipe, leftovers) on a node of the student's own cluster, which stays formed (same
# cluster ID); `keep-home` (wipe): the home folder, its files and ~/exercises stay.
#
# wipe: leaves any Swarm (unless keep-swarm); removes containers, networks, volumes, images that
# are not the course's (by name and ID), build cache; ends the student's processes; fresh home
# folder (unless keep-home). Every Docker failure ends it with the engine's message. Images are
# removed in up to two rounds: an image can only go once the images built on it are gone.
# leftovers: one "KIND NAME" line for anything of the student's still on the engine.
# clean-swarm: on a manager, removes every service (so stacks), secret and config of the cluster;
# prints `cleaned`, or `not a manager` where there is nothing to do from this node.
set -eu
WHAT=$1; K=$2
KEEP=; KEEP_HOME=
for flag in "$@"; do
  case "$flag" in keep-swarm) KEEP=keep-swarm ;; keep-home) KEEP_HOME=keep-home ;; esac
done
[ -f "$K" ] || K=/dev/null

# Whether `REF ID` is one of the course's images; an untagged image (`<none>`) is kept when its
# ID is one of them.
course_image() {
  grep -qxF "$1 $2" "$K" && return 0
  case "$1" in *:"<none>") awk -v i="$2" '$2 == i { found = 1 } END { exit !found }' "$K" ;; *) return 1 ;; esac
}
image_list() { docker image ls --no-trunc --format '{{.Repository}}:{{.Tag}} {{.ID}}'; }
swarm_state() { docker info --format '{{.Swarm.LocalNodeState}}'; }
is_manager() { [ "$(docker info --format '{{.Swarm.ControlAvailable}}')" = true ]; }
# The networks a Swarm member keeps for itself: not the student's.
swarm_network() { [ "$KEEP" = keep-swarm ] && { [ "$1" = ingress ] || [ "$1" = docker_gwbridge ]; }; }

leftovers() {
  docker ps -a --format 'container {{.ID}}'
  docker volume ls --format 'volume {{.Name}}'
  docker network ls --filter type=custom --format '{{.ID}} {{.Name}}' | while read -r id name; do
    swarm_network "$name" || printf 'network %s\n' "$id"
  done
  out=$(image_list)
  printf '%s\n' "$out" | while read -r ref id; do
    [ -n "$ref" ] || continue
    course_image "$ref" "$id" || printf 'image %s\n' "$ref"
  done
  if [ "$KEEP" = keep-swarm ]; then
    if is_manager; then
      docker service ls --format 'service {{.Name}}'
      docker secret ls --format 'secret {{.Name}}'
      docker config ls --format 'config {{.Name}}'
    fi
  else
    swarm=$(swarm_state); [ "$swarm" = inactive ] || echo "swarm $swarm"
  fi
}

remove_all() {
  ids=$(docker "$1" ls -q)
  # shellcheck disable=SC2086 # IDs, one word each: split on purpose
  [ -z "$ids" ] || docker "$1" rm $ids >/dev/null
}

clean_swarm() {
  is_manager || { echo "not a manager"; return; }
  remove_all service  # first: secrets and configs in use by a service cannot go
  remove_all secret
  remove_all config
  echo "cleaned"
}

remove_images() {
  image_list > "$W/images" || return 1
  failed=0
  while read -r ref id; do
    course_image "$ref" "$id" && continue
    case "$ref" in *:"<none>") target=$id ;; *) target=$ref ;; esac
    docker rmi -f "$target" >/dev/null 2>"$W/error" || failed=1
  done < "$W/images"
  return $failed
}

wipe() {
  U=$1
  curl -sf --max-time 10 --unix-socket /var/run/docker.sock http://engine/_ping >/dev/null 2>&1 \
    || docker info >/dev/null 2>&1 || { echo "the host's Docker engine does not answer" >&2; exit 1; }
  W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
  if [ "$KEEP" != keep-swarm ] && [ "$(swarm_state)" != inactive ]; then docker swarm leave --force >/dev/null; fi
  ids=$(docker ps -aq)
  # shellcheck disable=SC2086 # IDs, one word each: split on purpose
  [ -z "$ids" ] || docker rm -f $ids >/dev/null
  docker network prune -f >/dev/null
  vols=$(docker volume ls -q)
  # shellcheck disable=SC2086 # volume names, one word each: split on purpose
  [ -z "$vols" ] || docker volume rm -f $vols >/dev/null
  remove_images || remove_images || { cat "$W/error" >&2; exit 1; }
  docker builder prune -af >/dev/null
  # Again while any was left (one may have forked meanwhile); no wait at all when none ran.
  i=0; while pkill -KILL -u "$U" 2>/dev/null && [ $i -lt 20 ]; do sleep 0.05; i=$((i + 1)); done
  H=$(getent passwd "$U" | cut -d: -f6)
  case "$H" in /home/?*) ;; *) echo "unexpected home folder for $U: $H" >&2; exit 1;; esac
  if [ "$KEEP_HOME" != keep-home ]; then
    rm -rf "$H" && cp -rT /etc/skel "$H" && chown -R "$U:$U" "$H" && chmod 755 "$H"
  fi
  find /tmp /var/tmp -xdev -user "$U" -delete 2>/dev/null || true
  crontab -r -u "$U" 2>/dev/null || true
  echo "done"
}

case "$WHAT" in
  wipe) wipe "$3" ;;
  leftovers) leftovers ;;
  clean-swarm) clean_swarm ;;
  *) echo "reset.sh: unknown action $WHAT" >&2; exit 2 ;;
esac
