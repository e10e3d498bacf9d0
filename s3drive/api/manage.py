"""Managing one's files: metadata, download, delete, copy, tier."""

from __future__ import annotations

from flask import current_app, redirect
from flask_jwt_extended import current_user

from ..schemas import (
    BatchDeleteResultSchema,
    BatchDeleteSchema,
    CopySchema,
    DeletedSchema,
    DownloadArgsSchema,
    DownloadSchema,
    FileSchema,
    FileUpdateSchema,
    MoveFilesResultSchema,
    MoveFilesSchema,
    check_batch_size,
)
from ..services import files, folders
from .base import Blueprint, auth_required, errors

blp = Blueprint("manage", __name__, url_prefix="/api/files", description="File management")

NO_STORE = "private, no-store"


# -- routes ---------------------------------------------------------------------------------


def failed_items(failed: list) -> list[dict]:
    """Render a batch's (id, error) failures as [{"id", "error": {code, message, details}}]."""
    return [{"id": file_id, "error": error.to_dict()} for file_id, error in failed]


@blp.route("/<string:file_id>", methods=["PATCH"])
@errors(400, 401, 404, 409, 413, 422, 503)
@auth_required()
@blp.arguments(FileUpdateSchema)
@blp.response(200, FileSchema)
def update_file(changes, file_id):
    """Rename, retitle, retag or move a file, or change its storage tier."""
    return files.update_file(current_user.id, file_id, changes)


@blp.route("/<string:file_id>", methods=["DELETE"])
@errors(401, 404, 409, 422, 503)
@auth_required()
@blp.response(200, DeletedSchema)
def delete_file(file_id):
    """Delete a file: its object from S3, its bytes from the quota; the record stays as deleted."""
    files.delete_file(current_user.id, file_id)
    return {"id": file_id, "status": "deleted"}


@blp.route("/delete", methods=["POST"])
@errors(400, 401, 413, 422, 503)
@auth_required()
@blp.arguments(BatchDeleteSchema)
@blp.response(200, BatchDeleteResultSchema)
def delete_files(args):
    """Delete many files; each id is deleted or listed under failed with its error."""
    ids = args["ids"]
    check_batch_size(ids, current_app.config["MAX_BATCH"], "ids")
    outcome = files.delete_files(current_user.id, ids)
    return {"deleted": outcome.deleted, "failed": failed_items(outcome.failed)}


@blp.route("/move", methods=["POST"])
@errors(400, 401, 413, 422, 503)
@auth_required()
@blp.arguments(MoveFilesSchema)
@blp.response(200, MoveFilesResultSchema)
def move_files(args):
    """Put many files in a folder ('' is the top); each id is moved or listed under failed with its error."""
    ids = args["ids"]
    check_batch_size(ids, current_app.config["MAX_BATCH"], "ids")
    outcome = folders.move_files(current_user.id, ids, args["folder"])
    return {"folder": outcome.folder, "moved": outcome.moved, "failed": failed_items(outcome.failed)}


@blp.route("/<string:file_id>/download", methods=["GET"])
@errors(401, 404, 409, 422, 503)
@auth_required()
@blp.arguments(DownloadArgsSchema, location="query")
@blp.response(200, DownloadSchema)
@blp.alt_response(302, description="redirect=1: a redirect to the download URL")
def download(args, file_id):
    """Return a presigned download URL (or redirect to it) that names the file."""
    link = files.download_link(current_user.id, file_id, args["disposition"])
    # The URL is a bearer credential for the object: no shared cache may keep it.
    if args["redirect"]:
        response = redirect(link.url, code=302)
        response.headers["Cache-Control"] = NO_STORE
        return response
    return link, 200, {"Cache-Control": NO_STORE}


@blp.route("/<string:file_id>/copy", methods=["POST"])
@errors(400, 401, 404, 409, 413, 422, 503, 507)
@auth_required()
@blp.arguments(CopySchema)
@blp.response(201, FileSchema)
def copy_file(args, file_id):
    """Copy a file server-side to a new file (new id and key), counted against the quota."""
    return files.copy_file(current_user.id, file_id, args.get("file_name"), args.get("folder"))
