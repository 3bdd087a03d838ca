#!/bin/bash
# 02-dockerfile: build the slide's image, run it, change it, build again.
set -Eeuo pipefail
trap 'echo "FAILED (line $LINENO): $BASH_COMMAND" >&2' ERR
# grep reading all its input: `grep -q` may exit first, and pipefail would take the writer's SIGPIPE for a failure.
seen() { grep "$@" >/dev/null; }
work=$(mktemp -d)
trap 'docker rm -f my-web-1 my-web-2 >/dev/null 2>&1 || true; docker rmi web:1.0.0 web:1.1.0 >/dev/null 2>&1 || true
      rm -rf "$work"' EXIT

fetch() {  # fetch PORT: the page, once nginx answers
  for _ in $(seq 240); do curl -sf "http://localhost:$1" && return; sleep 0.5; done
  curl -sf "http://localhost:$1"
}

cd ~/exercises/02-dockerfile
docker build -t web:1.0.0 ./web/
docker run -d -P --name my-web-1 web:1.0.0
fetch "$(docker port my-web-1 80 | head -n1 | cut -d: -f2)" | seen -i nginx

cp -r ./web "$work/web"   # the student's copy stays as the course has it
echo 'RUN echo Hello > /var/www/html/index.nginx-debian.html' >> "$work/web/Dockerfile"
docker build -t web:1.1.0 "$work/web/"
docker run -d -P --name my-web-2 web:1.1.0
fetch "$(docker port my-web-2 80 | head -n1 | cut -d: -f2)" | seen -x Hello
docker history web:1.1.0
echo "02-dockerfile: ok"
