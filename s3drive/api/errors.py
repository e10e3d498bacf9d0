"""The error envelope: every error answer, from every layer, is rendered here.

Domain errors (s3drive.errors), werkzeug/webargs/flask-limiter HTTP errors, database
outages, JWT failures and unexpected exceptions all become
`{"error": {"code", "message", "details"}}`, or the shape a blueprint asked for
(render_errors_with: the Uppy routes answer in Companion's shape).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, Response, current_app, g, has_request_context, jsonify, request
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from werkzeug.exceptions import HTTPException

from ..errors import AppError, DatabaseUnavailable
from ..extensions import db, jwt
from ..services import auth_cache
from ..services.auth_cache import Principal
from ..services.users import token_principal

ERROR_RENDERERS = "s3drive.error_renderers"
ERROR_RENDERER_PREFIXES = "s3drive.error_renderer_prefixes"


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """Build an error answer: the envelope `{"error": {code, message, details}}`, or the shape the
    request's blueprint renders its errors in (render_errors_with)."""
    renderer = _request_renderer() if has_request_context() else None
    answer = renderer(status, code, message, details, headers) if renderer is not None else None
    if answer is not None:
        return answer
    response = jsonify({"error": {"code": code, "message": message, "details": details or {}}})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def render_errors_with(blueprint, renderer: Callable[..., Response | None]) -> None:
    """Have the error answers to the blueprint's requests built by renderer (error_response's arguments);
    where it returns None, the envelope is used."""

    def register(state) -> None:
        state.app.extensions.setdefault(ERROR_RENDERERS, {})[blueprint.name] = renderer
        prefix = (state.url_prefix or "").rstrip("/")
        if prefix:
            state.app.extensions.setdefault(ERROR_RENDERER_PREFIXES, []).append((prefix, renderer))

    blueprint.record_once(register)


def _request_renderer() -> Callable[..., Response | None] | None:
    """Return the renderer of the request's blueprint; for a URL no route matched (404, 405), that of the
    blueprint whose URL prefix it falls under, so that /uppy/... answers in Companion's shape throughout."""
    if request.blueprint:
        return current_app.extensions.get(ERROR_RENDERERS, {}).get(request.blueprint)
    if request.url_rule is not None:
        return None
    for prefix, renderer in current_app.extensions.get(ERROR_RENDERER_PREFIXES, ()):
        if request.path == prefix or request.path.startswith(prefix + "/"):
            return renderer
    return None


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
    # A body over MAX_CONTENT_LENGTH: not a file or batch over its limit (those are AppErrors).
    413: "request_too_large",
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
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        message = f"The request body is larger than the {limit} bytes this server reads."
        details = {"max_body_bytes": limit}
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


def init_app(app: Flask) -> None:
    """Register the error handlers and the JWT callbacks that answer in the envelope."""
    _register_error_handlers(app)
    auth_cache.init_app(app)
    _register_jwt_callbacks()


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(AppError)
    def handle_app_error(error: AppError):
        db.session.rollback()
        return app_error_response(error)

    @app.errorhandler(HTTPException)
    def handle_http_error(error: HTTPException):
        return http_error_response(error)

    @app.errorhandler(OperationalError)
    def handle_database_down(error: OperationalError):
        if not database_unavailable(error):
            return handle_unexpected(error)
        _rollback_quietly()
        app.logger.error("database error (request_id=%s): %s", g.get("request_id", "-"), error)
        return app_error_response(DatabaseUnavailable())

    @app.errorhandler(Exception)
    def handle_unexpected(error: Exception):
        _rollback_quietly()
        log_internal_error(error)
        return internal_error_response()


def _rollback_quietly() -> None:
    """Roll the session back after a failed request; a database that is gone cannot, and that is fine."""
    try:
        db.session.rollback()
    except SQLAlchemyError:
        pass


def internal_error_response() -> Response:
    """Answer 500 internal_error with the request id, and nothing of what went wrong."""
    return error_response(
        500,
        "internal_error",
        "An unexpected error occurred; quote the request id when reporting it.",
        {"request_id": g.get("request_id")},
    )


# PostgreSQL error classes that mean "the database cannot serve now" (SQLSTATE classes 08
# connection exception, 53 insufficient resources, 57 operator intervention: admin shutdown,
# statement or lock timeout, 55P03 lock not available), and SQLite's words for the same.
_UNAVAILABLE_SQLSTATE_CLASSES = ("08", "53", "57")
_UNAVAILABLE_SQLSTATES = ("55P03", "40P01")
_UNAVAILABLE_WORDS = (
    "database is locked",
    "database table is locked",
    "unable to open database",
    "disk i/o error",
    "connect",
    "server closed",
    "timeout",
)


def database_unavailable(error: OperationalError) -> bool:
    """Tell whether an OperationalError means the database is down or too busy (503), not a bug (500)."""
    if error.connection_invalidated:
        return True
    sqlstate = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
    if sqlstate:
        return sqlstate[:2] in _UNAVAILABLE_SQLSTATE_CLASSES or sqlstate in _UNAVAILABLE_SQLSTATES
    # SQLite (and drivers that say nothing more) tell only in words.
    message = str(error.orig).lower()
    return any(words in message for words in _UNAVAILABLE_WORDS)


# (status, code, message) of each flask-jwt-extended failure, by the name of its loader.
_JWT_FAILURES = {
    "expired_token_loader": (401, "token_expired", "The token has expired; refresh it or log in again."),
    "revoked_token_loader": (401, "token_revoked", "The token has been revoked; log in again."),
    "user_lookup_error_loader": (401, "invalid_token", "The account for this token is disabled or gone."),
    "needs_fresh_token_loader": (401, "unauthorized", "A fresh login is required."),
    "token_verification_failed_loader": (401, "invalid_token", "The token failed verification."),
}


def _register_jwt_callbacks() -> None:
    for loader, answer in _JWT_FAILURES.items():
        getattr(jwt, loader)(lambda header, payload, answer=answer: error_response(*answer))

    @jwt.unauthorized_loader
    def missing_token(reason: str):
        return error_response(401, "unauthorized", f"Authentication required: {reason}.")

    @jwt.invalid_token_loader
    def invalid_token(reason: str):
        return error_response(401, "invalid_token", f"The token is invalid: {reason}.")

    @jwt.token_in_blocklist_loader
    def token_revoked(header: dict, payload: dict) -> bool:
        # One lookup answers both this and load_user below, which flask-jwt-extended calls next: from this
        # process's auth cache when it verified the token within AUTH_CACHE_SECONDS, else one query.
        principal, revoked = token_principal(payload["sub"], payload["jti"])
        g.token_user = (payload["jti"], principal)
        return revoked

    @jwt.user_lookup_loader
    def load_user(header: dict, payload: dict) -> Principal | None:
        # current_user is a Principal (id, is_admin), not the User row: views that show the account load it.
        jti, principal = g.pop("token_user", (None, None))
        if jti != payload["jti"]:
            principal, _ = token_principal(payload["sub"], payload["jti"])
        return principal
