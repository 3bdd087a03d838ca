"""How the core reports progress without printing: the CLI plugs a Rich renderer in."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def start(self, key: str, description: str, total: int | None = None) -> None:
        """A long step begins (`total` units of work, or unknown)."""

    def advance(self, key: str, amount: int = 1, detail: str | None = None) -> None:
        """Some of the step's work is done; `detail` is a short status (a build line, a host)."""

    def finish(self, key: str) -> None:
        """The step is over."""

    def note(self, message: str) -> None:
        """A line worth keeping on screen (a warning, a decision the tool took)."""


class NullProgress:
    def start(self, key: str, description: str, total: int | None = None) -> None:
        pass

    def advance(self, key: str, amount: int = 1, detail: str | None = None) -> None:
        pass

    def finish(self, key: str) -> None:
        pass

    def note(self, message: str) -> None:
        pass


NULL_PROGRESS: Progress = NullProgress()
