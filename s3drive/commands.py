"""Flask CLI commands (`flask --app wsgi <command>`): create-user, sweep, inspect, init-bucket."""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from .config import MAX_QUOTA_BYTES
from .errors import AppError
from .extensions import db
from .schemas import CredentialsSchema
from .services import inspection, sweeper
from .services.users import create_user
from .storage import get_storage
from .timeutil import isoformat_z, utcnow


def init_app(app: Flask) -> None:
    """Attach the s3drive commands to the app's CLI."""
    for command in (create_user_command, sweep_command, inspect_command, init_bucket_command):
        app.cli.add_command(command)


@click.command("create-user")
@click.argument("username")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True, help="At least 8 characters.")
@click.option("--admin", is_flag=True, help="Make the user an administrator.")
@click.option(
    "--quota",
    type=click.IntRange(min=0, max=MAX_QUOTA_BYTES),
    default=None,
    help="Quota in bytes (default: S3DRIVE_DEFAULT_QUOTA_BYTES).",
)
@with_appcontext
def create_user_command(username: str, password: str, admin: bool, quota: int | None) -> None:
    """Create a user (registration may be closed)."""
    errors = CredentialsSchema().validate({"username": username, "password": password})
    if errors:
        raise click.ClickException("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))
    try:
        user = create_user(username, password, is_admin=admin, quota_bytes=quota)
    except AppError as error:
        raise click.ClickException(error.message) from None
    click.echo(f"Created user {user.username} ({user.id}){' as admin' if admin else ''}.")


@click.command("sweep")
@click.option(
    "--limit", type=click.IntRange(min=1, max=10_000), default=1000, show_default=True, help="Rows per batch."
)
@click.option(
    "--grace",
    type=click.IntRange(min=0),
    default=None,
    help="Seconds after a URL expired before its upload is settled (default: S3DRIVE_SWEEP_GRACE_SECONDS or 900).",
)
@click.option(
    "--loop",
    "interval",
    type=click.FloatRange(min=1),
    default=None,
    metavar="SECONDS",
    help="Keep running, sweeping every SECONDS (for a `sweeper:` process).",
)
@with_appcontext
def sweep_command(limit: int, grace: int | None, interval: float | None) -> None:
    """Settle expired uploads, abort stale multipart uploads, purge dead objects and old revocations."""
    grace_period = None if grace is None else timedelta(seconds=grace)
    while True:
        try:
            _sweep_once(limit, grace_period)
        except Exception as error:
            if interval is None:
                if isinstance(error, AppError):
                    raise click.ClickException(f"sweep failed: {error.message}") from None
                raise
            # A long-running sweeper outlives a database or S3 outage: log it, try again later.
            current_app.logger.exception("sweep failed")
        if interval is None:
            return
        time.sleep(interval)


def _sweep_once(limit: int, grace: timedelta | None) -> None:
    try:
        counts = sweeper.sweep_until_done(limit=limit, grace=grace)
    except Exception:
        db.session.rollback()
        raise
    finally:
        db.session.remove()
    fields = " ".join(f"{name}={value}" for name, value in asdict(counts).items())
    click.echo(f"{isoformat_z(utcnow())} sweep {fields}")


@click.command("inspect")
@click.argument("ids", nargs=-1)
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%SZ"]),
    help="Every complete file confirmed since this UTC time.",
)
@with_appcontext
def inspect_command(ids: tuple[str, ...], since: datetime | None) -> None:
    """Inspect complete files again (IDS, or --since), e.g. after a policy change; workers do the work."""
    if bool(ids) == (since is not None):
        raise click.UsageError("give file ids or --since, not both")
    try:
        queued = inspection.reinspect(ids=list(ids) or None, since=since and since.replace(tzinfo=UTC))
    except AppError as error:
        raise click.ClickException(error.message) from None
    click.echo(f"Queued {len(queued)} files for inspection.")


@click.command("init-bucket")
@click.option(
    "--abort-incomplete-days",
    type=click.IntRange(min=1),
    default=None,
    help="Days after which S3 aborts a multipart upload nobody completed"
    " (default: S3DRIVE_MULTIPART_EXPIRES_IN rounded up, plus a day).",
)
@with_appcontext
def init_bucket_command(abort_incomplete_days: int | None) -> None:
    """Set the bucket's CORS rules for S3DRIVE_CORS_ORIGINS and a lifecycle rule for incomplete uploads."""
    config = current_app.config
    days = abort_incomplete_days or math.ceil(config["MULTIPART_EXPIRES_IN"] / 86400) + 1
    try:
        get_storage().configure_bucket(config["CORS_ORIGINS"], days, prefix=config["S3_KEY_PREFIX"])
    except AppError as error:
        raise click.ClickException(f"init-bucket failed: {error.message}") from None
    origins = ", ".join(config["CORS_ORIGINS"]) or "none configured: CORS left as it was"
    click.echo(
        f"Bucket {config['S3_BUCKET']}: CORS for {origins}; incomplete multipart uploads aborted after {days} days."
    )
