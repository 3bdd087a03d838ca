"""The trainer's own Docker engine: the local backend runs hosts on it, images.py builds and
saves the course's images with it. Neither should have to import the other to reach it."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .errors import BadInput

if TYPE_CHECKING:
    import docker


def connect_engine() -> docker.DockerClient:
    """The local engine (or DOCKER_HOST), or a one-line BadInput saying how to get one."""
    import docker

    try:
        client = docker.from_env(timeout=120)
        client.ping()
        return client
    except Exception as exc:  # the SDK raises several unrelated types for "no engine"
        where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise BadInput(
            f"cannot reach the Docker engine at {where} ({reason}): start it "
            "(sudo systemctl start docker, or scripts/setup-engine.sh) or set DOCKER_HOST"
        ) from None
