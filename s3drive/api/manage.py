"""Managing one's files: metadata, download, delete, copy, tier."""

from __future__ import annotations

from flask import current_app, redirect
from flask_jwt_extended import current_user
from marshmallow import fields, validate

from ..errors import BatchTooLarge, ValidationFailed
from ..policy import TIERS
from ..schemas import BaseSchema, ErrorBodySchema, FileSchema, TagsField, Timestamp
from ..services import manage
from . import Blueprint, auth_required

blp = Blueprint("manage", __name__, url_prefix="/api/files", description="File management")

NO_STORE = "private, no-store"


# -- schemas --------------------------------------------------------------------------------


class FileUpdateSchema(BaseSchema):
    file_name = fields.String(validate=validate.Length(min=1, max=4096))
    title = fields.String(allow_none=True, validate=validate.Length(max=200))
    description = fields.String(allow_none=True, validate=validate.Length(max=2000))
    tags = TagsField(allow_none=True, metadata={"type": "array", "items": {"type": "string"}})
    folder = fields.String(allow_none=True, validate=validate.Length(max=4096))
    tier = fields.String(validate=validate.OneOf(list(TIERS)))


class DeletedSchema(BaseSchema):
    id = fields.String()
    status = fields.String(metadata={"example": "deleted"})


class BatchDeleteSchema(BaseSchema):
    ids = fields.List(fields.String(validate=validate.Length(min=1, max=64)), required=True)


class FailedDeleteSchema(BaseSchema):
    id = fields.String()
    error = fields.Nested(ErrorBodySchema)


class BatchDeleteResultSchema(BaseSchema):
    deleted = fields.List(fields.String())
    failed = fields.List(fields.Nested(FailedDeleteSchema))


class DownloadArgsSchema(BaseSchema):
    disposition = fields.String(load_default="attachment", validate=validate.OneOf(["attachment", "inline"]))
    redirect = fields.Boolean(load_default=False)


class DownloadSchema(BaseSchema):
    url = fields.String()
    expires_at = Timestamp()


class CopySchema(BaseSchema):
    file_name = fields.String(validate=validate.Length(min=1, max=4096))
    folder = fields.String(allow_none=True, validate=validate.Length(max=4096))


# -- routes ---------------------------------------------------------------------------------


@blp.route("/<string:file_id>", methods=["PATCH"])
@auth_required()
@blp.arguments(FileUpdateSchema)
@blp.response(200, FileSchema)
def update_file(changes, file_id):
    """Rename, retitle, retag or move a file, or change its storage tier."""
    return manage.update_file(current_user.id, file_id, changes)


@blp.route("/<string:file_id>", methods=["DELETE"])
@auth_required()
@blp.response(200, DeletedSchema)
def delete_file(file_id):
    """Delete a file: its object from S3, its bytes from the quota; the record stays as deleted."""
    manage.delete_file(current_user.id, file_id)
    return {"id": file_id, "status": "deleted"}


@blp.route("/delete", methods=["POST"])
@auth_required()
@blp.arguments(BatchDeleteSchema)
@blp.response(200, BatchDeleteResultSchema)
def delete_files(args):
    """Delete many files; each id is deleted or listed under failed with its error."""
    ids = args["ids"]
    max_batch = current_app.config["MAX_BATCH"]
    if len(ids) > max_batch:
        raise BatchTooLarge(f"Delete at most {max_batch} files at once.", details={"max_batch": max_batch})
    if not ids:
        raise ValidationFailed("Nothing to delete.", details={"ids": ["Give at least one."]})
    outcome = manage.delete_files(current_user.id, ids)
    return {
        "deleted": outcome.deleted,
        "failed": [{"id": file_id, "error": error.to_dict()} for file_id, error in outcome.failed],
    }


@blp.route("/<string:file_id>/download", methods=["GET"])
@auth_required()
@blp.arguments(DownloadArgsSchema, location="query")
@blp.response(200, DownloadSchema)
@blp.alt_response(302, description="redirect=1: a redirect to the download URL")
def download(args, file_id):
    """Return a presigned download URL (or redirect to it) that names the file."""
    link = manage.download_link(current_user.id, file_id, args["disposition"])
    # The URL is a bearer credential for the object: no shared cache may keep it.
    if args["redirect"]:
        response = redirect(link["url"], code=302)
        response.headers["Cache-Control"] = NO_STORE
        return response
    return link, 200, {"Cache-Control": NO_STORE}


@blp.route("/<string:file_id>/copy", methods=["POST"])
@auth_required()
@blp.arguments(CopySchema)
@blp.response(201, FileSchema)
def copy_file(args, file_id):
    """Copy a file server-side to a new file (new id and key), counted against the quota."""
    return manage.copy_file(current_user.id, file_id, args.get("file_name"), args.get("folder"))
