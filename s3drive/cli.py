"""Command-line tools: `flask --app wsgi <command>` or the `s3drive` console script."""

from __future__ import annotations

import sys
import time
from datetime import timedelta

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, NoAppException, with_appcontext

from .errors import AppError
from .timeutil import isoformat_z, utcnow


def register_cli(app: Flask) -> None:
    """Attach the s3drive commands to the app's CLI."""
    app.cli.add_command(create_user_command)
    app.cli.add_command(sweep_command)


@click.command("create-user")
@click.argument("username")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True, help="At least 8 characters.")
@click.option("--admin", is_flag=True, help="Make the user an administrator.")
@click.option(
    "--quota", type=click.IntRange(min=0), default=None, help="Quota in bytes (default: S3DRIVE_DEFAULT_QUOTA_BYTES)."
)
@with_appcontext
def create_user_command(username: str, password: str, admin: bool, quota: int | None) -> None:
    """Create a user (registration may be closed)."""
    from .schemas import CredentialsSchema  # noqa: PLC0415
    from .services.users import create_user  # noqa: PLC0415

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
    from .extensions import db  # noqa: PLC0415
    from .services.sweeper import sweep_until_done  # noqa: PLC0415

    try:
        counts = sweep_until_done(limit=limit, grace=grace)
    except Exception:
        db.session.rollback()
        raise
    finally:
        db.session.remove()
    click.echo(f"{isoformat_z(utcnow())} sweep " + " ".join(f"{name}={value}" for name, value in counts.items()))


@click.command(
    "dev",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def dev_command(args: tuple[str, ...]) -> None:
    """Run the dev stack: MiniStack S3, API and example frontend (see `s3drive dev --help`)."""
    from .dev.server import main as run_dev_stack  # noqa: PLC0415 - the dev stack imports the app factory

    sys.exit(run_dev_stack(list(args)))


def _load_app() -> Flask:
    """Create the app from S3DRIVE_* settings; a config error becomes one clear CLI line."""
    from . import ConfigError, create_app  # noqa: PLC0415 - this module is imported by create_app

    try:
        return create_app()
    except ConfigError as error:
        raise NoAppException(f"configuration error: {error}") from None


@click.group(cls=FlaskGroup, create_app=_load_app, add_version_option=False)
def cli() -> None:
    """s3drive: presigned-upload broker. `s3drive dev` runs the local stack; other commands use S3DRIVE_* settings."""


cli.add_command(dev_command)


def main() -> None:
    """Console entry point of the `s3drive` script."""
    cli.main(prog_name="s3drive")
