# Run as root. $1 the student who owns this host ("" on a shared Swarm node); $2 "sudo" (that
# student may sudo with their own password) or "nosudo"; $3 and $4 the text of the two Compose
# shims (compose_plugin.sh, compose_v1.sh).
# Makes both `docker compose` and `docker-compose` work, whichever of the two the host has, and
# grants or withdraws sudo. Never sudo on a Swarm node: every student has an account there.
# Prints one line per change.
set -eu
U=$1; SUDO=$2; PLUGIN_SHIM=$3; V1_SHIM=$4
PLUGIN=/usr/libexec/docker/cli-plugins/docker-compose
V1=/usr/bin/docker-compose
V1_SHIM_PATH=/usr/local/bin/docker-compose
SUDOERS=/etc/sudoers.d/classroom-student
MARK="classroom compose shim"

ours() { grep -qs "$MARK" "$1"; }
# $1 path, $2 content: written only when it differs, atomically.
put() {
  if ! printf '%s' "$2" | cmp -s - "$1"; then
    mkdir -p "$(dirname "$1")"
    printf '%s' "$2" > "$1.new" && chmod 755 "$1.new" && mv -f "$1.new" "$1"
    echo "installed $1"
  fi
}

if [ -x "$V1" ] && { [ ! -e "$PLUGIN" ] || ours "$PLUGIN"; }; then
  put "$PLUGIN" "$PLUGIN_SHIM"                     # Compose v1 only: `docker compose` runs it
elif [ -x "$PLUGIN" ] && ! ours "$PLUGIN" && [ ! -x "$V1" ]; then
  put "$V1_SHIM_PATH" "$V1_SHIM"                   # the plugin only: `docker-compose` runs it
fi

if [ -n "$U" ] && [ "$SUDO" = sudo ]; then
  command -v visudo >/dev/null || { echo "sudo is not installed on this host" >&2; exit 1; }
  rule="$U ALL=(ALL:ALL) ALL"
  if [ "$(cat "$SUDOERS" 2>/dev/null)" != "$rule" ]; then
    printf '%s\n' "$rule" > "$SUDOERS.new"
    chmod 440 "$SUDOERS.new"
    visudo -cqf "$SUDOERS.new" || { rm -f "$SUDOERS.new"; echo "visudo refused the sudo rule" >&2; exit 1; }
    mv -f "$SUDOERS.new" "$SUDOERS"
    echo "sudo $U"
  fi
elif [ -e "$SUDOERS" ]; then
  rm -f "$SUDOERS"
  echo "sudo withdrawn"
fi
