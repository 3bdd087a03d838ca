#!/bin/bash
# 05-swarm: a service on the student's own cluster (a one-node cluster made here if there is
# none, and left afterwards: the node is left as it was found).
set -Eeuo pipefail
trap 'echo "FAILED (line $LINENO): $BASH_COMMAND" >&2' ERR
# grep reading all its input: `grep -q` may exit first, and pipefail would take the writer's SIGPIPE for a failure.
seen() { grep "$@" >/dev/null; }
service="$USER-web"
made_cluster=false
cleanup() {
  docker service rm "$service" >/dev/null 2>&1 || true
  if $made_cluster; then docker swarm leave --force >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

if [ "$(docker info --format '{{ .Swarm.LocalNodeState }}')" != active ]; then
  docker swarm init
  made_cluster=true
fi
docker node ls

running() { docker service ps "$service" --filter desired-state=running --format '{{ .CurrentState }}' | grep -c '^Running' || true; }
wait_running() {
  for _ in $(seq 180); do [ "$(running)" -ge "$1" ] && return; sleep 1; done
  docker service ps --no-trunc "$service" >&2; echo "fewer than $1 task(s) running" >&2; return 1
}

docker service create -d --name "$service" --replicas 3 --publish mode=host,target=80 docker-intro/web:1
wait_running 3
docker service ps "$service"
docker service scale -d "$service=6"
wait_running 6
port=$(docker ps --filter "name=$service." --format '{{ .Ports }}' | head -n1 | sed -E 's/.*:([0-9]+)->80.*/\1/')
for _ in $(seq 240); do curl -sf "http://localhost:$port" >/dev/null && break; sleep 0.5; done
curl -sf "http://localhost:$port" | seen Bonjour
docker service rm "$service"
echo "05-swarm: ok"
