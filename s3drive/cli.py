"""The `s3drive` console script: Flask's CLI for the app (`s3drive sweep`, ...) plus `s3drive dev`."""

from __future__ import annotations

import sys

import click
from flask import Flask
from flask.cli import FlaskGroup, NoAppException

from .app import create_app
from .config import ConfigError


@click.command(
    "dev",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def dev_command(args: tuple[str, ...]) -> None:
    """Run the dev stack: MiniStack S3, API and example frontend (see `s3drive dev --help`)."""
    from .dev.server import main as run_dev_stack  # the dev stack is loaded only when asked for

    sys.exit(run_dev_stack(list(args)))


def _load_app() -> Flask:
    """Create the app from S3DRIVE_* settings; a config error becomes one clear CLI line."""
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
