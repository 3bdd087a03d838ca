#!/bin/bash
# 01-bases: images, containers, published ports, volumes, cleaning up.
set -Eeuo pipefail
trap 'echo "FAILED (line $LINENO): $BASH_COMMAND" >&2' ERR
# grep reading all its input: `grep -q` may exit first, and pipefail would take the writer's SIGPIPE for a failure.
seen() { grep "$@" >/dev/null; }
trap 'docker rm -f webserver-1 webserver-2 webserver-3 webserver-4 webserver-5 db-server ws-vol ws-trash ws-trash-2 >/dev/null 2>&1 || true
      docker rmi my-debian:12-local >/dev/null 2>&1 || true; rm -rf ~/site ~/file.txt' EXIT

docker images
docker tag debian:bookworm-slim my-debian:12-local
docker images my-debian | seen 12-local

docker run --rm debian:bookworm-slim echo "Bonjour depuis un containeur" | seen Bonjour
docker run --rm docker-intro/web:1 bash -c 'cat /etc/os-release && whoami && ps aux' | seen 'ps aux'

docker run -d --name webserver-1 docker-intro/web:1
docker inspect docker-intro/web:1 >/dev/null && docker inspect webserver-1 >/dev/null
docker run -d --name webserver-2 docker-intro/web:1
docker stop webserver-2 && docker start webserver-2 && docker kill webserver-2

docker run -d --name db-server -e POSTGRES_PASSWORD=secret docker-intro/postgres:1
docker exec db-server ps faux | seen postgres
for _ in $(seq 120); do docker logs db-server 2>&1 | seen 'ready to accept connections' && break; sleep 1; done
docker logs db-server 2>&1 | grep 'ready to accept connections'

docker run -d --name webserver-3 -p 8000:80 docker-intro/web:1
address=$(docker inspect --format '{{ .NetworkSettings.IPAddress }}' webserver-3)
for _ in $(seq 240); do curl -sfI "http://$address:80" >/dev/null && break; sleep 0.5; done
curl -sfI "http://$address:80" | head -n1
curl -sfI http://localhost:8000 | head -n1
docker logs webserver-3 | seen 'HEAD / HTTP'      # nginx logs to the container's stdout

docker run -d --name webserver-4 -P docker-intro/web:1
port=$(docker port webserver-4 80 | head -n1 | cut -d: -f2)
for _ in $(seq 240); do curl -sfI "http://localhost:$port" >/dev/null && break; sleep 0.5; done
curl -sfI "http://localhost:$port" | head -n1

docker run --rm --volume /app debian:bookworm-slim ls -ld /app
docker run -d -v /application --name ws-vol docker-intro/web:1
source=$(docker inspect --format '{{ range .Mounts }}{{ .Source }}{{ end }}' ws-vol)
# The slide's `sudo touch SOURCE/toto`, through a container: the file lands in the volume's folder.
docker run --rm -v "$source:/volume" debian:bookworm-slim touch /volume/toto
docker exec ws-vol ls -l /application/toto

mkdir -p ~/site && echo "Bonjour !" > ~/site/index.html
docker run -d --name webserver-5 -p 8001:80 -v ~/site:/usr/share/nginx/html:ro docker-intro/web:1
for _ in $(seq 240); do curl -sf http://localhost:8001 >/dev/null && break; sleep 0.5; done
curl -sf http://localhost:8001 | seen -x "Bonjour !"
echo "Re-bonjour !" > ~/site/index.html
curl -sf http://localhost:8001 | seen -x "Re-bonjour !"

cd ~ && echo "ok" > file.txt
docker run --rm -v "$(pwd)":/partage debian:bookworm-slim ls -l /partage | seen file.txt

docker run -d --name ws-trash docker-intro/web:1
docker kill ws-trash && docker rm ws-trash
docker run -d -v /app --name ws-trash-2 docker-intro/web:1
docker kill ws-trash-2 && docker rm -v ws-trash-2
docker rmi my-debian:12-local
echo "01-bases: ok"
