"""The course's images on the instructor's side: built or pulled once, saved once per image ID.

Every host then gets the same bytes (strategy `push`), so the class never depends on Docker
Hub's anonymous pull limit (100 pulls per 6 hours per address, shared by all local hosts).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from .config import ClassroomConfig
from .errors import BadInput, ClassroomError, first_line
from .progress import NULL_PROGRESS, Progress


@dataclass(frozen=True)
class CourseImage:
    name: str  # as the course names it: alpine:3.4
    image_id: str  # sha256:...; the same on every engine that loads the saved tar
    archive: Path | None  # the `docker save` tar, for strategy push
    size: int = 0


def cache_dir() -> Path:
    """Where saved course images go: `~/.cache/classroom/images` (or under `$XDG_CACHE_HOME`)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "classroom" / "images"


def private_cache_folder(folder: Path) -> Path:
    """Make `folder` (in the cache) with `~/.cache/classroom` mode 0700: the saved images and
    exercise archives may hold what a course keeps from other users of this machine."""
    root = cache_dir().parent
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    if root.stat().st_mode & 0o077:  # made by an older version, or by hand
        root.chmod(0o700)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


def reference(name: str) -> str:
    """`alpine` means `alpine:latest` to Docker; keep names comparable."""
    last = name.rsplit("/", 1)[-1]
    return name if (":" in last or "@" in last) else f"{name}:latest"


def prepare_images(config: ClassroomConfig, progress: Progress = NULL_PROGRESS,
                   client=None, rebuild: bool = True) -> list[CourseImage]:
    """Build, pull or find each course image on the instructor's engine and save it once.

    Raises BadInput naming the image when one cannot be had: before any host is created.
    """
    if not config.images:
        return []
    import docker.errors

    from .engine import connect_engine

    client = client or connect_engine()
    progress.start("images", f"Preparing {len(config.images)} course image(s)", total=len(config.images))
    prepared = []
    for index, spec in enumerate(config.images):
        name = reference(spec.name)
        build_dir = config.image_build_dir(spec)
        image = None
        if build_dir is not None and not rebuild:
            try:
                image = client.images.get(name)
            except docker.errors.ImageNotFound:
                image = None
        if image is not None:
            pass
        elif build_dir is not None:
            image = _build(client, name, build_dir, index, progress)
        else:
            try:
                image = client.images.get(name)
            except docker.errors.ImageNotFound:
                progress.advance("images", 0, detail=f"pulling {name}")
                try:
                    image = client.images.pull(name)
                except docker.errors.APIError as exc:
                    raise BadInput(f"images.{index}: {name} is not on this engine and cannot be pulled "
                                   f"({_explain(exc)})") from None
        prepared.append(_save(client, name, image, progress))
        progress.advance("images", detail=name)
    progress.finish("images")
    return prepared


CONTEXT_LABEL = "classroom.context"


def context_digest(folder: Path) -> str:
    """A digest of a build folder (names, modes, each file's sha256): an unchanged folder is not
    rebuilt.

    Rebuilding even from cache re-sends the whole context to the engine (50 MB for two course
    images): that alone made a second `up` of a ready classroom take seconds. A file whose size,
    mtime and inode did not change is not read again (exercises.FileHashes).
    """
    from .exercises import FileHashes

    hashes = FileHashes(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        info = path.stat()
        digest.update(f"{path.relative_to(folder).as_posix()}\0{info.st_mode & 0o777}\0".encode())
        digest.update(hashes.sha256(path, info).encode())
    hashes.save()
    return digest.hexdigest()


def _build(client, name: str, folder: Path, index: int, progress: Progress):
    import docker.errors

    context = context_digest(folder)
    try:
        existing = client.images.get(name)
        if (existing.labels or {}).get(CONTEXT_LABEL) == context:
            return existing
    except docker.errors.ImageNotFound:
        pass
    progress.advance("images", 0, detail=f"building {name}")
    try:
        image, _logs = client.images.build(path=str(folder), tag=name, rm=True, forcerm=True, pull=False,
                                           labels={CONTEXT_LABEL: context})
    except docker.errors.BuildError as exc:
        last = next((c.get("error") or c.get("stream") for c in reversed(list(exc.build_log))
                     if c.get("error") or (c.get("stream") or "").strip()), str(exc))
        raise BadInput(f"images.{index}: building {name} from {folder} failed: {str(last).strip()}") from None
    except docker.errors.APIError as exc:
        raise BadInput(f"images.{index}: building {name} from {folder} failed: {_explain(exc)}") from None
    return image


def _save(client, name: str, image, progress: Progress) -> CourseImage:
    """`docker save` into the cache, keyed by image ID: a new build means a new file."""
    folder = private_cache_folder(cache_dir())
    digest = image.id.split(":", 1)[-1]
    safe = name.replace("/", "_").replace(":", "_")
    archive = folder / f"{digest[:20]}-{safe}.tar"
    if not archive.exists():
        progress.advance("images", 0, detail=f"saving {name}")
        partial = archive.with_suffix(".partial")
        try:
            with open(partial, "wb") as handle:
                for chunk in client.api.get_image(name, chunk_size=1 << 20):
                    handle.write(chunk)
            os.replace(partial, archive)
        except Exception as exc:
            partial.unlink(missing_ok=True)
            raise ClassroomError(f"saving {name} failed: {exc}") from None
    return CourseImage(name, image.id, archive, archive.stat().st_size)


def _explain(exc: Exception) -> str:
    return first_line(getattr(exc, "explanation", None) or exc)
