"""The HTTP API: blueprints of thin views (schema in, service call, schema out) and their registration."""

from __future__ import annotations

import re
import uuid

from flask import Flask, g, request
from flask_smorest import Api

from ..schemas import BatchUploadSchema, CompanionErrorSchema, ErrorSchema, FileSpecSchema
from . import admin, admission, auth, docs, files, folders, listing, manage, multipart, ops, shares, uppy
from .base import refuse_unstorable
from .errors import http_error_response

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class S3DriveApi(Api):
    """flask-smorest's Api, documenting and answering errors in the s3drive envelope."""

    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error):
        """Render werkzeug/webargs errors in the envelope (flask-smorest's own handler would not)."""
        return http_error_response(error)


def init_app(app: Flask) -> None:
    """Register the blueprints with the OpenAPI document, and the request id every answer carries."""
    docs.init_app(app)  # before the Api: it reads the Swagger UI URL when it registers /docs
    api = S3DriveApi(
        app,
        spec_kwargs={
            "components": {
                "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
            }
        },
    )
    # multipart before files: its routes must win over /api/files/<file_id>.
    for module in (auth, multipart, listing, files, manage, folders, shares, admin, uppy, ops):
        api.register_blueprint(module.blp)
    api.register_blueprint(uppy.session_blp)
    api.register_blueprint(shares.public_blp)
    # The upload route reads one of two bodies by hand; publish both shapes.
    api.spec.components.schema("FileSpec", schema=FileSpecSchema)
    api.spec.components.schema("BatchUpload", schema=BatchUploadSchema)
    api.spec.components.response(
        uppy.COMPANION_ERROR_RESPONSE,
        {
            "description": "An error, in Companion's shape (the Uppy routes)",
            "content": {"application/json": {"schema": CompanionErrorSchema}},
        },
    )
    app.extensions["s3drive.api"] = api
    _register_request_id(app)
    admission.init_app(app)
    app.before_request(refuse_unstorable_url)
    app.after_request(security_headers)


# Answers of these paths carry tokens, presigned URLs or private records: no cache may keep them.
PRIVATE_PATHS = ("/api/", "/uppy/", "/s/")


# Every answer carries these unless its view set them: no sniffing, no framing, no referrer.
SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Content-Security-Policy", "frame-ancestors 'none'"),
    ("Referrer-Policy", "no-referrer"),
)
PRIVATE_HEADERS = SECURITY_HEADERS + (("Cache-Control", "no-store"),)


def security_headers(response):
    """Add the headers every answer needs: no sniffing, no framing, no referrer, no caching of private data."""
    headers = response.headers
    private = request.path.startswith(PRIVATE_PATHS)
    present = {name.lower() for name, _ in headers}  # one pass over the few headers a view set
    for name, value in PRIVATE_HEADERS if private else SECURITY_HEADERS:
        if name.lower() not in present:
            headers.add(name, value)
    # CORS answers differ by Origin: shared caches must key on it (also when the request had none).
    if private and "Origin" not in headers.get("Vary", ""):
        headers.add("Vary", "Origin")
    return response


def refuse_unstorable_url() -> None:
    """Answer 422 for a NUL in the query or the path (`?q=%00`, `/api/files/%00`): no database stores one."""
    if b"%00" not in request.query_string and "\x00" not in request.path:
        return  # the usual case, told without decoding the query (a NUL in a URL is always %00)
    for name, value in request.args.items(multi=True):
        refuse_unstorable(value, name)
        refuse_unstorable(name)
    for name, value in (request.view_args or {}).items():
        refuse_unstorable(value, name)


def _register_request_id(app: Flask) -> None:
    @app.before_request
    def assign_request_id():
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex

    @app.after_request
    def echo_request_id(response):
        response.headers["X-Request-ID"] = g.get("request_id") or uuid.uuid4().hex
        return response
