"""Soft reset of one student's host, as the admin over SSH: back to the course, nothing else.

Only the named host is touched; the student's password is kept. What the course provides
(images by ID, ~/exercises) is restored by the same provisioning code that `up` runs.

A reset is honest: the host's engine is started first (a wipe against no engine removes
nothing), any Docker error fails it, and what is left afterwards is looked for, not assumed.
"""

from __future__ import annotations

from fabric import Connection

from .preload import IMAGES_FILE
from .ssh import RemoteError, check, script_command

def wipe_student(connection: Connection, user: str, *, keep_home: bool = False,
                 keep_swarm: bool = False) -> list[str]:
    """Start the engine if it stopped, wipe, verify; returns what had to be done besides the wipe.
    A RemoteError when the wipe fails or leaves anything: that host is not clean. `keep_home`: the
    student's home folder stays as it is. `keep_swarm`: a node of the student's own cluster stays
    in it (the cluster keeps its ID)."""
    from .provisioning import ensure_engine

    changes = ["docker engine started"] if ensure_engine(connection) else []
    flags = (("keep-swarm",) if keep_swarm else ()) + (("keep-home",) if keep_home else ())
    check(connection, script_command("reset.sh", "wipe", IMAGES_FILE, user, *flags), what="resetting", timeout=300)
    left = leftovers_after_reset(connection, keep_swarm)
    if left:
        raise RemoteError(f"not clean: the reset left {describe_leftovers(left)}")
    return changes


def clean_swarm(connection: Connection) -> bool:
    """On a manager of a student's own cluster: every service (stacks too), secret and config gone.
    False when this node is not a manager (ask the next one)."""
    out = check(connection, script_command("reset.sh", "clean-swarm", IMAGES_FILE), what="cleaning the Swarm cluster",
                timeout=120)
    return out.strip() == "cleaned"


def leftovers_after_reset(connection: Connection, keep_swarm: bool = False) -> list[tuple[str, str]]:
    """(kind, name) of every container, volume, custom network, image that is not the course's,
    and Swarm membership still on the host's engine (`keep_swarm`: services, secrets and configs
    instead, on a manager)."""
    keep = ("-", "keep-swarm") if keep_swarm else ()
    lines = check(connection, script_command("reset.sh", "leftovers", IMAGES_FILE, *keep),
                  what="verifying the reset").splitlines()
    return [(kind, name) for kind, _, name in (line.partition(" ") for line in lines) if kind]


def describe_leftovers(left: list[tuple[str, str]], shown: int = 3) -> str:
    """`2 containers, 1 volume (data), 1 image (extra:2)`: counts, and a few names."""
    kinds: dict[str, list[str]] = {}
    for kind, name in left:
        kinds.setdefault(kind, []).append(name)
    parts = []
    for kind, names in kinds.items():
        label = kind if len(names) == 1 else f"{kind}s"
        listed = ", ".join(names[:shown]) + (", …" if len(names) > shown else "")
        parts.append(f"{len(names)} {label} ({listed})")
    return ", ".join(parts)
