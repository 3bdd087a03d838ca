#!/bin/bash
# 04-compose: the vote app and its redis, with the preloaded images; votes survive `down`.
set -Eeuo pipefail
trap 'echo "FAILED (line $LINENO): $BASH_COMMAND" >&2' ERR
# grep reading all its input: `grep -q` may exit first, and pipefail would take the writer's SIGPIPE for a failure.
seen() { grep "$@" >/dev/null; }
cd ~/exercises/04-compose
trap 'docker-compose down -v >/dev/null 2>&1 || true' EXIT

docker-compose up -d
docker-compose ps
docker compose ps | seen vote   # the plugin's spelling works too
for _ in $(seq 120); do curl -sf http://localhost:5000 >/dev/null && break; sleep 1; done
curl -sf http://localhost:5000 | seen 'Chats contre Chiens'
curl -sf -d vote=a http://localhost:5000 | seen 'Vote enregistré'
docker-compose logs vote | seen 'POST /'
if docker-compose up -d --scale vote=2 2>/dev/null; then
  echo "two vote containers on port 5000: expected a failure" >&2; exit 1
fi
docker-compose up -d --scale vote=1
docker-compose down
docker-compose up -d
for _ in $(seq 120); do curl -sf http://localhost:5000 >/dev/null && break; sleep 1; done
curl -sf http://localhost:5000 | seen 'Chats : 1'   # the vote is kept in the db-data volume
echo "04-compose: ok"
