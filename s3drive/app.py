"""The app factory: settings, extensions, blueprints, error handlers."""

from __future__ import annotations

import re
import secrets
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask, g, request
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from werkzeug.exceptions import HTTPException

from . import config as settings
from .config import ConfigError
from .errors import (
    AppError,
    DatabaseUnavailable,
    app_error_response,
    error_response,
    http_error_response,
    log_internal_error,
)
from .extensions import cors, db, jwt, limiter, make_api, migrate
from .policy import UploadPolicy
from .schemas import BatchUploadSchema, FileSpecSchema
from .storage import Storage

__all__ = ["create_app"]

MIGRATIONS_DIR = str(Path(__file__).resolve().parent.parent / "migrations")
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Create the app: defaults, then S3DRIVE_* variables, then `config`; validate; wire up."""
    app = Flask(__name__, instance_relative_config=True)
    app.json.sort_keys = False  # keep schema order; sorting big batch answers costs time
    app.config.update(settings.DEFAULTS)
    app.config.from_prefixed_env("S3DRIVE")
    app.config.update(config or {})
    settings.normalize(app.config)
    settings.validate(app.config)
    _derive_flask_settings(app)

    db.init_app(app)
    migrate.init_app(app, db, directory=MIGRATIONS_DIR)
    jwt.init_app(app)
    limiter.init_app(app)
    if app.config["CORS_ORIGINS"]:
        cors.init_app(
            app,
            resources={r"/api/*": {}, r"/uppy/*": {}},
            origins=app.config["CORS_ORIGINS"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
            max_age=600,
        )
    app.extensions["s3drive.storage"] = Storage(app.config)
    app.extensions["s3drive.policy"] = UploadPolicy.from_config(app.config)

    api = make_api(app)
    from .api import admin, auth, files, listing, manage, multipart, ops, uppy  # noqa: PLC0415

    # multipart before files: its routes must win over /api/files/<file_id>.
    for blueprint in (auth.blp, multipart.blp, listing.blp, files.blp, manage.blp, admin.blp, uppy.blp, ops.blp):
        api.register_blueprint(blueprint)
    # The upload route reads one of two bodies by hand; publish both shapes.
    api.spec.components.schema("FileSpec", schema=FileSpecSchema)
    api.spec.components.schema("BatchUpload", schema=BatchUploadSchema)
    app.extensions["s3drive.api"] = api

    _register_error_handlers(app)
    _register_request_id(app)
    _register_jwt_callbacks()
    from .cli import register_cli  # noqa: PLC0415

    register_cli(app)
    _check_start_up(app)
    return app


def close_app(app: Flask) -> None:
    """Release what an app holds: the upload watcher, the S3 thread pool, database connections."""
    from .services.watcher import EXTENSION_KEY  # noqa: PLC0415 - services import the app's extensions

    watcher = app.extensions.get(EXTENSION_KEY)
    if watcher is not None:
        watcher.stop()
    app.extensions["s3drive.storage"].close()
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def _derive_flask_settings(app: Flask) -> None:
    config = app.config
    config["SQLALCHEMY_DATABASE_URI"] = settings.database_url(config, app.instance_path)
    if config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        # Waiting writers queue on SQLite's lock instead of failing at once.
        config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {"connect_args": {"timeout": 30}})
    else:
        config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {"pool_pre_ping": True, "pool_size": 10, "max_overflow": 20})
    if not config.get("JWT_SECRET_KEY"):
        # Only reachable in tests and the dev stack (validate() refuses it elsewhere).
        config["JWT_SECRET_KEY"] = secrets.token_urlsafe(48)
    config["JWT_ACCESS_TOKEN_EXPIRES"] = timedelta(seconds=config["ACCESS_TOKEN_EXPIRES"])
    config["JWT_REFRESH_TOKEN_EXPIRES"] = timedelta(seconds=config["REFRESH_TOKEN_EXPIRES"])
    config["JWT_TOKEN_LOCATION"] = ["headers"]
    config["RATELIMIT_HEADERS_ENABLED"] = True
    # A 10,000-file batch is ~2 MiB of JSON; refuse anything far bigger before parsing it.
    config["MAX_CONTENT_LENGTH"] = config.get("MAX_CONTENT_LENGTH") or 32 * 1024 * 1024
    config["API_TITLE"] = "s3drive"
    config["API_VERSION"] = "1.0"
    config["OPENAPI_VERSION"] = "3.0.3"
    config["OPENAPI_URL_PREFIX"] = "/"
    config["OPENAPI_JSON_PATH"] = "openapi.json"
    config["OPENAPI_SWAGGER_UI_PATH"] = "/docs"
    config.setdefault("OPENAPI_SWAGGER_UI_URL", "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/")


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record):
    """Turn on WAL (readers don't block the writer) and foreign keys for SQLite."""
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # SQLite's advice for WAL: no fsync per commit; a power cut may lose the last
        # commits but never corrupts the database. Production runs on PostgreSQL.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


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
        db.session.rollback()
        app.logger.error("database error (request_id=%s): %s", g.get("request_id", "-"), error)
        return app_error_response(DatabaseUnavailable())

    @app.errorhandler(Exception)
    def handle_unexpected(error: Exception):
        try:
            db.session.rollback()
        except SQLAlchemyError:
            pass
        log_internal_error(error)
        return error_response(
            500,
            "internal_error",
            "An unexpected error occurred; quote the request id when reporting it.",
            {"request_id": g.get("request_id")},
        )


def _register_request_id(app: Flask) -> None:
    @app.before_request
    def assign_request_id():
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex

    @app.after_request
    def echo_request_id(response):
        response.headers["X-Request-ID"] = g.get("request_id") or uuid.uuid4().hex
        return response


def _register_jwt_callbacks() -> None:
    from .models import User  # noqa: PLC0415
    from .services.users import token_user  # noqa: PLC0415

    @jwt.unauthorized_loader
    def missing_token(reason: str):
        return error_response(401, "unauthorized", f"Authentication required: {reason}.")

    @jwt.invalid_token_loader
    def invalid_token(reason: str):
        return error_response(401, "invalid_token", f"The token is invalid: {reason}.")

    @jwt.expired_token_loader
    def expired_token(header: dict, payload: dict):
        return error_response(401, "token_expired", "The token has expired; refresh it or log in again.")

    @jwt.revoked_token_loader
    def revoked_token(header: dict, payload: dict):
        return error_response(401, "token_revoked", "The token has been revoked; log in again.")

    @jwt.token_in_blocklist_loader
    def token_revoked(header: dict, payload: dict) -> bool:
        # One query answers both this and load_user below, which flask-jwt-extended calls next.
        user, revoked = token_user(payload["sub"], payload["jti"])
        g.token_user = (payload["jti"], user)
        return revoked

    @jwt.user_lookup_loader
    def load_user(header: dict, payload: dict):
        jti, user = g.pop("token_user", (None, None))
        if jti != payload["jti"]:
            user = db.session.get(User, payload["sub"])
        return user if user is not None and user.is_active else None

    @jwt.user_lookup_error_loader
    def user_gone(header: dict, payload: dict):
        return error_response(401, "invalid_token", "The account for this token is disabled or gone.")

    @jwt.needs_fresh_token_loader
    def needs_fresh(header: dict, payload: dict):
        return error_response(401, "unauthorized", "A fresh login is required.")

    @jwt.token_verification_failed_loader
    def verification_failed(header: dict, payload: dict):
        return error_response(401, "invalid_token", "The token failed verification.")


def _check_start_up(app: Flask) -> None:
    """Fail at start-up, with one line naming the variable, on an unusable setup."""
    if app.config.get("TESTING") or not app.config["CHECK_DATABASE"]:
        return
    with app.app_context():
        try:
            db.session.execute(text("SELECT 1"))
        except SQLAlchemyError as error:
            reason = str(error.orig if hasattr(error, "orig") else error).strip().splitlines()[0]
            raise ConfigError(f"S3DRIVE_DATABASE_URL: cannot connect to the database ({reason})") from None
        finally:
            db.session.remove()
    if not app.extensions["s3drive.storage"].has_credentials():
        raise ConfigError(
            "No S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            " (or AWS_PROFILE, or use an instance role)"
        )
