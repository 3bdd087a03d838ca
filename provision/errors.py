"""The one error type that reaches the user, and the exit codes of the command-line contract."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1  # unexpected failure
    BAD_INPUT = 2  # usage, config, unknown student: nothing was changed
    PARTIAL = 3  # some hosts are not ready; the report names them
    INTERRUPTED = 130


class ClassroomError(Exception):
    """A failure with a one-line message meant for the trainer, and the exit code it maps to."""

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str, exit_code: ExitCode | None = None):
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class BadInput(ClassroomError):
    """The trainer asked for something impossible; nothing was changed."""

    exit_code = ExitCode.BAD_INPUT


class Interrupted(BaseException):
    """Ctrl-C, raised by the CLI's SIGINT handler. Not a KeyboardInterrupt, which Typer turns
    into a silent exit 130; not an Exception, so that no `except Exception` swallows it."""


def last_line(value: object, limit: int = 200) -> str:
    """The last non-empty line of an error or a command's output: where tools put the reason.

    Often a host's words, so cleaned of terminal control (provision/untrusted.py) on the way in.
    """
    lines = _lines(value)
    return (lines[-1] if lines else type(value).__name__)[:limit]


def first_line(value: object, limit: int = 200) -> str:
    """The first non-empty line of an error: where the Docker engine and Python put the reason."""
    lines = _lines(value)
    return (lines[0] if lines else type(value).__name__)[:limit]


def _lines(value: object) -> list[str]:
    from .untrusted import clean

    return [line for line in clean(str(value)).strip().splitlines() if line.strip()]
