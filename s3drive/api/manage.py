"""Managing one's files: metadata, download, delete, copy, tier."""

from __future__ import annotations

from . import Blueprint

blp = Blueprint("manage", __name__, url_prefix="/api/files", description="File management")
