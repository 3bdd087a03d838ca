# Run as root. $1: the host's script that starts dockerd. Prints `up` or `started`.
if docker info >/dev/null 2>&1; then
  echo up
else
  "$1" && echo started
fi
