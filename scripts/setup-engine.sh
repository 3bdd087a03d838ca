#!/usr/bin/env bash
# Make sure a working Docker engine and the `debian:bookworm-slim` base image exist.
#
# - No engine answering? As root on Debian/Ubuntu, install Debian's docker.io and start dockerd;
#   anywhere else, say what to do and stop.
# - No debian:bookworm-slim? Pull it; where no registry is reachable (our CI), build it offline
#   with debootstrap from the machine's own apt mirror.
set -euo pipefail

log() { printf '[setup] %s\n' "$*" >&2; }

engine_up() { docker info >/dev/null 2>&1; }

if ! command -v docker >/dev/null 2>&1 || ! command -v dockerd >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing docker.io (Debian's Docker engine)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq docker.io >/dev/null
  elif ! command -v docker >/dev/null 2>&1; then
    log "Docker is not installed. Install Docker Engine (https://docs.docker.com/engine/install/) and re-run."
    exit 2
  fi
fi

if ! engine_up; then
  if [ "$(id -u)" = 0 ] && command -v dockerd >/dev/null 2>&1; then
    log "starting dockerd"
    if command -v systemctl >/dev/null 2>&1 && systemctl start docker >/dev/null 2>&1; then :; else
      nohup dockerd >/var/log/dockerd.log 2>&1 &
    fi
    for _ in $(seq 1 60); do engine_up && break; sleep 0.5; done
  fi
  if ! engine_up; then
    log "the Docker engine does not answer (docker info). Start it (sudo systemctl start docker) and re-run."
    exit 2
  fi
fi
log "Docker engine ready: $(docker version --format '{{.Server.Version}}' 2>/dev/null)"

if ! docker image inspect debian:bookworm-slim >/dev/null 2>&1; then
  if timeout 60 docker pull -q debian:bookworm-slim >/dev/null 2>&1; then
    log "pulled debian:bookworm-slim"
  else
    [ "$(id -u)" = 0 ] || { log "cannot pull debian:bookworm-slim and not root to build it offline"; exit 2; }
    command -v debootstrap >/dev/null 2>&1 || {
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
    # The machine's own Debian mirror, as its apt sources name it.
    mirror=$(grep -hsoE '^URIs:\s*\S+' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -n1 || true)
    [ -n "$mirror" ] || mirror=$(grep -hsoE '^deb\s+\S+' /etc/apt/sources.list | awk '{print $2}' | head -n1 || true)
    [ -n "$mirror" ] || { log "no Debian mirror in /etc/apt/sources.list*: cannot build debian:bookworm-slim offline"; exit 2; }
    log "registry unreachable: building debian:bookworm-slim offline with debootstrap from $mirror (about a minute)"
    rootfs=$(mktemp -d)
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >/tmp/debootstrap.log 2>&1 \
      || { log "debootstrap failed, see /tmp/debootstrap.log"; exit 1; }
    # Point the image's apt at the same mirror, so builds FROM it can apt-get install.
    echo "deb $mirror bookworm main" > "$rootfs/etc/apt/sources.list"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | docker import - debian:bookworm-slim >/dev/null
    rm -rf "$rootfs"
    log "built debian:bookworm-slim"
  fi
fi
