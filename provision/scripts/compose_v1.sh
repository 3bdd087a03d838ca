#!/bin/sh
# classroom compose shim: `docker-compose` on a host that has only the Compose plugin
# (`docker compose`, Docker's own packages on aws). Installed by host_tools.sh.
exec /usr/bin/docker compose "$@"
