"""Strategy `pull` on the local backend, for real and offline: every host pulls the course's image
through a registry mirror written into its daemon.json.

The mirror is Debian's `docker-registry` (distribution 2.8) in a container of ours on the
classroom's own network, made before `up` with the labels the backend looks for, so `up` reuses
it. The outer engine pushes the tiny busybox image into it over loopback as `library/NAME:1`;
the hosts then ask for `NAME:1` (a Docker Hub name: mirrors only serve docker.io images), and the
only place they can get it from is the mirror. Tests run in file order.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import tarfile
import time
import urllib.request

import pytest
from conftest import Cli, free_port_base, remove_classroom_resources, unique_name, write_classroom_file

pytestmark = pytest.mark.engine

TEST_LABEL = {"classroom.test": "pull-mirror"}
REGISTRY_DOCKERFILE = b"""FROM debian:bookworm-slim
RUN apt-get update \\
 && apt-get install -y --no-install-recommends docker-registry \\
 && rm -rf /var/lib/apt/lists/*
COPY config.yml /etc/docker/registry/config.yml
EXPOSE 5000
CMD ["/usr/bin/docker-registry", "serve", "/etc/docker/registry/config.yml"]
"""
# The package's own config asks for htpasswd auth: a plain, open registry with an access log.
REGISTRY_CONFIG = b"""version: 0.1
log:
  level: warn
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: /var/lib/docker-registry
http:
  addr: :5000
"""


def _context(files: dict[str, bytes]) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


def _wait_for_registry(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


class Mirrored:
    """The classroom, its registry container and what was pushed into it."""

    def __init__(self, name, cli, client, registry, image, digest, mirror):
        self.name, self.cli, self.client = name, cli, client
        self.registry, self.image, self.digest, self.mirror = registry, image, digest, mirror

    @property
    def network(self) -> str:
        return f"classroom-{self.name}-net"

    def hosts(self) -> dict[str, object]:
        found = self.client.containers.list(all=True, filters={"label": f"classroom.name={self.name}"})
        return {c.labels["classroom.host"]: c for c in found}

    def inner(self, host: str, command: str) -> str:
        code, out = self.hosts()[host].exec_run(["sh", "-c", command])
        assert code == 0, out.decode(errors="replace")
        return out.decode(errors="replace")

    def manifest_requests(self) -> list[str]:
        """The remote address of every request for the image's manifest, from the access log."""
        log = self.registry.logs().decode(errors="replace")
        pattern = re.compile(rf'^(\S+) - - \[[^]]*\] "(?:GET|HEAD) /v2/library/{re.escape(self.image)}/manifests/1 ')
        return [m.group(1) for m in map(pattern.match, log.splitlines()) if m]


@pytest.fixture(scope="module")
def mirrored(engine, tiny_image, tmp_path_factory):
    import docker.errors

    name = unique_name("t-pull")
    folder = tmp_path_factory.mktemp("pull-mirror")
    registry_tag = f"classroom-test/registry:{name}"
    network = None
    registry = None
    cli = Cli(folder / "home", cwd=folder)
    try:
        # The classroom's network, as the backend makes it: `up` finds it by name and label.
        network = engine.networks.create(f"classroom-{name}-net", driver="bridge",
                                         labels={"classroom.name": name, "classroom.managed-by": "classroom"})
        engine.images.build(fileobj=_context({"Dockerfile": REGISTRY_DOCKERFILE, "config.yml": REGISTRY_CONFIG}),
                            custom_context=True, tag=registry_tag, rm=True, forcerm=True, labels=TEST_LABEL)
        registry = engine.containers.run(registry_tag, name=f"{name}-registry", detach=True, labels=TEST_LABEL,
                                         network=network.name, ports={"5000/tcp": ("127.0.0.1",)})
        registry.reload()
        port = int(registry.attrs["NetworkSettings"]["Ports"]["5000/tcp"][0]["HostPort"])
        _wait_for_registry(port)

        # Into the mirror from the outer engine, over loopback (insecure-allowed by default).
        image = name  # library/t-pull-xxxxxxxx:1, pulled by hosts as t-pull-xxxxxxxx:1
        pushed = f"127.0.0.1:{port}/library/{image}"
        engine.images.get(tiny_image).tag(pushed, "1")
        digest = None
        try:
            for event in engine.images.push(pushed, tag="1", stream=True, decode=True):
                assert "error" not in event, event
                digest = (event.get("aux") or {}).get("Digest") or digest
        finally:
            engine.images.remove(f"{pushed}:1")
        assert digest, "the registry gave no digest for the pushed image"

        mirror = f"http://{registry.name}:5000"
        write_classroom_file(folder, name, students=2, swarm_nodes=0,
                             port_base=free_port_base(3),
                             extra=f"preload:\n  strategy: pull\n  registry_mirror: {mirror}\n"
                                   f"images:\n  - {image}:1\n")
        yield Mirrored(name, cli, engine, registry, image, digest, mirror)
    finally:
        # The registry first: while it is on the network, `down` could not remove the network.
        if registry is not None:
            with contextlib.suppress(docker.errors.APIError):
                registry.remove(force=True, v=True)
        cli("down", "--yes")
        remove_classroom_resources(engine, name)
        if network is not None:
            with contextlib.suppress(docker.errors.APIError):
                network.remove()
        with contextlib.suppress(docker.errors.APIError):
            engine.images.remove(registry_tag, force=True)


def test_up_pulls_every_image_through_the_mirror(mirrored):
    run = mirrored.cli("up")
    assert run.exit_code == 0, run
    hosts = mirrored.hosts()
    assert sorted(hosts) == ["student-01", "student-02"]
    # The backend reused our network (the registry is on it) rather than making another one.
    assert {n.name for n in mirrored.client.networks.list(filters={"label": f"classroom.name={mirrored.name}"})} \
        == {mirrored.network}

    mirror_host = mirrored.mirror.removeprefix("http://")
    addresses = set()
    for host, container in hosts.items():
        daemon = json.loads(mirrored.inner(host, "cat /etc/docker/daemon.json"))
        assert daemon == {"registry-mirrors": [mirrored.mirror], "insecure-registries": [mirror_host]}
        assert mirrored.mirror in mirrored.inner(host, "docker info --format '{{json .RegistryConfig.Mirrors}}'")
        digests = json.loads(mirrored.inner(host, f"docker image inspect --format '{{{{json .RepoDigests}}}}' "
                                                  f"{mirrored.image}:1"))
        assert digests == [f"{mirrored.image}@{mirrored.digest}"], host  # pulled, not loaded
        assert mirrored.inner(host, f"docker run --rm {mirrored.image}:1 echo pulled").strip() == "pulled"
        container.reload()
        addresses.add(container.attrs["NetworkSettings"]["Networks"][mirrored.network]["IPAddress"])
    # Each host asked the mirror itself (the outer engine only pushed).
    assert addresses <= set(mirrored.manifest_requests())


def test_status_sees_the_pulled_images(mirrored):
    run = mirrored.cli("status", "--json")
    assert run.exit_code == 0, run
    hosts = json.loads(run.stdout)["hosts"]
    assert [h["checks"]["images"] for h in hosts] == [True, True], run


def test_second_up_pulls_nothing(mirrored):
    before = mirrored.manifest_requests()
    run = mirrored.cli("up")
    assert run.exit_code == 0, run
    assert run.stdout.count("unchanged") == 2, run
    assert mirrored.manifest_requests() == before


def test_a_replaced_host_gets_the_mirror_and_pulls_again(mirrored):
    old = mirrored.hosts()["student-02"].id
    before = len(mirrored.manifest_requests())
    run = mirrored.cli("reset", "2", "--hard")
    assert run.exit_code == 0, run
    assert mirrored.hosts()["student-02"].id != old
    assert json.loads(mirrored.inner("student-02", "cat /etc/docker/daemon.json"))["registry-mirrors"] == \
        [mirrored.mirror]
    assert f"{mirrored.image}@{mirrored.digest}" in mirrored.inner(
        "student-02", f"docker image inspect --format '{{{{json .RepoDigests}}}}' {mirrored.image}:1")
    new = mirrored.hosts()["student-02"]
    address = new.attrs["NetworkSettings"]["Networks"][mirrored.network]["IPAddress"]
    assert address in mirrored.manifest_requests()[before:]  # the new machine asked the mirror
