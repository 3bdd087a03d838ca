# Run as root. $1: an uploaded `docker save` tar; loaded, then removed whatever happened.
docker load -q -i "$1"
status=$?
rm -f "$1"
exit "$status"
