"""Domain errors: an HTTP status and a stable code each, raised by policy, storage and services.

Pure Python (no Flask): api/errors.py renders them in the API's envelope.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .sizes import distinct_sizes


class AppError(Exception):
    """An error with an HTTP status and a stable machine-readable code."""

    status = 500
    code = "internal_error"
    message = "An unexpected error occurred."

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message or self.message)
        self.message = message or self.message
        if code:
            self.code = code
        self.details = details or {}
        self.headers = headers or {}

    def to_dict(self) -> dict[str, Any]:
        """Return the error as the inner part of the envelope."""
        return {"code": self.code, "message": self.message, "details": self.details}


class BadRequest(AppError):
    status, code, message = 400, "bad_request", "The request body must be a JSON object."


class Unauthorized(AppError):
    status, code, message = 401, "unauthorized", "Authentication required."


class Forbidden(AppError):
    status, code, message = 403, "forbidden", "You are not allowed to do this."


class NotFound(AppError):
    status, code, message = 404, "not_found", "Not found."


class Conflict(AppError):
    status, code, message = 409, "conflict", "The request conflicts with the current state."


class ObjectMissing(Conflict):
    code, message = "object_missing", "The object has not reached storage yet."


class InvalidState(Conflict):
    code = "invalid_state"


class NotReady(Conflict):
    code = "not_ready"


class Gone(AppError):
    status, code, message = 410, "gone", "This link has expired, was used up, or its file is gone."


class FileTooLarge(AppError):
    status, code = 413, "file_too_large"


class BatchTooLarge(AppError):
    status, code = 413, "batch_too_large"


class ContentTypeNotAllowed(AppError):
    status, code = 415, "content_type_not_allowed"


# The refusals of a file by size and by type, in the one wording the server and the CLI both use.
# `profile`: the upload profile whose limit it is (None or "default": the global policy, not named).


def file_too_large(size: int, limit: int, profile: str | None = None) -> FileTooLarge:
    """Return the refusal of a file over the per-file limit: "File is 6 GiB; the limit is 5 GiB."."""
    size_text, limit_text = distinct_sizes(size, limit)
    details: dict[str, Any] = {"file_size": size, "max_file_size": limit}
    whose = ""
    if profile not in (None, "default"):
        details["profile"] = profile
        whose = f" for {profile} uploads"
    return FileTooLarge(f"File is {size_text}; the limit{whose} is {limit_text}.", details=details)


def content_type_refused(content_type: str, profile: str | None = None, allowed: Sequence[str] = ()) -> AppError:
    """Return the refusal of a file by its type (naming the profile's allowed types, under one)."""
    if profile in (None, "default"):
        return ContentTypeNotAllowed(f"Content type {content_type} is not allowed.")
    return ContentTypeNotAllowed(
        f"Content type {content_type} is not allowed for {profile} uploads (they take {', '.join(allowed)}).",
        details={"profile": profile, "allowed_content_types": list(allowed)},
    )


class ValidationFailed(AppError):
    """Bad field values; `field` names the one at fault (details: field -> messages)."""

    status, code, message = 422, "validation_error", "The request has invalid fields."

    def __init__(self, message: str | None = None, *, field: str | None = None, **kwargs):
        if field is not None and "details" not in kwargs:
            kwargs["details"] = {field: [message or self.message]}
        super().__init__(message, **kwargs)


class IntegrityMismatch(AppError):
    status, code = 422, "integrity_mismatch"


class MultipartRefused(IntegrityMismatch):
    """S3 refused a multipart call over the upload's state or parts; `s3_error` is S3's error code."""

    def __init__(self, s3_error: str, message: str = ""):
        super().__init__(message or s3_error, details={"s3_error": s3_error})
        self.s3_error = s3_error

    @property
    def size_differs(self) -> bool:
        """Tell whether S3 refused because the parts' total differs from MpuObjectSize."""
        return self.s3_error == "InvalidRequest" and "mp-object-size" in self.message.lower()


class QuotaExceeded(AppError):
    status, code = 507, "quota_exceeded"


class ServiceUnavailable(AppError):
    status = 503

    def __init__(self, message: str | None = None, *, retry_after: int = 5, **kwargs):
        super().__init__(message, **kwargs)
        self.headers.setdefault("Retry-After", str(retry_after))


class StorageUnavailable(ServiceUnavailable):
    code, message = "storage_unavailable", "Object storage is unavailable, try again later."


class DatabaseUnavailable(ServiceUnavailable):
    code, message = "database_unavailable", "The database is unavailable, try again later."


class ServerBusy(ServiceUnavailable):
    code, message = "server_busy", "The server is busy: every request thread is waiting; try again shortly."
