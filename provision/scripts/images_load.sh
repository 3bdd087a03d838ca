# Run as root. $@: uploaded `docker save` tars, loaded side by side (a load is mostly the engine
# waiting on the disk: a host made anew, or reset --hard, waits for the longest, not the sum),
# each removed whatever happened. Fails when any load failed, with the engine's words on stderr.
pids=""
for tar in "$@"; do
  (docker load -q -i "$tar" >/dev/null; status=$?; rm -f "$tar"; exit "$status") &
  pids="$pids $!"
done
failed=0
for pid in $pids; do
  wait "$pid" || failed=1
done
exit "$failed"
