"""Folders: make one (kept while empty), rename or move one with all it holds, delete an empty one."""

from __future__ import annotations

from flask_jwt_extended import current_user

from ..schemas import FolderCreateSchema, FolderDeletedSchema, FolderMoveSchema, FolderSchema
from ..services import folders
from .base import Blueprint, auth_required, errors

blp = Blueprint("folders", __name__, url_prefix="/api/folders", description="Folders")


@blp.route("", methods=["POST"])
@errors(400, 401, 422, 503)
@auth_required()
@blp.arguments(FolderCreateSchema)
@blp.response(201, FolderSchema)
@blp.alt_response(200, schema=FolderSchema, description="the folder existed already")
def create_folder(args):
    """Make a folder (its parents are listed as folders too); 200 if it existed already."""
    change = folders.create_folder(current_user.id, args["path"])
    return {"path": change.path}, 201 if change.created else 200


@blp.route("/<path:path>", methods=["PATCH"])
@errors(400, 401, 404, 422, 503)
@auth_required()
@blp.arguments(FolderMoveSchema)
@blp.response(200, FolderSchema)
def move_folder(args, path):
    """Rename or move a folder with its subfolders and files; into an existing folder, the two merge."""
    change = folders.move_folder(current_user.id, path, args["new_path"])
    return {"path": change.path, "files_moved": change.files_moved}


@blp.route("/<path:path>", methods=["DELETE"])
@errors(401, 404, 409, 422, 503)
@auth_required()
@blp.response(200, FolderDeletedSchema)
def delete_folder(path):
    """Delete an empty folder (and its empty subfolders); 409 while it holds files."""
    return {"path": folders.delete_folder(current_user.id, path), "status": "deleted"}
