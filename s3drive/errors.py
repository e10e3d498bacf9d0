"""Domain errors and the one JSON error envelope every layer answers with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Response, current_app, g, has_request_context, jsonify, request


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


class FileTooLarge(AppError):
    status, code = 413, "file_too_large"


class BatchTooLarge(AppError):
    status, code = 413, "batch_too_large"


class ContentTypeNotAllowed(AppError):
    status, code = 415, "content_type_not_allowed"


class ValidationFailed(AppError):
    status, code, message = 422, "validation_error", "The request has invalid fields."


class IntegrityMismatch(AppError):
    status, code = 422, "integrity_mismatch"


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


ERROR_RENDERERS = "s3drive.error_renderers"


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """Build an error answer: the envelope, or the shape the request's blueprint renders errors in."""
    if has_request_context() and request.blueprint:
        renderer = current_app.extensions.get(ERROR_RENDERERS, {}).get(request.blueprint)
        if renderer is not None:
            return renderer(status, code, message, details, headers)
    return envelope_response(status, code, message, details, headers)


def render_errors_with(blueprint, renderer: Callable[..., Response]) -> None:
    """Have every error answer to the blueprint's requests built by renderer (error_response's arguments)."""

    def register(state) -> None:
        state.app.extensions.setdefault(ERROR_RENDERERS, {})[blueprint.name] = renderer

    blueprint.record_once(register)


def envelope_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """Build the envelope `{"error": {code, message, details}}` every error uses."""
    response = jsonify({"error": {"code": code, "message": message, "details": details or {}}})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def app_error_response(error: AppError) -> Response:
    """Render an AppError in the envelope."""
    return error_response(error.status, error.code, error.message, error.details, error.headers)


def log_internal_error(error: BaseException) -> None:
    """Log an unexpected exception with the request id, for the 500 answer."""
    current_app.logger.error("unhandled exception (request_id=%s)", g.get("request_id", "-"), exc_info=error)


# Werkzeug/webargs/flask-limiter raise HTTPExceptions; give each status a code of ours.
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "batch_too_large",
    415: "bad_request",
    422: "validation_error",
    429: "rate_limited",
}


def _flatten_messages(messages: Any) -> dict[str, Any]:
    # webargs nests messages by location ({"json": {...}}); clients want field -> messages.
    if isinstance(messages, dict) and len(messages) == 1 and next(iter(messages)) in ("json", "query", "form"):
        messages = next(iter(messages.values()))
    return messages if isinstance(messages, dict) else {"_schema": messages}


def http_error_response(error) -> Response:
    """Render a werkzeug HTTPException (routing, webargs, rate limits) in the envelope."""
    status = error.code or 500
    code = _HTTP_CODES.get(status, "internal_error" if status >= 500 else "bad_request")
    if status == 415:
        status = 400
    data = getattr(error, "data", None) or {}
    details: dict[str, Any] = {}
    headers: dict[str, str] = dict(data.get("headers") or {})
    message = error.description or error.name
    if status == 404:
        message = "No such route or resource."
    elif status == 413:
        message = "The request body is too large."
    elif status == 422 and "messages" in data:
        message = "The request has invalid fields."
        details = _flatten_messages(data["messages"])
    elif status == 429:
        message = f"Too many requests ({error.description}); slow down."
        limit = getattr(error, "limit", None)
        headers.setdefault("Retry-After", str(getattr(getattr(limit, "limit", None), "get_expiry", lambda: 60)()))
    response = error_response(status, code, message, details, headers)
    if status == 405 and getattr(error, "valid_methods", None):
        response.headers["Allow"] = ", ".join(error.valid_methods)
    return response
