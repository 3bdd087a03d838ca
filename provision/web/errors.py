"""The one error the web layer answers with: an HTTP status and a message for a person."""

from __future__ import annotations


class WebError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message
