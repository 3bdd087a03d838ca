"""The one error the web layer answers with: an HTTP status and a message for a person."""

from __future__ import annotations

import tornado.web


class WebError(tornado.web.HTTPError):
    """Raised anywhere in a request: the answer is `{"error": message}` with `status`
    (api.Handler.write_error). No log line: these are answers, not faults."""

    def __init__(self, status: int, message: str):
        super().__init__(status)
        self.status, self.message = status, message

    def __str__(self) -> str:
        return self.message
