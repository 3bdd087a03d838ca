"""The local backend: each host is a Docker-in-Docker container on the local engine.

The engine is the source of truth: every container, volume and network of a classroom carries
the label `classroom.name=NAME`, so `list`, `down` and the leftover check read the engine, not a
file. Secrets never go into a container's config: the admin public key is copied in before the
container starts, and passwords are set later over SSH.
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import json
import os
import socket
import tarfile
from pathlib import Path
from urllib.parse import urlparse

import docker
import docker.errors

from stacks import templates_dir

from ..config import ClassroomConfig, LocalConfig, docker_daemon_config
from ..engine import connect_engine
from ..errors import BadInput, ClassroomError, first_line
from ..progress import NULL_PROGRESS, Progress
from ..model import HostSpec, MachineState, Role
from ..ports import NODE_PORT_STEP, local_port_map, published_offset
from ..roster import host_order
from ..state import ClassroomState, HostKey
from ..workers import worker_pool
from .base import Backend, EnsureResult, Leftover, Machine

LABEL = "classroom.name"
MANAGED = {"classroom.managed-by": "classroom"}
HOST_IMAGE_REPO = "classroom-host"
BASE_IMAGE = "debian:bookworm-slim"
SWARM_PORT_OFFSET = 100  # swarm-1 -> ssh_port_base + 101: clear of up to 100 students
# Past this many hosts, `up` says how many and what memory they need before creating them.
MANY_HOSTS = 40
# What one provisioned, idle host holds in memory (sshd, dockerd and containerd in Swarm mode, a
# student account): 45 MB on average and 53 MB at most over 12 hosts, measured with `docker stats`
# by bench/bench_swarm_own.py; rounded up, for the course's own containers are not counted there.
HOST_MEMORY_MB = 60
HOST_KEY_FILE = "ssh_host_ed25519_key"  # the only HostKey of the image's sshd_config

# What a nested Docker engine needs, and nothing more: Docker's default set (its containers get
# these, so it must hold them) plus SYS_ADMIN (mounts, namespaces, cgroups) and NET_ADMIN
# (bridges, iptables, the Swarm's overlay). Measured enough for docker run, -p, volumes,
# networks, build, compose, swarm init/join. SYS_PTRACE too: without it the nested engine cannot
# enter the namespaces of a process of another user, so `docker exec` fails on any container whose
# first process is not root (the official postgres and redis images: the course's `docker exec
# db-server ps faux`); it reaches no further than the host's own processes. Left out, among others:
# SYS_MODULE, SYS_RAWIO, SYS_BOOT, SYS_TIME, SYSLOG, DAC_READ_SEARCH (open_by_handle_at), and
# SYS_RESOURCE (outside some engines' bounding set: --privileged fails there). So a student's
# `docker run --cap-add ALL` or `--privileged` is refused by their host's engine.
NESTED_ENGINE_CAPS = ("CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
                      "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
                      "SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE")
# The engine's default seccomp profile cannot be kept: it refuses keyctl, which runc calls for every
# nested container ("unable to join session keyring"). This one allows everything else and refuses
# the kernel's riskiest entry points that neither an engine nor the course uses. (Not `bpf`: runc
# sets nested containers' device rules with it on cgroup v2.) The i386/x32 and arm32 entry points
# are listed too, or the same calls would pass through them.
SECCOMP_DENIED = ("kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
                  "create_module", "open_by_handle_at", "perf_event_open", "userfaultfd", "io_uring_setup",
                  "io_uring_enter", "io_uring_register", "acct", "swapon", "swapoff", "reboot", "syslog",
                  "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "stime", "iopl", "ioperm",
                  "lookup_dcookie", "nfsservctl", "vm86", "vm86old", "uselib", "get_kernel_syms",
                  "query_module", "_sysctl", "sysfs", "ustat", "fanotify_init", "quotactl", "quotactl_fd")
HOST_SECCOMP_PROFILE = json.dumps({
    "defaultAction": "SCMP_ACT_ALLOW",
    "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
    "syscalls": [{"names": list(SECCOMP_DENIED), "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
}, separators=(",", ":"))


def host_container_args(local: LocalConfig, *, engine_cpus: int | None = None,
                        seccomp: bool = True) -> dict:
    """The isolation and limits of one host container, as Docker SDK `containers.create` keywords.

    With `local.runtime` (e.g. sysbox-runc) the runtime isolates the nested engine: no added
    capability, no unconfined profile, no cgroup namespace of our own. Without it, the host gets
    the capabilities a nested engine needs and nothing more, and the student who is in its
    `docker` group can still become root on this machine (README, "Security model").
    `seccomp`: whether the engine supports seccomp profiles (`docker info` SecurityOptions).
    """
    limits = local.limits
    tmpfs = {"/run": "rw,exec,mode=755", "/tmp": "rw,exec,mode=1777"}
    for mount, size in (("/run", limits.run), ("/tmp", limits.tmp)):
        if size is not None:
            tmpfs[mount] += f",size={size}"
    args: dict = {"tmpfs": tmpfs}
    if limits.memory is not None:
        args["mem_limit"] = limits.memory
    if limits.pids is not None:
        args["pids_limit"] = limits.pids
    if limits.cpus is not None:  # the engine refuses more CPUs than it has
        args["nano_cpus"] = int(min(limits.cpus, engine_cpus or limits.cpus) * 1e9)
    if local.runtime:
        return {**args, "runtime": local.runtime}
    # AppArmor's docker-default profile forbids the mounts a nested engine makes: unconfined.
    security = [f"seccomp={HOST_SECCOMP_PROFILE}" if seccomp else "seccomp=unconfined", "apparmor=unconfined"]
    return {**args, "cap_drop": ["ALL"], "cap_add": list(NESTED_ENGINE_CAPS), "security_opt": security,
            "cgroupns": "private"}


def host_image_dir() -> Path:
    """The folder with the host image's Dockerfile (stacks.templates_dir: the one beside this code)."""
    return templates_dir() / "host"


def host_image_tag() -> str:
    """`classroom-host:<hash>` of the Dockerfile folder: a change of any input means a rebuild."""
    digest = hashlib.sha256()
    folder = host_image_dir()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return f"{HOST_IMAGE_REPO}:{digest.hexdigest()[:12]}"


def _tar_of(files_: dict[str, tuple[bytes, int]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, (data, mode) in files_.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class LocalBackend(Backend):
    name = "local"
    can_repair_access = True  # through the engine, which students cannot reach

    def __init__(self, config: ClassroomConfig, state: ClassroomState,
                 client: docker.DockerClient | None = None):
        self.config = config
        self.classroom = config.name
        self.state = state
        self._client = client
        self._engine_info: dict | None = None

    # --- engine and naming ---------------------------------------------------------------------
    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = connect_engine()
        return self._client

    @property
    def prefix(self) -> str:
        return f"classroom-{self.classroom}"

    @property
    def network_name(self) -> str:
        return f"{self.prefix}-net"

    def container_name(self, host: str) -> str:
        return f"{self.prefix}-{host}"

    def volume_name(self, host: str) -> str:
        return f"{self.prefix}-{host}-docker"

    def port_of(self, spec: HostSpec) -> int:
        base = self.config.local.ssh_port_base
        if spec.node:
            return base + spec.index + NODE_PORT_STEP * (spec.node - 1)
        return base + spec.index + (SWARM_PORT_OFFSET if spec.is_swarm else 0)

    def published_of(self, spec: HostSpec) -> list[tuple[int, int]]:
        """(course port, public port) for a student's host: their own block (ports.py); none for
        Swarm nodes."""
        if spec.is_swarm:
            return []
        return local_port_map(self.config.local.ssh_port_base, self.config.port_ranges, spec.index,
                              self.config.swarm.own_nodes)

    @property
    def bind_address(self) -> str:
        """Loopback unless the sheets print a non-loopback address that students must reach."""
        try:
            loopback = ipaddress.ip_address(self.config.local.address).is_loopback
        except ValueError:
            loopback = self.config.local.address == "localhost"
        return "127.0.0.1" if loopback else "0.0.0.0"

    @property
    def ssh_host(self) -> str:
        """Where this tool reaches published ports: this machine, or the remote engine's host."""
        url = urlparse(os.environ.get("DOCKER_HOST", ""))
        if url.scheme in ("tcp", "ssh") and url.hostname:
            return url.hostname
        return "127.0.0.1"

    def _labels(self, spec: HostSpec) -> dict[str, str]:
        return {LABEL: self.classroom, "classroom.host": spec.name, "classroom.role": spec.role,
                "classroom.student": spec.student or "", **MANAGED}

    def _filters(self) -> dict[str, str]:
        return {"label": f"{LABEL}={self.classroom}"}

    # --- the interface -------------------------------------------------------------------------
    @property
    def isolates_students(self) -> bool:
        """Only under a runtime such as sysbox-runc: otherwise a student who runs containers on
        their host can become root on this machine (SYS_ADMIN, no user namespace)."""
        return self.config.local.runtime is not None

    @property
    def engine_info(self) -> dict:
        """`docker info`, once: runtimes, CPUs, whether seccomp profiles are supported."""
        if self._engine_info is None:
            self._engine_info = self.client.info()
        return self._engine_info

    def preflight(self, hosts: list[HostSpec]) -> None:
        """Engine reachable; the runtime known to it; the host image can be built; every SSH port is
        free or already ours."""
        runtime = self.config.local.runtime
        known = sorted(self.engine_info.get("Runtimes") or {})
        if runtime and runtime not in known:
            raise BadInput(f"local.runtime: the Docker engine has no runtime {runtime!r} (it has "
                           f"{', '.join(known) or 'none'}): install it and register it in the engine's "
                           "daemon.json, or remove local.runtime")
        try:
            self.client.images.get(host_image_tag())
        except docker.errors.ImageNotFound:
            self._require_base_image()  # before `up` writes any state, not in the middle of `ensure`
        ours = {m.name for m in self.machines() if m.state != "missing"}
        for spec in hosts:
            if spec.name in ours:
                continue
            port = self.port_of(spec)
            if not port_free(self.bind_address, port):
                raise BadInput(
                    f"port {port} (for {spec.name}) is already in use on this machine: "
                    "set local.ssh_port_base to a free range (another classroom may use this one)"
                )
            for course_port, public in self.published_of(spec):
                if not port_free(self.bind_address, public):
                    raise BadInput(
                        f"port {public} (for {spec.name}'s port {course_port}) is already in use on this machine: "
                        f"set local.ssh_port_base to a free range (students' ports start at ssh_port_base + "
                        f"{published_offset(self.config.swarm.own_nodes) + 1}; another classroom may use this one)")

    def capacity_note(self, hosts: list[HostSpec], new_hosts: list[HostSpec]) -> str | None:
        if len(new_hosts) <= MANY_HOSTS:
            return None
        gigabytes = len(hosts) * HOST_MEMORY_MB / 1024
        return (f"creating {len(new_hosts)} host(s) on this machine's Docker engine ({len(hosts)} in all): expect "
                f"about {gigabytes:.1f} GB of memory while they are idle, more while students work")

    def ensure(self, hosts: list[HostSpec], admin_public_key: str,
               progress: Progress = NULL_PROGRESS, found: object | None = None) -> EnsureResult:
        image = self.ensure_host_image(progress)
        network = self._ensure_network()
        existing = {_labels_of(c).get("classroom.host"): c for c in self._containers(sparse=True)}
        todo = [spec for spec in hosts if existing.get(spec.name) is None
                or existing[spec.name].status != "running"]
        progress.start("hosts", f"Starting {len(todo)} host(s)", total=len(todo))

        def bring_up(spec: HostSpec) -> None:
            container = existing.get(spec.name)
            if container is not None and container.status == "created":
                # Never started: an interrupted `up` left it before its keys were put in. Again.
                container.remove(force=True)
                container = None
            if container is None:
                self._create(spec, image, network, admin_public_key)
            else:  # stopped by hand or by a reboot: start it, its disk is kept
                container.start()
            progress.advance("hosts", detail=spec.name)

        with worker_pool(len(todo), self.config.preload.parallel) as pool:
            errors = [f.exception() for f in [pool.submit(bring_up, s) for s in todo]]
        progress.finish("hosts")
        # One host that cannot start never stops the others: it is reported, and `up` exits 3.
        failures = {spec.name: first_line(error) for spec, error in zip(todo, errors, strict=True) if error is not None}
        wanted = {spec.name for spec in hosts}
        return EnsureResult([m for m in self.machines() if m.name in wanted], failures)

    def machines(self) -> list[Machine]:
        network = self.network_name
        result = []
        # The list's summaries (one engine call), not each container inspected (30 more calls, 0.4 s
        # for 30 hosts, and every command lists more than once). Only a container that is not
        # running lacks its published ports there: that one is inspected.
        for summary in self._containers(sparse=True):
            attrs = summary.attrs
            labels = _labels_of(summary)
            published = _bindings_of_summary(attrs.get("Ports") or [])
            if "22/tcp" not in published:
                try:
                    inspected = self.client.containers.get(summary.id).attrs
                except docker.errors.NotFound:
                    continue  # removed meanwhile
                published = inspected.get("HostConfig", {}).get("PortBindings") or {}
            ssh = (published.get("22/tcp") or [{}])[0]
            port = int(ssh.get("HostPort") or 0)
            # A host made to listen on loopback only is reached there, whatever the file says now.
            public = "127.0.0.1" if ssh.get("HostIp") == "127.0.0.1" else self.config.local.address
            networks = attrs.get("NetworkSettings", {}).get("Networks") or {}
            address = (networks.get(network) or {}).get("IPAddress") or None
            result.append(Machine(
                name=labels.get("classroom.host", (attrs.get("Names") or ["?"])[0].lstrip("/")),
                role=Role(labels.get("classroom.role", Role.STUDENT)),
                student=labels.get("classroom.student") or None,
                state=MachineState(summary.status),
                ssh_host=self.ssh_host, ssh_port=port,
                public_host=public, public_port=port,
                private_address=address, machine_id=summary.id, ports=published_ports(published),
            ))
        return sorted(result, key=lambda m: host_order(m.name))

    def replace(self, host: HostSpec, admin_public_key: str,
                progress: Progress = NULL_PROGRESS) -> Machine:
        image = self.ensure_host_image(progress)
        network = self._ensure_network()
        for container in self._containers(host=host.name):
            container.remove(force=True, v=True)
        self._remove_volume(self.volume_name(host.name))
        self._create(host, image, network, admin_public_key)
        return next(m for m in self.machines() if m.name == host.name)

    def destroy(self, progress: Progress = NULL_PROGRESS) -> list[Leftover]:
        containers = self._containers()
        progress.start("destroy", f"Removing {len(containers)} host(s)", total=len(containers))
        removed: list[Leftover] = []

        def remove(container) -> None:
            try:
                container.remove(force=True, v=True)
            except docker.errors.NotFound:
                pass
            removed.append(Leftover("container", container.name))
            progress.advance("destroy", detail=container.labels.get("classroom.host"))

        with worker_pool(len(containers), self.config.preload.parallel) as pool:
            list(pool.map(remove, containers))
        for volume in self.client.volumes.list(filters=self._filters()):
            self._remove_volume(volume.name)
            removed.append(Leftover("volume", volume.name))
        for network in self.client.networks.list(filters=self._filters()):
            network.remove()
            removed.append(Leftover("network", network.name))
        progress.finish("destroy")
        return sorted(removed, key=lambda item: (item.kind, item.name))

    def leftovers(self) -> list[Leftover]:
        found = [Leftover("container", c.name) for c in self._containers()]
        found += [Leftover("volume", v.name) for v in self.client.volumes.list(filters=self._filters())]
        found += [Leftover("network", n.name) for n in self.client.networks.list(filters=self._filters())]
        return found

    def current_state(self, machine: Machine) -> str:
        """One engine call for that container (cheaper than listing the classroom)."""
        try:
            container = self.client.containers.get(machine.machine_id or self.container_name(machine.name))
        except docker.errors.NotFound:
            return "missing"
        return "running" if container.status == "running" else container.status

    def repair_access(self, machine: Machine, admin_public_key: str) -> bool:
        """Through the engine, which the students cannot reach, everything the admin key's login
        needs: root's .ssh folder and the key, sshd's configuration as the image has it (a root
        student may have added `PermitRootLogin no`), the classroom's host key, a usable root
        account; then sshd re-reads it all (the students' open sessions stay)."""
        container = self.client.containers.get(machine.machine_id or self.container_name(machine.name))
        pristine = self._image_sshd_config(container.image.id)
        _exec_or_fail(container, machine, "repairing admin access",
                      "rm -rf /root/.ssh /etc/ssh/sshd_config /etc/ssh/sshd_config.d && "
                      "install -d -m 0700 -o root -g root /root/.ssh && "
                      # the account the key logs into: root's shell, no lock, no expiry
                      "usermod -s /bin/bash -p '*' -e '' root")
        container.put_archive("/etc", pristine)
        container.put_archive("/root/.ssh", _tar_of({"authorized_keys": (admin_public_key.encode() + b"\n", 0o600)}))
        _put_host_key(container, self.state.host_key(machine.name))
        _exec_or_fail(container, machine, "restarting sshd", RELOAD_SSHD)
        return True

    def _image_sshd_config(self, image: str) -> bytes:
        """/etc/ssh/sshd_config and sshd_config.d as the host image has them, as a tar rooted at
        /etc: read from a container of the image that never starts (the running host's copy is
        the student's to change)."""
        reader = self.client.containers.create(image, entrypoint=["true"], network_disabled=True,
                                               labels=dict(MANAGED))
        try:
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w") as out:
                for path in ("/etc/ssh/sshd_config", "/etc/ssh/sshd_config.d"):
                    stream, _ = reader.get_archive(path)
                    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
                        for member in tar.getmembers():
                            if member.isfile() or member.isdir():
                                data = tar.extractfile(member) if member.isfile() else None
                                member.name = f"ssh/{member.name}"
                                out.addfile(member, data)
            return buffer.getvalue()
        finally:
            reader.remove(force=True)

    def restore_host_key(self, machine: Machine, host_key: HostKey) -> bool:
        """Through the engine, then sshd re-reads its keys (SIGHUP to the listener only: the
        students' open sessions stay)."""
        container = self.client.containers.get(machine.machine_id or self.container_name(machine.name))
        _put_host_key(container, host_key)
        _exec_or_fail(container, machine, "restarting sshd", RELOAD_SSHD)
        return True

    def upload(self, machine: Machine, local: Path, remote_path: str) -> bool:
        """Stream the file into the container through the engine (put_archive)."""
        folder, _, name = remote_path.rpartition("/")
        container = self.client.containers.get(machine.machine_id or self.container_name(machine.name))
        container.exec_run(["mkdir", "-p", folder])
        if not container.put_archive(folder, tar_stream(local, name)):
            raise ClassroomError(f"{machine.name}: copying {local.name} through the engine failed")
        return True

    # --- local specifics -------------------------------------------------------------------------
    def ensure_host_image(self, progress: Progress = NULL_PROGRESS) -> str:
        """Build the host image unless an image with the same input hash exists."""
        tag = host_image_tag()
        try:
            self.client.images.get(tag)
            return tag
        except docker.errors.ImageNotFound:
            pass
        self._require_base_image()
        progress.start("image", f"Building the host image {tag} (once)", total=None)
        error = None
        for chunk in self.client.api.build(path=str(host_image_dir()), tag=tag, rm=True,
                                           forcerm=True, decode=True, labels=dict(MANAGED)):
            if "stream" in chunk and chunk["stream"].strip():
                progress.advance("image", 0, detail=chunk["stream"].strip()[:100])
            error = chunk.get("error") or error
        progress.finish("image")
        if error:
            raise ClassroomError(f"building the host image failed: {error.strip()}")
        return tag

    def _require_base_image(self) -> None:
        try:
            self.client.images.get(BASE_IMAGE)
            return
        except docker.errors.ImageNotFound:
            pass
        try:
            self.client.images.pull(BASE_IMAGE)
        except docker.errors.APIError:
            raise BadInput(
                f"the host image is built FROM {BASE_IMAGE}, which is not on this engine and cannot be "
                "pulled: run scripts/setup-engine.sh (it builds it offline with debootstrap)"
            ) from None

    def _ensure_network(self) -> str:
        if not self.client.networks.list(names=[self.network_name], filters=self._filters()):
            self.client.networks.create(self.network_name, driver="bridge",
                                        labels={LABEL: self.classroom, **MANAGED})
        return self.network_name

    def _containers(self, host: str | None = None, sparse: bool = False) -> list:
        """`sparse`: the list's summaries only, no inspect of each (labels: `_labels_of`)."""
        filters = self._filters()
        if host:
            filters = {"label": [filters["label"], f"classroom.host={host}"]}
        return self.client.containers.list(all=True, filters=filters, sparse=sparse)

    def _remove_volume(self, name: str) -> None:
        try:
            self.client.volumes.get(name).remove(force=True)
        except docker.errors.NotFound:
            pass

    def _create(self, spec: HostSpec, image: str, network: str, admin_public_key: str) -> None:
        labels = self._labels(spec)
        volume = self.volume_name(spec.name)
        try:
            self.client.volumes.get(volume)
        except docker.errors.NotFound:
            self.client.volumes.create(volume, labels=labels)
        container = self.client.containers.create(
            image,
            name=self.container_name(spec.name),
            hostname=spec.name,
            labels=labels,
            detach=True,
            init=True,  # reaps the orphans of students' sessions and of the nested dockerd
            # Docker-in-Docker without --privileged: what the nested engine needs, and the limits.
            **host_container_args(self.config.local, engine_cpus=self.engine_info.get("NCPU"),
                                  seccomp=any("name=seccomp" in option
                                              for option in self.engine_info.get("SecurityOptions") or [])),
            volumes={volume: {"bind": "/var/lib/docker", "mode": "rw"}},
            ports={"22/tcp": (self.bind_address, self.port_of(spec)),
                   **{f"{port}/tcp": (self.bind_address, public) for port, public in self.published_of(spec)}},
            network=network,
            restart_policy={"Name": "unless-stopped"},
        )
        try:
            # Keys go in as files before start: they never appear in `docker inspect`. The host key
            # is the classroom's (state folder), so a replaced host keeps its identity.
            container.put_archive("/root/.ssh", _tar_of({"authorized_keys": (admin_public_key.encode() + b"\n",
                                                                               0o600)}))
            _put_host_key(container, self.state.host_key(spec.name))
            mirror = self.config.registry_mirror
            if mirror:  # read by the host's dockerd when it starts; a running host keeps its own
                daemon_json = json.dumps(docker_daemon_config(mirror), indent=2) + "\n"
                container.put_archive("/etc/docker", _tar_of({"daemon.json": (daemon_json.encode(), 0o644)}))
            container.start()
        except Exception:
            container.remove(force=True)
            raise


def _labels_of(container) -> dict[str, str]:
    """A container's labels, from a listing's summary (`attrs["Labels"]`) or an inspect."""
    attrs = container.attrs
    return attrs.get("Labels") or (attrs.get("Config") or {}).get("Labels") or {}


# SIGHUP to sshd's listener only (its pid file, else the oldest sshd), after a syntax check: it
# re-reads its configuration and keys, and the students' open sessions stay.
RELOAD_SSHD = ('/usr/sbin/sshd -t && { P=$(cat /run/sshd.pid 2>/dev/null); '
               '[ "$(cat /proc/$P/comm 2>/dev/null)" = sshd ] && kill -HUP "$P" || pkill -HUP -o -x sshd; }')


def _exec_or_fail(container, machine: Machine, what: str, script: str) -> None:
    code, output = container.exec_run(["sh", "-c", script])
    if code != 0:
        raise ClassroomError(f"{machine.name}: {what} failed: {output.decode(errors='replace')[:200]}")


def _put_host_key(container, host_key: HostKey) -> None:
    container.put_archive("/etc/ssh", _tar_of({
        HOST_KEY_FILE: (host_key.private_openssh.encode(), 0o600),
        f"{HOST_KEY_FILE}.pub": (f"{host_key.public_line} {host_key.host}\n".encode(), 0o644)}))


def _bindings_of_summary(ports: list[dict]) -> dict:
    """A listing's `Ports` ([{"PrivatePort": 22, "PublicPort": 2201, "IP": "127.0.0.1", "Type": "tcp"}])
    as an inspect's PortBindings ({"22/tcp": [{"HostIp": "127.0.0.1", "HostPort": "2201"}]})."""
    bindings: dict[str, list[dict]] = {}
    for entry in ports:
        if entry.get("PublicPort"):
            bindings.setdefault(f"{entry['PrivatePort']}/{entry.get('Type', 'tcp')}", []).append(
                {"HostIp": entry.get("IP", ""), "HostPort": str(entry["PublicPort"])})
    return bindings


def published_ports(bindings: dict) -> tuple[tuple[int, int], ...]:
    """A container's PortBindings ({"8080/tcp": [{"HostPort": "31001"}]}) -> ((8080, 31001),),
    sshd's left out: what the host was made with, whatever the classroom file says now."""
    pairs = []
    for key, values in bindings.items():
        port, _, protocol = key.partition("/")
        if protocol == "tcp" and port != "22" and values and str(values[0].get("HostPort") or "").isdigit():
            pairs.append((int(port), int(values[0]["HostPort"])))
    return tuple(sorted(pairs))


def port_free(address: str, port: int) -> bool:
    """Whether nothing listens on address:port (the engine's proxy binds published ports)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
            return True
        except OSError:
            return False


def tar_stream(path: Path, arcname: str, chunk: int = 1 << 20):
    """A tar archive holding one file, produced on the fly (no second copy on disk)."""
    size = path.stat().st_size
    info = tarfile.TarInfo(arcname)
    info.size, info.mode = size, 0o600
    yield info.tobuf(format=tarfile.GNU_FORMAT)
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            yield block
    padding = (-size) % tarfile.BLOCKSIZE
    yield b"\0" * padding + b"\0" * (2 * tarfile.BLOCKSIZE)
