"""The course's exercise folder in each student's ~/exercises, byte-identical, modes kept.

The instructor's folder is described by a manifest (kind, mode, sha256, path per entry) and packed
into a tar named after the manifest's digest. A host keeps the manifest of what it was last given,
so a re-run can tell a course update (the file still matches the old manifest: replace it) from a
student's edit (it does not: keep it, and say so). Reset restores the folder exactly as the course
has it.

Course files may be big (a VM image, a dataset): nothing here holds a whole file in memory. Files
are hashed in chunks (and not again while their size and mtime stay the same), the tar is written
straight to the cache only when that version has no archive yet, a host receives it only when the
course changed, and keeps it extracted so a reset copies files rather than unpacking again.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tarfile
import tempfile
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from fabric import Connection

from .errors import BadInput
from .images import cache_dir, private_cache_folder
from .ssh import check, script_command

if TYPE_CHECKING:
    from .backends.base import Backend, Machine

EXERCISES_DIR = "/var/lib/classroom/exercises"  # on the host: manifest, digest, tree/ (the course, root only)
CHUNK = 1 << 20


@dataclass(frozen=True)
class ExercisePack:
    archive: Path
    manifest: str  # "kind\tmode\tsha256\tpath" lines; kind d (folder) or f (file)
    digest: str  # of the manifest: the course version
    files: int


# Folders of a course that are for the trainer only: a `solutions/` or `checks/` folder put inside
# the exercises folder is never copied to students (nor is the folder `solutions:` names).
TRAINER_ONLY = ("solutions", "checks")


def kept_from_students(folder: Path, *named: Path | None) -> frozenset[Path]:
    """The folders under `folder` that are not copied: its top-level TRAINER_ONLY ones, and the
    `named` ones (the classroom file's `solutions:`), wherever they lie."""
    return frozenset({(folder / name).resolve() for name in TRAINER_ONLY}
                     | {path.resolve() for path in named if path is not None})


def pack_exercises(folder: Path, skip: frozenset[Path] = frozenset()) -> ExercisePack:
    """Describe every entry (sorted, modes kept) and make sure the tar of that version exists;
    the folders in `skip` (kept_from_students) are left out."""
    found = []
    for path in _walk(folder, skip):
        relative = path.relative_to(folder).as_posix()
        if "\t" in relative or "\n" in relative:
            raise BadInput(f"exercises: file names with tabs or newlines are not supported: {relative!r}")
        info = path.lstat()
        if stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode):
            found.append((path, relative, info))  # symlinks and devices have no place in a course folder
    refuse_private_files([relative + ("/" if stat.S_ISDIR(info.st_mode) else "")
                          for _path, relative, info in found if _private(info)])
    hashes = FileHashes(folder)
    entries: list[tuple[str, int, str, str]] = []
    for path, relative, info in found:
        mode = stat.S_IMODE(info.st_mode)
        if stat.S_ISDIR(info.st_mode):
            entries.append(("d", mode, "-", relative))
        else:
            entries.append(("f", mode, hashes.sha256(path, info), relative))
    hashes.save()
    manifest = "".join(f"{kind}\t{mode:04o}\t{digest}\t{rel}\n" for kind, mode, digest, rel in entries)
    digest = hashlib.sha256(manifest.encode()).hexdigest()
    archive = _cache() / f"{digest[:20]}.tar"
    if not archive.exists():
        _write_tar(folder, [rel for _kind, _mode, _digest, rel in entries], archive)
    return ExercisePack(archive, manifest, digest, sum(1 for e in entries if e[0] == "f"))


def private_files(folder: Path, skip: frozenset[Path] = frozenset()) -> list[str]:
    """Course files that others may not read, and folders others may not enter (named with a
    trailing /): a key or a note put there by mistake, most likely. `skip`: as pack_exercises."""
    return [path.relative_to(folder).as_posix() + ("/" if stat.S_ISDIR(info.st_mode) else "")
            for path in _walk(folder, skip) if _private(info := path.lstat())]


def refuse_private_files(names: list[str]) -> None:
    """Refused rather than copied with a warning: every student would own a copy before anyone
    reads the warning, and a mode change is all it takes to say "this belongs to the course"."""
    if names:
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        folders = any(name.endswith("/") for name in names)
        what, chmod = ("file(s) or folder(s)", "a+rX") if folders else ("file(s)", "a+r")
        raise BadInput(f"exercises: {len(names)} {what} readable only by their owner would be copied to every "
                       f"student: {shown}. If they belong to the course, `chmod {chmod}` them; otherwise move them "
                       "out of the exercises folder")


def _private(info: os.stat_result) -> bool:
    """A file others cannot read, or a folder others cannot list or enter (a 0700 folder hides
    its 0644 files just as well)."""
    if stat.S_ISDIR(info.st_mode):
        return (info.st_mode & (stat.S_IROTH | stat.S_IXOTH)) != (stat.S_IROTH | stat.S_IXOTH)
    return stat.S_ISREG(info.st_mode) and not info.st_mode & stat.S_IROTH


def _cache() -> Path:
    return private_cache_folder(cache_dir().parent / "exercises")


def _write_tar(folder: Path, relatives: list[str], archive: Path) -> None:
    """Stream the tar (owner root, modes kept) into a temporary file beside the archive, then
    rename it: another `up` packing the same course at once never sees half a file."""
    handle, partial = tempfile.mkstemp(dir=archive.parent, prefix=archive.stem, suffix=".partial")
    try:
        with os.fdopen(handle, "wb") as out, tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT,
                                                          bufsize=CHUNK) as tar:
            for relative in relatives:
                path = folder / relative
                tar_info = tar.gettarinfo(str(path), arcname=relative)
                tar_info.uid = tar_info.gid = 0
                tar_info.uname = tar_info.gname = "root"
                if tar_info.isreg():
                    with open(path, "rb") as source:
                        tar.addfile(tar_info, source)
                else:
                    tar.addfile(tar_info)
        os.replace(partial, archive)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)


class FileHashes:
    """sha256 of each file of a course folder (exercises, an image's build folder), kept while its
    size, mtime and inode stay the same: a second `up` of a course with a 1.5 GB file reads none
    of it. One small file per folder in the cache."""

    def __init__(self, folder: Path):
        key = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
        self.path = _cache() / f"hashes-{key}.json"
        try:
            self.known: dict[str, list] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.known = {}
        self.seen: dict[str, list] = {}

    def sha256(self, path: Path, info: os.stat_result) -> str:
        stamp = [info.st_size, info.st_mtime_ns, info.st_ino]
        cached = self.known.get(str(path))
        if isinstance(cached, list) and cached[:3] == stamp and len(cached) == 4:
            digest = cached[3]
        else:
            hasher = hashlib.sha256()
            with open(path, "rb") as handle:
                while block := handle.read(CHUNK):
                    hasher.update(block)
            digest = hasher.hexdigest()
        self.seen[str(path)] = [*stamp, digest]
        return digest

    def save(self) -> None:
        if self.seen == self.known:
            return
        handle, partial = tempfile.mkstemp(dir=self.path.parent, suffix=".partial")
        with os.fdopen(handle, "w") as out:
            json.dump(self.seen, out)
        os.replace(partial, self.path)


def _walk(folder: Path, skip: frozenset[Path] = frozenset()):
    for root, dirs, files in os.walk(folder):
        base = Path(root)
        dirs[:] = sorted(name for name in dirs if (base / name).resolve() not in skip)
        for name in dirs:
            yield base / name
        for name in sorted(files):
            yield base / name


class ExerciseChange(StrEnum):
    """What the sync did to one file of ~/exercises (the first word of its output lines)."""

    ADDED = "added"
    UPDATED = "updated"
    KEPT = "kept"  # changed by the student: left as they made it
    DELETED = "deleted"  # deleted by the student: left deleted


ExerciseChanges = dict[ExerciseChange, list[str]]  # what was done -> the files, in order


def parse_sync_output(text: str) -> ExerciseChanges:
    """`added a`, `kept b` … lines -> {ADDED: [a], KEPT: [b]}; any other line is dropped."""
    changes: ExerciseChanges = {}
    for line in text.splitlines():
        verb, _, path = line.partition(" ")
        if verb in ExerciseChange.__members__.values():
            changes.setdefault(ExerciseChange(verb), []).append(path)
    return changes


def sync_exercises(connection: Connection, backend: Backend, machine: Machine, user: str,
                   pack: ExercisePack, *, fresh: bool = False) -> ExerciseChanges:
    """Bring ~user/exercises to the course's version; returns what it did to which files.

    Nothing is transferred when the host already has this version, and nothing is done when the
    student's folder is there too (and `fresh` is not asked). A missing folder is restored whole.
    """
    from .preload import send_file

    lines = check(connection, script_command("exercises_state.sh", EXERCISES_DIR, user),
                  what="reading exercises version").splitlines()
    current = next((line.split()[1] for line in lines if line.startswith("version ") and len(line.split()) == 2), "")
    fresh = fresh or "folder" not in lines  # "sync" would take every missing file for a deletion
    upload = ""
    if current != pack.digest:
        # Under root's own folder: in /var/tmp a student could make the folder first and swap the
        # tar that root then unpacks.
        upload = f"{EXERCISES_DIR}/upload/course-{pack.digest[:20]}.tar"
        send_file(connection, backend, machine, pack.archive, upload)
    elif not fresh:
        return {}
    command = script_command("exercises_sync.sh", EXERCISES_DIR, user, upload, "fresh" if fresh else "sync")
    changes = check(connection, command, stdin=pack.manifest, what="copying exercises", timeout=600)
    check(connection, script_command("exercises_record.sh", EXERCISES_DIR, pack.digest),
          what="recording exercises version")
    return parse_sync_output(changes)
