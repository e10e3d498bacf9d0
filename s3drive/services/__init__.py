"""Plain functions: arguments in, model objects out; raise s3drive.errors.*; no HTTP."""

from __future__ import annotations

from flask import current_app

from ..policy import UploadPolicy
from ..storage import Storage


def get_storage() -> Storage:
    """Return the app's Storage (one per process)."""
    return current_app.extensions["s3drive.storage"]


def get_policy() -> UploadPolicy:
    """Return the app's upload policy."""
    return current_app.extensions["s3drive.policy"]
