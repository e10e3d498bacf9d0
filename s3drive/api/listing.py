"""Listing and searching a user's files (GET /api/files/)."""

from __future__ import annotations

from flask import jsonify
from flask_jwt_extended import current_user
from marshmallow import fields, validate

from ..models import FileStatus
from ..schemas import BaseSchema, FileSchema
from ..services import listing as listing_service
from ..timeutil import isoformat_z
from . import Blueprint, auth_required

blp = Blueprint("listing", __name__, url_prefix="/api/files", description="Listing and search")


# -- schemas ----------------------------------------------------------------------------


class FileListQuerySchema(BaseSchema):
    status = fields.String(
        load_default=FileStatus.COMPLETE,
        validate=validate.OneOf(FileStatus.ALL),
        metadata={"description": "Only files with this status."},
    )
    folder = fields.String(
        load_default=None,
        validate=validate.Length(max=4096),
        metadata={
            "description": "Only files directly in this folder (`photos/2026`; empty for the root), and list the "
            "folders directly under it in `folders`. Omitted: files of every folder, and `folders` is null."
        },
    )
    q = fields.String(
        load_default=None,
        validate=validate.Length(max=listing_service.MAX_QUERY_LENGTH),
        metadata={"description": "Text the name or title contains, case-insensitive; % and _ are literal."},
    )
    tag = fields.String(
        load_default=None,
        validate=validate.Length(max=256),
        metadata={"description": "Only files with exactly this tag (case-insensitive, as tags are stored lowercase)."},
    )
    sort = fields.String(
        load_default=listing_service.DEFAULT_SORT,
        validate=validate.OneOf(listing_service.SORTS),
        metadata={"description": "created_at, file_name or size; a leading - sorts descending."},
    )
    limit = fields.Integer(
        load_default=listing_service.DEFAULT_LIMIT,
        validate=validate.Range(min=1, max=listing_service.MAX_LIMIT),
    )
    cursor = fields.String(
        load_default=None,
        validate=validate.Length(max=2048),
        metadata={"description": "`next_cursor` of the previous page, with the same sort."},
    )


class FileListSchema(BaseSchema):
    items = fields.List(fields.Nested(FileSchema))
    next_cursor = fields.String(
        allow_none=True, metadata={"description": "Pass as `cursor` for the next page; null on the last page."}
    )
    folders = fields.List(
        fields.String(),
        allow_none=True,
        metadata={
            "description": "Names of the folders directly under `folder` that hold files of the listed status "
            "(on every page); null when `folder` was not given."
        },
    )


# -- views ------------------------------------------------------------------------------


def _file_json(item: dict) -> dict:
    # The service's dict already has FileSchema's fields in order; only the timestamps need
    # formatting. Done in place, not dumped through FileSchema: 1,000 items take under 1 ms, not ~40.
    item["created_at"] = isoformat_z(item["created_at"])
    confirmed_at = item["confirmed_at"]
    item["confirmed_at"] = None if confirmed_at is None else isoformat_z(confirmed_at)
    return item


@blp.route("/", methods=["GET"])
@auth_required()
@blp.arguments(FileListQuerySchema, location="query", as_kwargs=True)
@blp.response(200, FileListSchema)
def list_files(**filters):
    """List the caller's files: filter by status, folder, text and tag; sort; page with cursors."""
    page = listing_service.list_files(current_user.id, **filters)
    return jsonify(
        {"items": [_file_json(item) for item in page.items], "next_cursor": page.next_cursor, "folders": page.folders}
    )
