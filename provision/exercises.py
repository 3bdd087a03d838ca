"""The course's exercise folder in each student's ~/exercises, byte-identical, modes kept.

The instructor's folder is packed once into a tar plus a manifest (kind, mode, sha256, path per
entry). A host keeps the manifest of what it was last given, so a re-run can tell a course
update (the file still matches the old manifest: replace it) from a student's edit (it does
not: keep it, and say so). Reset restores the folder exactly as the course has it.
"""

from __future__ import annotations

import hashlib
import io
import os
import shlex
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fabric import Connection

from .errors import BadInput
from .images import cache_dir, private_cache_folder
from .ssh import check

if TYPE_CHECKING:
    from .backends.base import Backend, Machine

EXERCISES_DIR = "/var/lib/classroom/exercises"  # on the host: manifest, digest, course.tar


@dataclass(frozen=True)
class ExercisePack:
    archive: Path
    manifest: str  # "kind\tmode\tsha256\tpath" lines; kind d (folder) or f (file)
    digest: str  # of the manifest: the course version
    files: int


def pack_exercises(folder: Path) -> ExercisePack:
    """Tar the folder (sorted, owner root, modes kept) and describe every entry."""
    entries: list[tuple[str, int, str, str]] = []
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in _walk(folder):
            relative = path.relative_to(folder).as_posix()
            if "\t" in relative or "\n" in relative:
                raise BadInput(f"exercises: file names with tabs or newlines are not supported: {relative!r}")
            info = path.lstat()
            if stat.S_ISDIR(info.st_mode):
                entries.append(("d", stat.S_IMODE(info.st_mode), "-", relative))
            elif stat.S_ISREG(info.st_mode):
                data = path.read_bytes()
                entries.append(("f", stat.S_IMODE(info.st_mode), hashlib.sha256(data).hexdigest(), relative))
            else:
                continue  # symlinks and devices have no place in a course folder
            tar_info = tar.gettarinfo(str(path), arcname=relative)
            tar_info.uid = tar_info.gid = 0
            tar_info.uname = tar_info.gname = "root"
            if tar_info.isreg():
                with open(path, "rb") as handle:
                    tar.addfile(tar_info, handle)
            else:
                tar.addfile(tar_info)
    manifest = "".join(f"{kind}\t{mode:04o}\t{digest}\t{rel}\n" for kind, mode, digest, rel in entries)
    digest = hashlib.sha256(manifest.encode()).hexdigest()
    archive = cache_dir().parent / "exercises" / f"{digest[:20]}.tar"
    if not archive.exists():
        private_cache_folder(archive.parent)
        partial = archive.with_suffix(".partial")
        partial.write_bytes(buffer.getvalue())
        os.replace(partial, archive)
    return ExercisePack(archive, manifest, digest, sum(1 for e in entries if e[0] == "f"))


def _walk(folder: Path):
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        base = Path(root)
        for name in dirs:
            yield base / name
        for name in sorted(files):
            yield base / name


# Runs as root. $1 user, $2 the uploaded tar (or "" to reuse the host's copy), $3 mode:
# "sync" (a re-run: keep the student's edits) or "fresh" (reset: exactly the course).
# stdin: the manifest. Prints one line per change: added/updated/kept/deleted PATH.
SYNC_SCRIPT = r"""
set -eu
U=$1; UPLOAD=$2; MODE=$3
H=$(getent passwd "$U" | cut -d: -f6)
T="$H/exercises"; S=/var/lib/classroom/exercises
mkdir -p "$S"; chmod 755 /var/lib/classroom "$S"
cat > "$S/manifest.new"
[ -n "$UPLOAD" ] && mv "$UPLOAD" "$S/course.tar"
rm -rf "$S/stage"; mkdir -p "$S/stage"
tar -xf "$S/course.tar" -C "$S/stage" --same-permissions --no-same-owner
[ "$MODE" = fresh ] && rm -rf "$T" && rm -f "$S/manifest"
[ -f "$S/manifest" ] || : > "$S/manifest"
if [ ! -d "$T" ]; then install -d -o "$U" -g "$U" -m 0755 "$T"; fi
TAB=$(printf '\t')
while IFS="$TAB" read -r kind mode sum path; do
  dst="$T/$path"
  if [ "$kind" = d ]; then
    if [ ! -d "$dst" ]; then mkdir -p "$dst"; chmod "$mode" "$dst"; chown "$U:$U" "$dst"; fi
    continue
  fi
  old=$(awk -F"$TAB" -v p="$path" '$4 == p { print $3 }' "$S/manifest")
  if [ -e "$dst" ] || [ -L "$dst" ]; then
    now=$(sha256sum < "$dst" | cut -c1-64)
    [ "$now" = "$sum" ] && continue
    if [ -n "$old" ] && [ "$now" != "$old" ]; then echo "kept $path"; continue; fi
    verb=updated
  else
    if [ -n "$old" ]; then echo "deleted $path"; continue; fi
    verb=added
  fi
  mkdir -p "$(dirname "$dst")"
  cp -p "$S/stage/$path" "$dst.classroom-new"; chown "$U:$U" "$dst.classroom-new"
  mv -f "$dst.classroom-new" "$dst"
  echo "$verb $path"
done < "$S/manifest.new"
mv "$S/manifest.new" "$S/manifest"; chmod 644 "$S/manifest"
rm -rf "$S/stage"
"""

DIGEST_SCRIPT = f"cat {EXERCISES_DIR}/digest 2>/dev/null || true"


def sync_exercises(connection: Connection, backend: Backend, machine: Machine, user: str,
                   pack: ExercisePack, *, fresh: bool = False) -> list[str]:
    """Bring ~user/exercises to the course's version; returns the change lines.

    Nothing is transferred when the host already has this version (and `fresh` is not asked).
    """
    from .preload import send_file

    current = check(connection, DIGEST_SCRIPT, what="reading exercises version").strip()
    upload = ""
    if current != pack.digest:
        upload = f"/var/tmp/classroom/exercises-{pack.digest[:20]}.tar"
        send_file(connection, backend, machine, pack.archive, upload)
    elif not fresh:
        return []
    command = f"sh -c {shlex.quote(SYNC_SCRIPT)} sync {shlex.quote(user)} {shlex.quote(upload)} " \
              f"{'fresh' if fresh else 'sync'}"
    changes = check(connection, command, stdin=pack.manifest, what="copying exercises", timeout=300)
    check(connection, f"echo {pack.digest} > {EXERCISES_DIR}/digest", what="recording exercises version")
    return [line for line in changes.splitlines() if line.strip()]


# Run as the student by `status`: "exercises PRESENT CHANGED MISSING" against the manifest.
CHECK_SCRIPT = r"""
M=/var/lib/classroom/exercises/manifest
if [ ! -f "$M" ] || [ ! -d "$HOME/exercises" ]; then echo "exercises 0 0 0"; exit 0; fi
changed=0; missing=0; TAB=$(printf '\t')
while IFS="$TAB" read -r kind mode sum path; do
  [ "$kind" = f ] || continue
  f="$HOME/exercises/$path"
  if [ ! -f "$f" ]; then missing=$((missing + 1))
  elif [ "$(sha256sum < "$f" | cut -c1-64)" != "$sum" ]; then changed=$((changed + 1)); fi
done < "$M"
echo "exercises 1 $changed $missing"
"""
