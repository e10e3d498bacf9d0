"""Uppy drop-in: Companion-compatible S3 routes under /uppy and /uppy/<token>."""

from __future__ import annotations

from . import Blueprint

blp = Blueprint("uppy", __name__, url_prefix="", description="Uppy Companion-compatible S3 routes")
