"""s3drive: a Flask broker that presigns uploads straight to S3-compatible storage.

`create_app` is imported lazily, so that `s3drive.client` (the command-line client)
starts without loading Flask, SQLAlchemy and boto3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .config import ConfigError

if TYPE_CHECKING:
    from .app import create_app

__all__ = ["create_app", "ConfigError"]


def __getattr__(name: str):
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module 's3drive' has no attribute {name!r}")
