#!/bin/sh
# PID 1 of a local classroom host: prepare cgroups for a nested engine, run sshd, start dockerd.
set -e

# A private cgroup2 mount, then move ourselves into a leaf so the nested dockerd can enable
# controllers (the same dance as docker:dind's entrypoint); without it containers fail to start.
if [ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" != cgroup2fs ]; then
  mount -t cgroup2 none /sys/fs/cgroup 2>/dev/null || true
fi
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  mkdir -p /sys/fs/cgroup/init
  xargs -rn1 < /sys/fs/cgroup/cgroup.procs > /sys/fs/cgroup/init/cgroup.procs 2>/dev/null || true
  sed -e 's/ / +/g' -e 's/^/+/' < /sys/fs/cgroup/cgroup.controllers \
    > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
fi

mkdir -p /run/sshd /root/.ssh
chmod 0700 /root/.ssh
# The host key is the classroom's, put here by `classroom` before the first start: never make
# one here, or the tool (which pins it) would refuse the host.
[ -s /etc/ssh/ssh_host_ed25519_key ] || { echo "no /etc/ssh/ssh_host_ed25519_key: not started by classroom?" >&2; exit 1; }

# sshd first, the engine in the background: the tool's session opens (and a new host receives the
# course's images through the outer engine) while the nested engine starts, seconds when thirty
# start at once. Provisioning waits for it with classroom-start-docker, which waits for this start
# rather than making a second one.
/usr/local/sbin/classroom-start-docker &
exec /usr/sbin/sshd -D -e
