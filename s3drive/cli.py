"""Command-line tools: `flask --app wsgi <command>` or the `s3drive` console script."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import with_appcontext

from .errors import AppError


def register_cli(app: Flask) -> None:
    """Attach the s3drive commands to the app's CLI."""
    app.cli.add_command(create_user_command)


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
