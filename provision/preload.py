"""The course's images on each host, over SSH: check by image ID, send what is missing, verify.

Strategy `push`: the instructor's saved tar goes to the host (through the backend's fast path
when it has one, else SFTP) and is `docker load`ed. Strategy `pull`: the host pulls for itself,
through its registry mirror when one is set. Either way a host that already has the right IDs
gets nothing: a second `up` transfers no bytes.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from fabric import Connection

from .images import CourseImage
from .ssh import RemoteError, check, script, script_command

if TYPE_CHECKING:
    from .backends.base import Backend, Machine

STATE_DIR = "/var/lib/classroom"
IMAGES_FILE = f"{STATE_DIR}/images"  # "name id" per course image: what status and reset compare with
UPLOAD_DIR = "/var/tmp/classroom"


def image_ids(connection: Connection, names: list[str]) -> tuple[dict[str, str | None], str]:
    """The ID of each named image on the host (None where missing), and the recorded list."""
    answer = check(connection, script_command("images_list.sh", IMAGES_FILE, script("engine_images.sh")),
                   what="listing images")
    listing, _, recorded = answer.partition("--\n")
    on_host = dict(line.rsplit(" ", 1) for line in listing.splitlines() if " " in line)
    return {name: on_host.get(name) for name in names}, recorded


def send_file(connection: Connection, backend: Backend, machine: Machine, local, remote_path: str) -> None:
    """Put a file on the host: the backend's fast path if it has one, else SFTP."""
    if backend.upload(machine, local, remote_path):
        return
    check(connection, f"mkdir -p {shlex.quote(remote_path.rpartition('/')[0])}", what="mkdir")
    connection.put(str(local), remote_path)


def upload_path(image: CourseImage) -> str:
    """Where an image's tar lands on a host: one path per image ID and name (the cache's file
    name), so that two names of one ID never share an upload (they are loaded side by side)."""
    return f"{UPLOAD_DIR}/{image.archive.name if image.archive else image.image_id.split(':')[-1][:20] + '.tar'}"


def upload_early(backend: Backend, machine: Machine, images: list[CourseImage]) -> dict[str, str]:
    """For a host made by this run (no image yet, nothing to compare): the saved tars go through
    the backend's fast path at once, without waiting for SSH. Returns name -> path on the host;
    empty when the backend has no fast path. push_images still compares IDs before loading."""
    sent: dict[str, str] = {}
    for image in images:
        remote = upload_path(image)
        if image.archive is None or not backend.upload(machine, image.archive, remote):
            break
        sent[image.name] = remote
    return sent


def push_images(connection: Connection, backend: Backend, machine: Machine,
                images: list[CourseImage], sent: dict[str, str] | None = None) -> list[str]:
    """Load every missing or outdated course image; returns the names loaded. `sent`: the tars
    already on the host (upload_early), by image name: loaded from there, or removed if not needed."""
    sent = sent or {}
    have, recorded = image_ids(connection, [i.name for i in images])
    loaded = []
    unused = [sent[i.name] for i in images if i.name in sent and have.get(i.name) == i.image_id]
    if unused:
        check(connection, shlex.join(["rm", "-f", *unused]), what="removing unused uploads")
    uploads = []
    for image in images:
        if have.get(image.name) == image.image_id:
            continue
        remote = sent.get(image.name) or upload_path(image)
        if image.name not in sent:
            send_file(connection, backend, machine, image.archive, remote)
        uploads.append(remote)
        loaded.append(image.name)
    if uploads:
        check(connection, script_command("images_load.sh", *uploads), what=f"loading {', '.join(loaded)}",
              timeout=600)
    if loaded:
        after, _ = image_ids(connection, [i.name for i in images])
        wrong = [i.name for i in images if after.get(i.name) != i.image_id]
        if wrong:
            raise RemoteError(f"images not loaded as expected: {', '.join(wrong)}")
    if loaded or recorded != images_text(images):
        record_images(connection, images)
    return loaded


def pull_images(connection: Connection, images: list[CourseImage]) -> list[str]:
    """Each host pulls for itself (cloud hosts have their own addresses and bandwidth)."""
    have, recorded = image_ids(connection, [i.name for i in images])
    pulled = []
    for image in images:
        if have.get(image.name):
            continue
        check(connection, f"docker pull -q {shlex.quote(image.name)}", what=f"pulling {image.name}", timeout=900)
        pulled.append(image.name)
    after = image_ids(connection, [i.name for i in images])[0] if pulled else have
    expected = [CourseImage(i.name, after.get(i.name) or "-", None) for i in images]
    if recorded != images_text(expected):
        record_images(connection, expected)
    return pulled


def images_text(images: list[CourseImage]) -> str:
    return "".join(f"{i.name} {i.image_id}\n" for i in images)


def record_images(connection: Connection, images: list[CourseImage]) -> None:
    """Write what the course expects, world-readable: status checks it as the student."""
    check(connection, script_command("images_record.sh", IMAGES_FILE), stdin=images_text(images),
          what="recording images")
