"""Configuration: defaults, reading S3DRIVE_* variables, and start-up validation."""

from __future__ import annotations

import os
from typing import Any

from .parts import DEFAULT_PART_SIZE, GIB, MAX_OBJECT_SIZE, MAX_PART_SIZE, MAX_SINGLE_PUT, MIB, MIN_PART_SIZE

# Broad by default: documents, media and archives. Executables are refused by
# extension in policy.py whatever their declared type.
DEFAULT_ALLOWED_CONTENT_TYPES = [
    "image/*",
    "video/*",
    "audio/*",
    "text/*",
    "font/*",
    "model/*",
    "application/pdf",
    "application/json",
    "application/xml",
    "application/rtf",
    "application/zip",
    "application/x-zip-compressed",
    "application/gzip",
    "application/x-gzip",
    "application/x-tar",
    "application/x-bzip2",
    "application/x-xz",
    "application/x-7z-compressed",
    "application/vnd.rar",
    "application/epub+zip",
    "application/msword",
    "application/vnd.ms-*",
    "application/vnd.openxmlformats-officedocument.*",
    "application/vnd.oasis.opendocument.*",
    "application/octet-stream",
]

# S3DRIVE_LOG_FORMAT: one JSON object per line for log pipelines, or text for people (s3drive/logs.py).
LOG_FORMATS = ("json", "text")

# Keys are the names without the S3DRIVE_ prefix, as Flask stores them.
DEFAULTS: dict[str, Any] = {
    "DATABASE_URL": None,
    "S3_BUCKET": None,
    "S3_ENDPOINT_URL": None,
    "S3_REGION": "us-east-1",
    "S3_ADDRESSING_STYLE": "auto",
    "S3_KEY_PREFIX": "",
    "S3_MAX_WORKERS": 32,
    "S3_CONFIRM": "list",
    # Seconds an S3 call may wait for an answer (each of at most 2 attempts, after a 2 s connect):
    # with the defaults a dead S3 is a 503 within about 10 s, well inside gunicorn's 60 s.
    "S3_TIMEOUT": 3,
    "SSE": None,
    "SSE_KMS_KEY_ID": None,
    "JWT_SECRET_KEY": None,
    # Secrets tokens were signed with before a rotation: still accepted until those tokens expire.
    "JWT_PREVIOUS_SECRET_KEYS": [],
    "ACCESS_TOKEN_EXPIRES": 900,
    "REFRESH_TOKEN_EXPIRES": 2592000,
    "URL_EXPIRES_IN": 3600,
    "MAX_FILE_SIZE": 5 * GIB,
    "MAX_BATCH": 1000,
    "MULTIPART_THRESHOLD": 100 * MIB,
    "DEFAULT_PART_SIZE": DEFAULT_PART_SIZE,
    # A multipart upload holds its quota reservation this long (signing parts extends it).
    "MULTIPART_EXPIRES_IN": 24 * 3600,
    "DEFAULT_QUOTA_BYTES": 10 * GIB,
    "ALLOWED_CONTENT_TYPES": DEFAULT_ALLOWED_CONTENT_TYPES,
    "ALLOW_REGISTRATION": True,
    "CORS_ORIGINS": [],
    "RATELIMIT_STORAGE_URI": "memory://",
    "LOGIN_RATE_LIMIT": "10 per minute",
    # Wrong passwords a share link takes (POST /s/<token>), per link and per client address.
    "SHARE_PASSWORD_RATE_LIMIT": "10 per minute",
    "CHECK_DATABASE": True,
    # Seconds a process trusts what it learnt of an access token (its user active, the token not revoked)
    # before asking the database again: a logout elsewhere, or a disabled account, takes effect within
    # this time on every process (at once on the process that logged out). 0: ask on every request.
    "AUTH_CACHE_SECONDS": 5,
    # Lifetime of the tokens POST /api/uppy/session issues for Uppy 6's companionEndpoint.
    "UPPY_SESSION_EXPIRES": 3600,
    # How long after a URL expired the sweeper waits before settling its upload.
    "SWEEP_GRACE_SECONDS": 900,
    # Seconds between two runs of the sweeper task (the task queue's scheduler).
    "SWEEP_INTERVAL": 300,
    # The task queue's broker: redis://... where several hosts serve; unset, an embedded broker
    # (a SQLite file in the instance folder) that needs no server.
    "BROKER_URL": None,
    # Content inspection of every completed upload (API.md: Content inspection and previews).
    "INSPECT": True,
    "SERVE_UNINSPECTED": False,
    "QUARANTINE": False,
    "MAX_IMAGE_PIXELS": 100_000_000,
    "MAX_MEDIA_SECONDS": 21600,
    "ARCHIVE_MAX_RATIO": 100,
    "ARCHIVE_MAX_ENTRIES": 10000,
    "ARCHIVE_MAX_UNCOMPRESSED": 10 * GIB,
    "REJECT_ACTIVE_PDF": True,
    "THUMBNAIL_SIZE": 320,
    # Seconds a worker's claim on an inspection holds: the sweeper queues an inspection again once its
    # claim (or its queueing) is older, so a worker killed mid-task, or a message the broker lost,
    # delays an inspection but never forgets it. Longer than the task's time limit.
    "INSPECTION_LEASE": 600,
    # Seconds a statement may run or wait for a lock (PostgreSQL), or wait for the write lock
    # (SQLite), before the request answers 503 database_unavailable.
    "DATABASE_TIMEOUT": 8,
    # The base URL clients reach the API at (links in answers: Uppy's companion_endpoint). Unset, the
    # request's host is used, and only hosts in TRUSTED_HOSTS are accepted.
    "PUBLIC_URL": None,
    "TRUSTED_HOSTS": [],
    # Bearer token Prometheus sends to GET /metrics (an admin's access token works too).
    "METRICS_TOKEN": None,
    # Requests one process serves at once, /healthz aside; more answer 503 server_busy at once.
    # gunicorn.conf.py sets it to threads - 1, so a worker whose threads all wait on a slow S3 or
    # database still has a thread for /healthz. 0: no limit (the dev server, tests).
    "MAX_IN_FLIGHT": 0,
    # A TOML file of named upload profiles (profiles.py); none: only the built-in `default`.
    "UPLOAD_PROFILES_FILE": None,
    # json: one object per line (time, level, logger, message, request id, user id ...); the dev stack: text.
    "LOG_FORMAT": "json",
    # Set by the dev stack (`s3drive dev`) and by tests: they may run without a
    # bucket or JWT secret of the operator's.
    "DEV_STACK": False,
}

INT_SETTINGS = (
    "S3_MAX_WORKERS",
    "ACCESS_TOKEN_EXPIRES",
    "REFRESH_TOKEN_EXPIRES",
    "URL_EXPIRES_IN",
    "MAX_FILE_SIZE",
    "MAX_BATCH",
    "MULTIPART_THRESHOLD",
    "DEFAULT_PART_SIZE",
    "MULTIPART_EXPIRES_IN",
    "DEFAULT_QUOTA_BYTES",
    "SWEEP_GRACE_SECONDS",
    "UPPY_SESSION_EXPIRES",
    "S3_TIMEOUT",
    "DATABASE_TIMEOUT",
    "MAX_IN_FLIGHT",
    "SWEEP_INTERVAL",
    "MAX_IMAGE_PIXELS",
    "MAX_MEDIA_SECONDS",
    "ARCHIVE_MAX_RATIO",
    "ARCHIVE_MAX_ENTRIES",
    "ARCHIVE_MAX_UNCOMPRESSED",
    "THUMBNAIL_SIZE",
    "INSPECTION_LEASE",
    "AUTH_CACHE_SECONDS",
)
ZERO_ALLOWED = ("DEFAULT_QUOTA_BYTES", "SWEEP_GRACE_SECONDS", "MAX_IN_FLIGHT", "AUTH_CACHE_SECONDS")
LIST_SETTINGS = ("ALLOWED_CONTENT_TYPES", "CORS_ORIGINS", "TRUSTED_HOSTS", "JWT_PREVIOUS_SECRET_KEYS")
BOOL_SETTINGS = (
    "ALLOW_REGISTRATION",
    "CHECK_DATABASE",
    "DEV_STACK",
    "INSPECT",
    "SERVE_UNINSPECTED",
    "QUARANTINE",
    "REJECT_ACTIVE_PDF",
)
MIN_JWT_SECRET_BYTES = 32
# The largest quota a user may have (1 PiB): sums over many users stay far from 64-bit overflow.
MAX_QUOTA_BYTES = 2**50


class ConfigError(RuntimeError):
    """A setting is missing or unsafe; raised at start-up, never per request."""


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return [str(item).strip() for item in value if str(item).strip()]


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"S3DRIVE_{name} must be true or false, got {value!r}")


def _as_int(name: str, value: Any, minimum: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"S3DRIVE_{name} must be an integer, got {value!r}") from None
    if isinstance(value, bool) or number < minimum:
        raise ConfigError(f"S3DRIVE_{name} must be an integer >= {minimum}, got {value!r}")
    return number


def normalize(config: dict[str, Any]) -> None:
    """Coerce settings read from the environment to their types, in place."""
    for name in INT_SETTINGS:
        config[name] = _as_int(name, config[name], 0 if name in ZERO_ALLOWED else 1)
    for name in LIST_SETTINGS:
        config[name] = _as_list(config[name])
    for name in BOOL_SETTINGS:
        config[name] = _as_bool(name, config[name])
    for name in (
        "S3_BUCKET",
        "JWT_SECRET_KEY",
        "S3_ENDPOINT_URL",
        "SSE",
        "SSE_KMS_KEY_ID",
        "PUBLIC_URL",
        "METRICS_TOKEN",
        "BROKER_URL",
        "UPLOAD_PROFILES_FILE",
    ):
        if config.get(name) is not None:
            config[name] = str(config[name]).strip() or None
    config["S3_KEY_PREFIX"] = str(config.get("S3_KEY_PREFIX") or "")
    config["S3_REGION"] = str(config["S3_REGION"])
    config["S3_CONFIRM"] = str(config["S3_CONFIRM"]).lower()
    config["LOG_FORMAT"] = str(config["LOG_FORMAT"]).strip().lower()
    config["S3_ADDRESSING_STYLE"] = str(config["S3_ADDRESSING_STYLE"]).lower()
    config["ALLOWED_CONTENT_TYPES"] = [t.lower() for t in config["ALLOWED_CONTENT_TYPES"]]


def validate(config: dict[str, Any]) -> None:
    """Raise ConfigError naming the variable when a setting is missing or unsafe."""
    relaxed = config.get("TESTING") or config.get("DEV_STACK")
    if not config.get("S3_BUCKET") and not relaxed:
        raise ConfigError("S3DRIVE_S3_BUCKET is required (the bucket uploads go to)")
    secret = config.get("JWT_SECRET_KEY") or ""
    if len(secret.encode()) < MIN_JWT_SECRET_BYTES and not relaxed:
        raise ConfigError(
            f"S3DRIVE_JWT_SECRET_KEY is required and must be at least {MIN_JWT_SECRET_BYTES} bytes"
            ' (generate one with: python -c "import secrets; print(secrets.token_urlsafe(48))")'
        )
    for previous in config["JWT_PREVIOUS_SECRET_KEYS"]:
        if len(previous.encode()) < MIN_JWT_SECRET_BYTES:
            raise ConfigError(f"S3DRIVE_JWT_PREVIOUS_SECRET_KEYS: each is at least {MIN_JWT_SECRET_BYTES} bytes")
    if config["S3_ADDRESSING_STYLE"] not in ("auto", "path", "virtual"):
        raise ConfigError("S3DRIVE_S3_ADDRESSING_STYLE must be auto, path or virtual")
    if config["S3_CONFIRM"] not in ("list", "head"):
        raise ConfigError("S3DRIVE_S3_CONFIRM must be list or head")
    if config["LOG_FORMAT"] not in LOG_FORMATS:
        raise ConfigError(f"S3DRIVE_LOG_FORMAT must be json or text, got {config['LOG_FORMAT']!r}")
    if config["SSE"] not in (None, "AES256", "aws:kms"):
        raise ConfigError("S3DRIVE_SSE must be AES256 or aws:kms")
    if config["SSE_KMS_KEY_ID"] and config["SSE"] != "aws:kms":
        raise ConfigError("S3DRIVE_SSE_KMS_KEY_ID needs S3DRIVE_SSE=aws:kms")
    if not 60 <= config["URL_EXPIRES_IN"] <= 7 * 24 * 3600:
        raise ConfigError("S3DRIVE_URL_EXPIRES_IN must be between 60 and 604800 seconds (SigV4 limit)")
    if config["MULTIPART_THRESHOLD"] < MIN_PART_SIZE:
        raise ConfigError("S3DRIVE_MULTIPART_THRESHOLD must be at least 5 MiB (S3's minimum part size)")
    if config["MULTIPART_THRESHOLD"] > MAX_SINGLE_PUT:
        raise ConfigError("S3DRIVE_MULTIPART_THRESHOLD must be at most 5 GiB (S3's single PUT limit)")
    if not MIN_PART_SIZE <= config["DEFAULT_PART_SIZE"] <= MAX_PART_SIZE:
        raise ConfigError("S3DRIVE_DEFAULT_PART_SIZE must be between 5 MiB and 5 GiB (S3's part size limits)")
    if not 60 <= config["MULTIPART_EXPIRES_IN"] <= 30 * 24 * 3600:
        raise ConfigError("S3DRIVE_MULTIPART_EXPIRES_IN must be between 60 and 2592000 seconds (30 days)")
    if config["MAX_FILE_SIZE"] > MAX_OBJECT_SIZE:
        raise ConfigError("S3DRIVE_MAX_FILE_SIZE must be at most 5 TiB (S3's object limit)")
    public_url = config.get("PUBLIC_URL")
    if public_url and not public_url.startswith(("https://", "http://")):
        raise ConfigError("S3DRIVE_PUBLIC_URL must be an http(s) URL, e.g. https://files.example.com")
    if not public_url and not config["TRUSTED_HOSTS"] and not relaxed:
        raise ConfigError(
            "S3DRIVE_PUBLIC_URL is required (the URL clients reach the API at), or list the accepted"
            " Host names in S3DRIVE_TRUSTED_HOSTS: the request's own Host header is never trusted"
        )
    if config.get("METRICS_TOKEN") and len(config["METRICS_TOKEN"]) < 16:
        raise ConfigError("S3DRIVE_METRICS_TOKEN must be at least 16 characters")
    if config["DEFAULT_QUOTA_BYTES"] > MAX_QUOTA_BYTES:
        raise ConfigError(f"S3DRIVE_DEFAULT_QUOTA_BYTES must be at most {MAX_QUOTA_BYTES} (1 PiB)")
    if config["MAX_BATCH"] > 10000:
        raise ConfigError("S3DRIVE_MAX_BATCH must be at most 10000")
    if not 16 <= config["THUMBNAIL_SIZE"] <= 2048:
        raise ConfigError("S3DRIVE_THUMBNAIL_SIZE must be between 16 and 2048 pixels")
    if not config["ALLOWED_CONTENT_TYPES"]:
        raise ConfigError("S3DRIVE_ALLOWED_CONTENT_TYPES must list at least one type")


def database_url(config: dict[str, Any], instance_path: str) -> str:
    """Return the configured database URL, or the SQLite file in the instance folder."""
    url = config.get("DATABASE_URL")
    if url:
        return str(url)
    os.makedirs(instance_path, exist_ok=True)
    return "sqlite:///" + os.path.join(instance_path, "s3drive.sqlite3")
