"""Listing and searching a user's files (GET /api/files/)."""

from __future__ import annotations

from flask import jsonify
from flask_jwt_extended import current_user

from ..schemas import FileListQuerySchema, FileListSchema
from ..services import listing as listing_service
from ..timeutil import isoformat_z
from .base import Blueprint, auth_required, errors

blp = Blueprint("listing", __name__, url_prefix="/api/files", description="Listing and search")


# -- views ------------------------------------------------------------------------------


def _file_json(item: dict) -> dict:
    # The service's dict already has FileSchema's fields in order; only the timestamps need
    # formatting. Done in place, not dumped through FileSchema: 1,000 items take under 1 ms, not ~40.
    item["created_at"] = isoformat_z(item["created_at"])
    confirmed_at = item["confirmed_at"]
    item["confirmed_at"] = None if confirmed_at is None else isoformat_z(confirmed_at)
    return item


@blp.route("/", methods=["GET"])
@errors(401, 422, 503)
@auth_required()
@blp.arguments(FileListQuerySchema, location="query", as_kwargs=True)
@blp.response(200, FileListSchema)
def list_files(**filters):
    """List the caller's files: filter by status, folder, text and tag; sort; page with cursors."""
    page = listing_service.list_files(current_user.id, **filters)
    return jsonify(
        {"items": [_file_json(item) for item in page.items], "next_cursor": page.next_cursor, "folders": page.folders}
    )
