"""Logs: one JSON object per line (S3DRIVE_LOG_FORMAT=json, the default), or text for humans (the dev stack).

Configured here, once, for every kind of process: the web processes (init_app, from the app factory;
gunicorn's own lines through s3drive/accesslog.py), and the task queue's workers and scheduler
(init_celery: Celery's setup_logging signal calls configure instead of Celery's own set-up).

Every line has time (ISO 8601, UTC), level, logger and message; in a request, its request id and
the user's id once authenticated; in a task, the task's name, id and attempt, and the request id of
the request that queued it (carried in the task message's headers). Each web request is one line
(method, route, path, status, duration_ms). Two filters sit on the handler itself, so every record
that reaches it passes them, whoever logged it (a library, gunicorn, Celery, a propagated child
logger): AddContext, then RedactSecrets, the net that takes out tokens, passwords and signatures.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson
from flask import Flask, g, has_request_context, request
from pythonjsonlogger.orjson import OrjsonFormatter
from werkzeug.wsgi import ClosingIterator

from .config import DEFAULTS, LOG_FORMATS

__all__ = [
    "AddContext",
    "JsonFormatter",
    "RedactSecrets",
    "TextFormatter",
    "bind",
    "configure",
    "current_request_id",
    "format_from_environ",
    "init_app",
    "init_celery",
    "note_user",
    "prepare_handler",
    "redact",
    "redact_target",
]

REQUEST_LOGGER = "s3drive.request"
# The task message header that carries the request id of the request that queued the task.
REQUEST_ID_HEADER = "s3drive_request_id"
# What the app leaves in the WSGI environ for the request line (and gunicorn's access log, if on).
ENVIRON_KEY = "s3drive.log"
_OURS = "_s3drive_handler"
# The format of this process's logs, as the app's settings say (init_app), for the Celery signals.
_state: dict[str, str] = {"format": DEFAULTS["LOG_FORMAT"]}

# -- redaction ------------------------------------------------------------------------------------

REDACTED = "[redacted]"
# Names whose value is a secret, wherever they appear as name=value, name: value, "name": "value".
_SECRET_NAMES = (
    r"password|passwd|secret|signature|policy|access_token|refresh_token|token|authorization"
    r"|x-amz-signature|x-amz-credential|x-amz-security-token"
)
_REDACTIONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)\b(bearer)\s+[\w.~+/=-]+"), rf"\1 {REDACTED}"),
    # A JWT, or any base64 JSON blob (a POST form's policy): they start with eyJ ('{"').
    (re.compile(r"\beyJ[\w+/=-]{6,}(?:\.[\w+/=-]*){0,2}"), "[jwt]"),
    # An Uppy session token (itsdangerous: base64 JSON list '["' then a signature).
    (re.compile(r"\bWy[\w-]{6,}\.[\w-]{10,}"), "[session]"),
    # A presigned URL's query: the signature, the access key and a session token.
    (re.compile(r"(?i)\b(x-amz-(?:signature|credential|security-token))=[^&\s\"'<>]+"), rf"\1={REDACTED}"),
    # "name": "value" and 'name': 'value' (a dict's repr, JSON, a form field), quotes kept.
    (
        re.compile(rf"(?i)([\"']?\b(?:{_SECRET_NAMES})\b[\"']?\s*[:=]\s*)([\"'])(?:\\.|(?!\2).)*?\2"),
        rf"\1\2{REDACTED}\2",
    ),
    # name=value, name: value, unquoted.
    (
        re.compile(rf"(?i)([\"']?\b(?:{_SECRET_NAMES})\b[\"']?\s*[:=]\s*)(?![\"'\[])[^\s&,;}}\]\"')]+"),
        rf"\1{REDACTED}",
    ),
    # The token in the path of an Uppy session (/uppy/<token>/s3/...) and of a share link (/s/<token>).
    # (A route names them <token>: kept.)
    (re.compile(r"/uppy/(?!s3(?:/|\b)|\[|<)[^/\s?#\"']+"), "/uppy/[session]"),
    (re.compile(r"/s/(?!\[|<)[^/\s?#\"']+"), "/s/[token]"),
)


# An Uppy session's token (/uppy/<token>/s3/...) authenticates uploads for as long as it lives, and a
# share link's (/s/<token>) opens its file for anyone: logs are read by more people than hold them.
SESSION_PREFIX = "/uppy/"
HIDDEN_SESSION = "[session]"
SHARE_PREFIX = "/s/"
HIDDEN_SHARE = "[token]"


def redact_target(uri: str) -> str:
    """Return a request target (path and query) without an Uppy session token or a share link's token."""
    if uri.startswith(SHARE_PREFIX):
        token, query_mark, query = uri[len(SHARE_PREFIX) :].partition("?")
        return f"{SHARE_PREFIX}{HIDDEN_SHARE}{query_mark}{query}" if token else uri
    if not uri.startswith(SESSION_PREFIX) or uri.startswith("/uppy/s3/"):
        return uri
    token, slash, rest = uri[len(SESSION_PREFIX) :].partition("/")
    return f"{SESSION_PREFIX}{HIDDEN_SESSION}{slash}{rest}" if token else uri


def redact(text: str) -> str:
    """Return text without bearer tokens, JWTs, passwords, presigned URL signatures or link tokens."""
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


_SECRET_KEY = re.compile(rf"(?i)(?:{_SECRET_NAMES})")


def _redact_value(value: Any, depth: int = 0) -> Any:
    """Redact a field's value: strings, and dicts and lists of them; a secret's name hides its value."""
    if isinstance(value, str):
        return redact(value)
    if depth > 4 or value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, dict):
        return {
            key: REDACTED if _SECRET_KEY.fullmatch(str(key)) else _redact_value(item, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_redact_value(item, depth + 1) for item in value]
    return redact(repr(value))


# The attributes every LogRecord has: everything else on a record came as `extra`.
_RECORD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class RedactSecrets(logging.Filter):
    """Take secrets out of a record's message, its extra fields, its traceback and stack (a handler filter)."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        for name, value in list(record.__dict__.items()):
            if name in _RECORD_ATTRS or value is None or isinstance(value, (bool, int, float)):
                continue
            setattr(record, name, REDACTED if _SECRET_KEY.fullmatch(name) else _redact_value(value))
        if record.exc_info:
            # Formatted once, redacted, and kept as text: formatters use exc_text when exc_info is gone.
            record.exc_text = self._formatter.formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


# -- context: the request, the task -------------------------------------------------------------

# In a task-queue worker: what every line of the running task carries (task_prerun to task_postrun).
_task: ContextVar[dict[str, Any] | None] = ContextVar("s3drive_task", default=None)


def note_user(user_id: str) -> None:
    """Remember who made this request, for its log lines (a caller that did not come with a JWT)."""
    g.log_user_id = user_id


def _user_id() -> str | None:
    noted = g.get("log_user_id")
    if noted is not None:
        return noted
    claims = g.get("_jwt_extended_jwt")  # what flask_jwt_extended.get_jwt() reads; set once verified
    return claims.get("sub") if claims else None


def _request_context() -> dict[str, Any]:
    found = {"request_id": g.get("request_id"), "user_id": _user_id()}
    return {name: value for name, value in found.items() if value is not None}


def current_request_id() -> str | None:
    """Return the id of the request being served, or of the request that queued the running task."""
    if has_request_context():
        return g.get("request_id")
    task = _task.get()
    return task.get("request_id") if task else None


def bind(**fields: Any) -> None:
    """Add fields to every further line of the running task (e.g. the file ids it works on)."""
    task = _task.get()
    if task is not None:
        _task.set({**task, **fields})


class AddContext(logging.Filter):
    """Add the request's id and user, or the task's name, id, attempt and request id (a handler filter).

    Fields the caller passed as `extra` win.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if has_request_context():
            context = _request_context()
        else:
            context = _task.get() or {}
        for name, value in context.items():
            if name not in record.__dict__:
                setattr(record, name, value)
        _add_trace(record)
        return True


def _add_trace(record: logging.LogRecord) -> None:
    """Add the current span's trace and span ids, so a line leads to its trace (only when tracing is on)."""
    otel = sys.modules.get("opentelemetry.trace")  # loaded by s3drive/tracing.py only with a collector
    if otel is None:
        return
    span_context = otel.get_current_span().get_span_context()
    if span_context.is_valid:
        record.trace_id = format(span_context.trace_id, "032x")
        record.span_id = format(span_context.span_id, "016x")


# -- formats ---------------------------------------------------------------------------------------


def _utc_iso(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(OrjsonFormatter):
    """python-json-logger's orjson formatter: time, level, logger, message, then the record's fields."""

    def __init__(self) -> None:
        super().__init__(["levelname", "name", "message"], rename_fields={"levelname": "level", "name": "logger"})

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        log_data["time"] = _utc_iso(record.created)
        super().add_fields(log_data, record, message_dict)


class TextFormatter(logging.Formatter):
    """One line for humans (the dev stack): time, level, logger, message, then the context in brackets."""

    CONTEXT = ("request_id", "user_id", "task", "task_id", "attempt", "file_ids", "trace_id")

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        context = " ".join(f"{name}={record.__dict__[name]}" for name in self.CONTEXT if name in record.__dict__)
        return f"{line} [{context}]" if context else line


def format_from_environ() -> str:
    """Return S3DRIVE_LOG_FORMAT as a process reads it before any app exists (gunicorn's master).

    An unknown value reads as the default here; the app itself refuses to start with it (config.validate).
    """
    value = os.environ.get("S3DRIVE_LOG_FORMAT", "").strip().lower()
    return value if value in LOG_FORMATS else DEFAULTS["LOG_FORMAT"]


def prepare_handler(handler: logging.Handler, log_format: str) -> logging.Handler:
    """Give a handler the format, the context and the redaction net (gunicorn's handlers too)."""
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    for kind in (AddContext, RedactSecrets):  # context first: redaction sees the fields it added
        for old in [f for f in handler.filters if isinstance(f, kind)]:
            handler.removeFilter(old)
        handler.addFilter(kind())
    return handler


def configure(log_format: str, level: int | str = logging.INFO, logfile: str | None = None) -> None:
    """Send the process's logs (the root logger) to stderr, or logfile, in log_format; idempotent."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(handler)
        handler.close()
    handler = logging.FileHandler(logfile) if logfile else logging.StreamHandler(sys.stderr)
    setattr(handler, _OURS, True)
    root.addHandler(prepare_handler(handler, log_format))
    root.setLevel(level)
    logging.captureWarnings(True)  # warnings.warn() lines become log lines, in the format
    # In JSON the app writes the request line (RequestLog below): the dev server's own would be a second.
    logging.getLogger("werkzeug").setLevel(logging.WARNING if log_format == "json" else logging.NOTSET)


# -- the web process ---------------------------------------------------------------------------------


def init_app(app: Flask) -> None:
    """Configure the process's logs from S3DRIVE_LOG_FORMAT; in JSON, log one line per request."""
    log_format = app.config["LOG_FORMAT"]
    _state["format"] = log_format
    if not app.config.get("TESTING"):  # pytest owns the logging of a test process
        configure(log_format)
    from flask.logging import default_handler

    app.logger.removeHandler(default_handler)  # the root's handler writes app.logger's lines too
    app.teardown_request(_note_for_request_log)
    if log_format == "json":
        app.wsgi_app = RequestLog(app.wsgi_app)


def _note_for_request_log(error: BaseException | None) -> None:
    """Leave the route, request id and user in the environ for the request line, written after the answer."""
    rule = request.url_rule
    request.environ[ENVIRON_KEY] = {"route": rule.rule if rule else None, **_request_context()}


class RequestLog:
    """WSGI middleware: one line per request, once the answer is sent (status, duration_ms, route, user).

    The one place requests are logged in JSON: only the app knows the route, the request id and the
    user, and this line is the same under gunicorn, the dev server or any WSGI server. gunicorn's
    access log is therefore off in JSON (gunicorn.conf.py); in text, the server's own line is kept
    (gunicorn's combined line, the dev server's) and this one is not written.
    """

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app
        self.logger = logging.getLogger(REQUEST_LOGGER)

    def __call__(self, environ: dict[str, Any], start_response):
        started = time.perf_counter()
        status: list[str] = []

        def remember_status(status_line: str, headers, exc_info=None):
            status[:] = [status_line]
            return start_response(status_line, headers, exc_info)

        try:
            body = self.wsgi_app(environ, remember_status)
        except BaseException:
            self.log(environ, "500", started)  # the server answers 500 for an exception that escaped
            raise
        return ClosingIterator(body, lambda: self.log(environ, status[0] if status else "500", started))

    def log(self, environ: dict[str, Any], status_line: str, started: float) -> None:
        """Write the request line."""
        status = int(status_line.split(None, 1)[0])
        noted = environ.get(ENVIRON_KEY) or {}
        route = noted.get("route")
        method = environ.get("REQUEST_METHOD", "-")
        path = redact_target(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""))
        fields = {
            "method": method,
            "route": route,
            "path": path,
            "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            "request_id": noted.get("request_id"),
            "user_id": noted.get("user_id"),
        }
        level = logging.WARNING if status >= 500 else logging.INFO
        self.logger.log(level, "%s %s %s", method, route or path, status, extra=fields)


# -- the task queue ------------------------------------------------------------------------------------


def init_celery(celery) -> None:
    """Have the worker and the scheduler log as the web processes do; carry request ids into tasks."""
    from celery import signals

    signals.setup_logging.connect(_celery_setup_logging, weak=False, dispatch_uid="s3drive.logs")
    signals.celeryd_init.connect(_quiet_worker, weak=False, dispatch_uid="s3drive.logs")
    signals.before_task_publish.connect(_carry_request_id, weak=False, dispatch_uid="s3drive.logs")
    signals.task_prerun.connect(_task_started, weak=False, dispatch_uid="s3drive.logs")
    signals.task_postrun.connect(_task_ended, weak=False, dispatch_uid="s3drive.logs")
    if _state["format"] == "json":
        _say_shutdown_in_json()
        # `celery beat` prints a banner before it sets up logging: in JSON, every line is a log line.
        beat = celery.Beat

        def quiet_beat(*args, **kwargs):
            kwargs["quiet"] = True
            return beat(*args, **kwargs)

        celery.Beat = quiet_beat


def _say_shutdown_in_json() -> None:
    """Have the worker's signal handlers write their notices ("worker: Warm shutdown") as JSON lines.

    Celery writes them from the signal handler straight to the file descriptor (no logging: its locks
    may be held by the code the signal interrupted); this does the same, with a line already encoded.
    """
    from celery.apps import worker as celery_worker

    write = getattr(celery_worker, "_original_os_write", os.write)

    def say(message: str, stream=sys.__stderr__) -> None:
        record = {"time": _utc_iso(time.time()), "level": "INFO", "logger": "celery.apps.worker", "message": message}
        try:
            write(stream.fileno(), orjson.dumps(record) + b"\n")
        except (OSError, ValueError, AttributeError):
            pass  # as Celery's: a lost notice never stops a shutdown

    if hasattr(celery_worker, "safe_say"):
        celery_worker.safe_say = say


def _celery_setup_logging(loglevel=None, logfile=None, **kwargs) -> None:
    """Celery's setup_logging signal: with a receiver, Celery leaves logging to it (worker and beat)."""
    configure(_state["format"], loglevel or logging.INFO, logfile)


def _quiet_worker(instance=None, **kwargs) -> None:
    """In JSON, no ASCII banner on stdout: what it says, the worker logs ("Connected to", "ready")."""
    if _state["format"] == "json" and instance is not None:
        instance.quiet = True


def _carry_request_id(headers: dict | None = None, **kwargs) -> None:
    """Put the request id (of the request, or of the task that queues another) in the message headers."""
    request_id = current_request_id()
    if request_id and headers is not None:
        headers.setdefault(REQUEST_ID_HEADER, request_id)


def _task_started(task_id=None, task=None, **kwargs) -> None:
    context: dict[str, Any] = {"task": task.name, "task_id": task_id, "attempt": (task.request.retries or 0) + 1}
    request_id = task.request.get(REQUEST_ID_HEADER)
    if request_id:
        context["request_id"] = request_id
    _task.set(context)


def _task_ended(**kwargs) -> None:
    _task.set(None)
