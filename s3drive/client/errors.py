"""Client errors: one class with a stable code, printed as `error: <code>: <message>`."""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """An error with a machine-readable code: from the API's envelope, or found locally."""

    def __init__(self, code: str, message: str, *, status: int | None = None, details: dict[str, Any] | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.details = details or {}


class ApiError(ClientError):
    """The API answered with its error envelope."""


class Cancelled(Exception):
    """A transfer was stopped on purpose (Ctrl-C); not retried, not reported as a failure."""
