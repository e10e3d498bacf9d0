"""Listing and searching a user's files (GET /api/files/)."""

from __future__ import annotations

from . import Blueprint

blp = Blueprint("listing", __name__, url_prefix="/api/files", description="Listing and search")
