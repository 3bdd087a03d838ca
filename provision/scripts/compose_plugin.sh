#!/bin/sh
# classroom compose shim: `docker compose` on a host that has only Compose v1 (`docker-compose`,
# Debian's package). Installed as a Docker CLI plugin by host_tools.sh. The Docker CLI runs a
# plugin as `PLUGIN docker-cli-plugin-metadata` to learn what it is, then as `PLUGIN compose ARGS...`.
if [ "${1:-}" = docker-cli-plugin-metadata ]; then
  printf '%s\n' '{"SchemaVersion":"0.1.0","Vendor":"classroom","Version":"1","ShortDescription":"Docker Compose (runs docker-compose)"}'
  exit 0
fi
[ "${1:-}" = compose ] && shift
exec /usr/bin/docker-compose "$@"
