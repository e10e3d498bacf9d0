"""gunicorn's access log, written for a fraction of its cost, with Uppy session tokens left out.

gunicorn formats each access line from a dict of some 60 atoms (every request header, response
header and WSGI variable, each escaped), then logs it: measured, a third of the CPU an Uppy form
costs (/uppy/s3/params: 1,180 req/s with the stock access log, 1,450 without). AccessLogger
writes the same line (gunicorn's default format, Apache's "combined") from the five values it
holds; a custom `access_log_format` still gets gunicorn's own formatting.

Both leave out the token of an Uppy session (`/uppy/<token>/s3/...`): it authenticates uploads
for as long as it lives, and logs are read by more people than the users who hold them. And the
token of a share link (`/s/<token>`), which opens its file for anyone.

With S3DRIVE_LOG_FORMAT=json (the default) gunicorn's own lines (start-up, workers booted or
killed) are JSON objects like the app's, through the same handler filters (s3drive/logs.py); so is
the access line, if the access log is turned on (gunicorn.conf.py turns it off in JSON: the app
writes the request line, with its route and user).
"""

from __future__ import annotations

import time
from typing import Any

from gunicorn.config import AccessLogFormat
from gunicorn.glogging import Logger

from .logs import ENVIRON_KEY, format_from_environ, prepare_handler, redact_target

COMBINED = AccessLogFormat.default


def _quoted(value: str) -> str:
    return value.replace('"', '\\"') if '"' in value else value


class AccessLogger(Logger):
    """gunicorn's Logger with a fast path for the default access log format (gunicorn.conf.py's logger_class)."""

    _clock: tuple[int, str] = (-1, "")
    json = False

    def setup(self, cfg) -> None:
        """Set up gunicorn's handlers, then give them s3drive's format and filters."""
        super().setup(cfg)
        self.json = format_from_environ() == "json"
        if self.json:
            for log in (self.error_log, self.access_log):
                for handler in log.handlers:
                    prepare_handler(handler, "json")

    def access(self, resp, req, environ: dict[str, Any], request_time) -> None:
        if not self.access_log_enabled:
            return
        if self.json:
            return self.access_json(resp, environ, request_time)
        if self.cfg.access_log_format != COMBINED:
            return super().access(resp, req, environ, request_time)
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        sent = getattr(resp, "sent", None)
        request_line = f"{environ['REQUEST_METHOD']} {redact_target(environ['RAW_URI'])} {environ['SERVER_PROTOCOL']}"
        line = (
            f"{environ.get('REMOTE_ADDR', '-')} - {self._get_user(environ) or '-'} {self.now()}"
            f' "{_quoted(request_line)}" {status} {sent if sent is not None else "-"}'
            f' "{_quoted(environ.get("HTTP_REFERER", "-"))}" "{_quoted(environ.get("HTTP_USER_AGENT", "-"))}"'
        )
        try:
            self.access_log.info(line)
        except Exception:  # as gunicorn's: a failed log line never fails the request
            self.exception("Failed to write the access log")

    def access_json(self, resp, environ: dict[str, Any], request_time) -> None:
        """Write the access line as the app's request line: the same fields, in JSON."""
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        noted = environ.get(ENVIRON_KEY) or {}
        method, path = environ["REQUEST_METHOD"], redact_target(environ.get("PATH_INFO", ""))
        fields = {
            "method": method,
            "route": noted.get("route"),
            "path": path,
            "status": int(status),
            "duration_ms": round(request_time.total_seconds() * 1000, 1),
            "request_id": noted.get("request_id"),
            "user_id": noted.get("user_id"),
            "remote_addr": environ.get("REMOTE_ADDR"),
            "bytes": getattr(resp, "sent", None),
        }
        try:
            self.access_log.info("%s %s %s", method, noted.get("route") or path, status, extra=fields)
        except Exception:  # as gunicorn's: a failed log line never fails the request
            self.exception("Failed to write the access log")

    def atoms(self, resp, req, environ: dict[str, Any], request_time) -> dict[str, Any]:
        atoms = super().atoms(resp, req, environ, request_time)
        atoms["r"] = f"{environ['REQUEST_METHOD']} {redact_target(environ['RAW_URI'])} {environ['SERVER_PROTOCOL']}"
        for key in ("U", "{raw_uri}e", "{path_info}e"):
            if isinstance(atoms.get(key), str):
                atoms[key] = redact_target(atoms[key])
        return atoms

    def now(self) -> str:
        """The time in Apache's format, formatted once a second."""
        second = int(time.time())
        clock = self._clock  # one tuple: threads never see one second's value with another's text
        if clock[0] != second:
            clock = self._clock = (second, time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime(second)))
        return clock[1]
