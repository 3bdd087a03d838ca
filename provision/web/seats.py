"""Self-service seats (`web.self_service: true`): a student types the class code and their name,
and takes a free seat (a student-NN host with its password). The names are kept in the state
folder (seats.json, 0600), so the trainer's dashboard and `/api/roster` say who sits where.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

from ..state import read_state_json, write_private
from .errors import WebError

SEATS_FILE = "seats.json"
NAME_RE = re.compile(r"^[^\x00-\x1f\x7f-\x9f<>]{1,60}$")  # a person's name: printable, no markup brackets


def clean_name(name: object) -> str:
    text = " ".join(str(name or "").split())
    if not NAME_RE.match(text):
        raise WebError(400, "type your name (1 to 60 characters, no < or >)")
    return text


class SeatBook:
    def __init__(self, state_dir: Path):
        self.path = state_dir / SEATS_FILE
        self._lock = threading.Lock()

    def names(self) -> dict[str, str]:
        """student-NN -> the name of who claimed it."""
        return {str(k): str(v) for k, v in read_state_json(self.path, {}).items()}

    def claim(self, name: str, students: list[str], seat: str | None = None) -> str:
        """The seat taken for `name`: `seat` if free, else the first free one."""
        name = clean_name(name)
        with self._lock:
            taken = self.names()
            if seat is not None:
                if seat not in students:
                    raise WebError(404, f"there is no seat {seat} in this classroom")
                if seat in taken:
                    raise WebError(409, f"{seat} is already taken: pick another seat, or leave it empty for any free one")
                chosen = seat
            else:
                free = [s for s in students if s not in taken]
                if not free:
                    raise WebError(409, f"the class is full: all {len(students)} seats are taken; ask the trainer "
                                        "for another (classroom up --students N)")
                chosen = free[0]
            taken[chosen] = name
            write_private(self.path, json.dumps(taken, indent=2, sort_keys=True) + "\n")
        return chosen
