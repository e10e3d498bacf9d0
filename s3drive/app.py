"""The app factory: settings, then extensions, blueprints, error answers and commands."""

from __future__ import annotations

import secrets
import select
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError, SQLAlchemyError
from sqlalchemy.pool import Pool

from . import api, commands, logs, policy, profiles, storage, tasks, tracing
from . import config as settings
from .api import auth as api_auth
from .api import errors as api_errors
from .config import ConfigError
from .extensions import cors, db, jwt, limiter, migrate
from .jsonprovider import OrjsonProvider

__all__ = ["create_app", "close_app"]

MIGRATIONS_DIR = str(Path(__file__).resolve().parent.parent / "migrations")


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Create the app: defaults, then S3DRIVE_* variables, then `config`; validate; wire up."""
    app = Flask(__name__, instance_relative_config=True)
    load_settings(app, config)
    register_logging(app)
    register_extensions(app)
    register_blueprints(app)
    register_errors(app)
    register_commands(app)
    check_start_up(app)
    return app


def close_app(app: Flask) -> None:
    """Release what an app holds: the S3 thread pool, database connections."""
    app.extensions["s3drive.storage"].close()
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def load_settings(app: Flask, config: dict[str, Any] | None) -> None:
    """Read defaults, S3DRIVE_* variables and `config`; validate them; derive Flask's own settings."""
    app.json = OrjsonProvider(app)
    app.config.update(settings.DEFAULTS)
    app.config.from_prefixed_env("S3DRIVE")
    app.config.update(config or {})
    settings.normalize(app.config)
    settings.validate(app.config)
    _derive_flask_settings(app)


def register_logging(app: Flask) -> None:
    """Write the process's logs in S3DRIVE_LOG_FORMAT, a line per request, secrets left out."""
    logs.init_app(app)


def register_extensions(app: Flask) -> None:
    """Bind the database, migrations, JWT, rate limits and CORS; build the policy and the S3 door."""
    db.init_app(app)
    migrate.init_app(app, db, directory=MIGRATIONS_DIR)
    jwt.init_app(app)
    limiter.init_app(app)
    if app.config["CORS_ORIGINS"]:
        cors.init_app(
            app,
            resources={r"/api/*": {}, r"/uppy/*": {}, r"/s/*": {}},
            origins=app.config["CORS_ORIGINS"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
            max_age=600,
        )
    storage.init_app(app)
    policy.init_app(app, profiles.load_profiles(app.config))
    tasks.init_app(app)
    tracing.init_app(app)


def register_blueprints(app: Flask) -> None:
    """Register the API's blueprints and its OpenAPI document."""
    api.init_app(app)
    api_auth.limit_only_limited_routes(app)


def register_errors(app: Flask) -> None:
    """Answer every error in the envelope (JWT failures included)."""
    api_errors.init_app(app)


def register_commands(app: Flask) -> None:
    """Add the s3drive commands to `flask --app wsgi`."""
    commands.init_app(app)


def _derive_flask_settings(app: Flask) -> None:
    config = app.config
    config["SQLALCHEMY_DATABASE_URI"] = settings.database_url(config, app.instance_path)
    # Flask refuses (400) a request whose Host is not listed; an empty list would refuse every one.
    config["TRUSTED_HOSTS"] = config["TRUSTED_HOSTS"] or None
    if config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        # Waiting writers queue on SQLite's lock instead of failing at once.
        config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {"connect_args": {"timeout": config["DATABASE_TIMEOUT"]}})
    else:
        config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", postgres_engine_options(config["DATABASE_TIMEOUT"]))
    if not config.get("JWT_SECRET_KEY"):
        # Only reachable in tests and the dev stack (validate() refuses it elsewhere).
        config["JWT_SECRET_KEY"] = secrets.token_urlsafe(48)
    config["JWT_ACCESS_TOKEN_EXPIRES"] = timedelta(seconds=config["ACCESS_TOKEN_EXPIRES"])
    config["JWT_REFRESH_TOKEN_EXPIRES"] = timedelta(seconds=config["REFRESH_TOKEN_EXPIRES"])
    config["JWT_TOKEN_LOCATION"] = ["headers"]
    config["RATELIMIT_HEADERS_ENABLED"] = True
    # A rate-limit store that is down (Redis) must not fail logins: count in memory meanwhile
    # (/readyz reports it), and give up on the store within a second.
    config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
    config.setdefault("RATELIMIT_SWALLOW_ERRORS", True)
    if str(config["RATELIMIT_STORAGE_URI"]).startswith(("redis://", "rediss://")):
        config.setdefault("RATELIMIT_STORAGE_OPTIONS", {"socket_connect_timeout": 1, "socket_timeout": 1})
    # A 10,000-file batch is ~2 MiB of JSON; refuse anything far bigger before parsing it.
    config["MAX_CONTENT_LENGTH"] = config.get("MAX_CONTENT_LENGTH") or 32 * 1024 * 1024
    config["API_TITLE"] = "s3drive"
    config["API_VERSION"] = "1.0"
    config["OPENAPI_VERSION"] = "3.0.3"
    config["OPENAPI_URL_PREFIX"] = "/"
    config["OPENAPI_JSON_PATH"] = "openapi.json"
    config["OPENAPI_SWAGGER_UI_PATH"] = "/docs"


def postgres_engine_options(timeout: int) -> dict[str, Any]:
    """Return engine options whose every wait is bounded by `timeout` seconds: connecting, a pooled
    connection, a statement, a lock (a held lock or a dead server is a 503, not a hung worker)."""
    millis = timeout * 1000
    return {
        # Not pool_pre_ping (a SELECT 1 round trip at every checkout, 2 of the 5 round trips of an
        # Uppy form): _check_alive below pings only connections idle for a while.
        "pool_size": 10,
        "max_overflow": 20,
        "pool_timeout": timeout,
        "connect_args": {
            "connect_timeout": max(1, timeout // 2),
            "options": f"-c statement_timeout={millis} -c lock_timeout={millis}",
        },
    }


# A pooled PostgreSQL connection idle longer than this is pinged (SELECT 1) before use: a firewall or
# a proxy may have dropped it silently. One used more recently is checked without a round trip.
PING_IDLE_AFTER = 10.0
_LAST_USE = "s3drive.last_use"


@event.listens_for(Pool, "checkin")
def _note_last_use(dbapi_connection, connection_record):
    connection_record.info[_LAST_USE] = time.monotonic()


@event.listens_for(Pool, "checkout")
def _check_alive(dbapi_connection, connection_record, connection_proxy):
    """Refuse a dead PostgreSQL connection at checkout; the pool then opens a new one.

    A server that restarts, or a connection it terminates, sends a last message and closes the
    socket: an idle connection whose socket is readable is dead, and is told without a round trip.
    A connection idle for PING_IDLE_AFTER seconds is pinged. A connection that dies while in use
    fails its statement (a 503) and SQLAlchemy invalidates the pool's older connections.
    """
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        return
    if dbapi_connection.closed or getattr(dbapi_connection, "broken", False):
        raise DisconnectionError("the connection is closed")
    last_use = connection_record.info.get(_LAST_USE)
    if last_use is None:
        return  # just opened
    if time.monotonic() - last_use > PING_IDLE_AFTER:
        try:
            dbapi_connection.execute("SELECT 1")
            dbapi_connection.rollback()
        except Exception as error:  # the driver's own errors: any failure means unusable
            raise DisconnectionError(f"the ping failed: {error}") from error
        return
    if _readable(dbapi_connection.fileno()):
        raise DisconnectionError("the server closed the connection (or sent an unasked message)")


def _readable(fd: int) -> bool:
    """Tell, without waiting, whether a socket has something to read (or is closed)."""
    if hasattr(select, "poll"):
        poll = select.poll()
        poll.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
        return bool(poll.poll(0))
    # gevent's worker patches select and takes poll away; its select has no FD_SETSIZE limit.
    readable, _, errored = select.select([fd], [], [fd], 0)
    return bool(readable or errored)


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


def check_start_up(app: Flask) -> None:
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
