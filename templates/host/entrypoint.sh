#!/bin/sh
# PID 1 of a local classroom host: prepare cgroups for a nested engine, start dockerd, run sshd.
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
# Host keys are made on first boot, so no two hosts share them.
ls /etc/ssh/ssh_host_*_key >/dev/null 2>&1 || ssh-keygen -A >/dev/null

/usr/local/sbin/classroom-start-docker || true
exec /usr/sbin/sshd -D -e
