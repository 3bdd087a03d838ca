#!/bin/bash
# 03-partages: --link, docker network, --volumes-from, docker volume, a database.
set -Eeuo pipefail
trap 'echo "FAILED (line $LINENO): $BASH_COMMAND" >&2' ERR
# grep reading all its input: `grep -q` may exit first, and pipefail would take the writer's SIGPIPE for a failure.
seen() { grep "$@" >/dev/null; }
trap 'docker rm -f redissrv redissrv-2 pere db >/dev/null 2>&1 || true
      docker network rm db-net-1 >/dev/null 2>&1 || true
      docker volume rm shared-data pgdata >/dev/null 2>&1 || true' EXIT

retry() { for _ in $(seq 120); do "$@" && return; sleep 1; done; "$@"; }

docker inspect docker-intro/redis:1 | grep -i -A2 expose | seen 6379
docker run -d --name redissrv docker-intro/redis:1
docker run --rm --link redissrv:dbserver docker-intro/redis:1 env | seen '^DBSERVER_PORT=tcp://'
docker run --rm --link redissrv:dbserver docker-intro/redis:1 cat /etc/hosts | seen dbserver
retry docker run --rm --link redissrv:dbserver docker-intro/redis:1 redis-cli -h dbserver -p 6379 ping | seen -x PONG

docker network create db-net-1
docker run -d --net=db-net-1 --name redissrv-2 docker-intro/redis:1
docker network inspect db-net-1 | seen redissrv-2
retry docker run --rm --net=db-net-1 docker-intro/redis:1 redis-cli -h redissrv-2 -p 6379 ping | seen -x PONG

docker run -d -v /app --name pere docker-intro/web:1
docker run --rm --volumes-from pere debian:bookworm-slim bash -c 'echo "Hello" > /app/hello.txt'
docker exec pere cat /app/hello.txt | seen -x Hello

docker volume create --name=shared-data
docker run --rm -v shared-data:/partage debian:bookworm-slim sh -c 'echo "hello again" > /partage/fichier.txt'
docker run --rm -v shared-data:/DATA debian:bookworm-slim cat /DATA/fichier.txt | seen -x "hello again"

docker run -d --name db -e POSTGRES_PASSWORD=secret -v pgdata:/var/lib/postgresql/data docker-intro/postgres:1
retry docker exec db psql -U postgres -tAc 'create table if not exists notes (t text)' >/dev/null
docker exec db psql -U postgres -tAc "insert into notes values ('gardé')"
docker exec db psql -U postgres -c 'select version();' | seen PostgreSQL
docker rm -f db
docker run -d --name db -e POSTGRES_PASSWORD=secret -v pgdata:/var/lib/postgresql/data docker-intro/postgres:1
retry docker exec db psql -U postgres -tAc 'select t from notes' | seen -x 'gardé'
echo "03-partages: ok"
