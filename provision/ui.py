"""Rich rendering of progress and results. The core reports; this module shows."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

console = Console(stderr=True, highlight=False)  # progress and messages: stdout stays for data
out = Console(highlight=False, soft_wrap=True)


class RichProgress:
    """The core's Progress protocol on a Rich live display (stderr), one bar per step."""

    def __init__(self, console_: Console = console):
        self._console = console_
        self._bars = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("[dim]{task.fields[detail]}"),
            console=console_, transient=False,
        )
        self._tasks: dict[str, int] = {}

    def __enter__(self) -> RichProgress:
        self._bars.start()
        return self

    def __exit__(self, *exc) -> None:
        self._bars.stop()

    def start(self, key: str, description: str, total: int | None = None) -> None:
        if key in self._tasks:
            self._bars.reset(self._tasks[key], total=total, description=description, detail="")
        else:
            self._tasks[key] = self._bars.add_task(description, total=total, detail="")

    def advance(self, key: str, amount: int = 1, detail: str | None = None) -> None:
        task = self._tasks.get(key)
        if task is not None:
            self._bars.update(task, advance=amount, detail=detail or "")

    def finish(self, key: str) -> None:
        task = self._tasks.get(key)
        if task is not None:
            total = self._bars.tasks[task].total
            if total is None:
                self._bars.update(task, total=1, completed=1, detail="done")
            else:
                self._bars.update(task, completed=total, detail="")

    def note(self, message: str) -> None:
        self._bars.console.print(message)


def state_style(state: str) -> str:
    return {"ready": "green", "failed": "red", "missing": "yellow"}.get(state, "yellow")
