"""The one error the web layer answers with: an HTTP status and a message for a person.

Plain Python (no Tornado): seats.py and service.py raise it, and `classroom roster` reads the
seats without the web extra installed."""

from __future__ import annotations


class WebError(Exception):
    """Raised anywhere in a request: the answer is `{"error": message}` with `status`
    (api.Handler.write_error), and no log line: these are answers, not faults."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message
