# Run as root. stdin: `user:hash` lines (the only place the hashes travel).
# Creates missing users in the docker group and sets the hash when /etc/shadow holds another.
# Prints `created USER` / `password USER` for what it changed.
# The previous version kept unsalted sha256 digests of `user:password` in /etc/classroom/accounts,
# readable by any student who is root through Docker: removed wherever it is found.
set -e
umask 077
rm -f /etc/classroom/accounts /etc/classroom/accounts.new
while IFS=: read -r user hash; do
  [ -n "$user" ] || continue
  if ! id -u "$user" >/dev/null 2>&1; then
    useradd --create-home --shell /bin/bash --groups docker "$user"
    echo "created $user"
  fi
  id -nG "$user" | grep -qw docker || usermod -aG docker "$user"
  if [ "$(getent shadow "$user" | cut -d: -f2)" != "$hash" ]; then
    printf '%s:%s\n' "$user" "$hash" | chpasswd -e
    echo "password $user"
  fi
done
