"""Rich rendering of progress and results. The core reports; this module shows."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from .errors import Interrupted
from .untrusted import clean

console = Console(stderr=True, highlight=False)  # progress and messages: stdout stays for data
# Piped or captured output gets wide tables, not Rich's 80-column fallback with cut names.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)


class RichProgress:
    """The core's Progress protocol on a Rich live display (stderr), one bar per step.

    When stderr is not a terminal (CI, a log file, a script), there is no live display: each step
    prints one plain line when it ends, so a failure before any step ended leaves only the error.
    """

    def __init__(self, console_: Console = console):
        self._console = console_
        self._live = console_.is_terminal
        self._bars = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("[dim]{task.fields[detail]}"),
            console=console_, transient=False,
        )
        self._tasks: dict[str, int] = {}
        self._plain: dict[str, tuple[str, int | None, float, int]] = {}
        self._open: dict[str, str] = {}  # steps started and not finished: what Ctrl-C interrupts
        self._finished: str | None = None  # the last step that ended

    def __enter__(self) -> RichProgress:
        if self._live:
            self._bars.start()
        return self

    def __exit__(self, _type, exc, _traceback) -> None:
        if self._live:
            self._bars.stop()
        if isinstance(exc, (Interrupted, KeyboardInterrupt)):  # where it stopped, for cli.main's line
            if self._open:
                exc.where = f"during {list(self._open.values())[-1]!r}"  # type: ignore[union-attr]
            elif self._finished:
                exc.where = f"after {self._finished!r}"  # type: ignore[union-attr]

    def start(self, key: str, description: str, total: int | None = None) -> None:
        self._open.pop(key, None)
        self._open[key] = description
        if not self._live:
            self._plain[key] = (description, total, time.monotonic(), 0)
        elif key in self._tasks:
            self._bars.reset(self._tasks[key], total=total, description=description, detail="")
        else:
            self._tasks[key] = self._bars.add_task(description, total=total, detail="")

    def advance(self, key: str, amount: int = 1, detail: str | None = None) -> None:
        if not self._live:
            if key in self._plain:
                description, total, started, done = self._plain[key]
                self._plain[key] = (description, total, started, done + amount)
            return
        task = self._tasks.get(key)
        if task is not None:
            self._bars.update(task, advance=amount, detail=detail or "")

    def finish(self, key: str) -> None:
        self._finished = self._open.pop(key, self._finished)
        if not self._live:
            if key in self._plain:
                description, total, started, _done = self._plain.pop(key)
                self._console.print(f"{description}: done in {time.monotonic() - started:.1f} s")
            return
        task = self._tasks.get(key)
        if task is not None:
            total = self._bars.tasks[task].total
            if total is None:
                self._bars.update(task, total=1, completed=1, detail="done")
            else:
                self._bars.update(task, completed=total, detail="")

    def note(self, message: str) -> None:
        # Notes may quote a host (Swarm errors): plain text, never markup or terminal control.
        (self._bars.console if self._live else self._console).print(clean(message), markup=False)


def state_style(state: str) -> str:
    return {"ready": "green", "failed": "red", "missing": "yellow"}.get(state, "yellow")
