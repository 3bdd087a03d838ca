"""The class's time zone: what the sheets' times are written in (`timezone:` in the classroom
file, else this machine's zone)."""

from __future__ import annotations

import os
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

LOCALTIME = Path("/etc/localtime")
ZONE_FILE = Path("/etc/timezone")


def check_zone(name: str) -> str:
    """`name` if it is an IANA zone this machine knows (Europe/Paris, UTC); ValueError otherwise."""
    try:
        if not name or name.startswith("/") or ".." in name:
            raise ValueError(name)
        ZoneInfo(name)
    except (ValueError, ZoneInfoNotFoundError, IsADirectoryError, OSError):
        raise ValueError(f"{name!r} is not a time zone like Europe/Paris or UTC") from None
    return name


def machine_zone(environ: dict[str, str] | None = None, localtime: Path = LOCALTIME,
                 zone_file: Path = ZONE_FILE) -> str:
    """This machine's zone name: $TZ, else where /etc/localtime points, else /etc/timezone, else UTC."""
    environ = os.environ if environ is None else environ
    candidates = [environ.get("TZ", "").removeprefix(":")]
    try:
        target = str(localtime.resolve()) if localtime.is_symlink() else ""
        candidates.append(target.partition("/zoneinfo/")[2])
    except OSError:
        pass
    try:
        candidates.append(zone_file.read_text().strip())
    except OSError:
        pass
    for name in candidates:
        try:
            return check_zone(name)
        except ValueError:
            continue
    return "UTC"


def class_zone(name: str | None) -> ZoneInfo:
    """The zone for `timezone:` (None: this machine's)."""
    return ZoneInfo(name or machine_zone())
