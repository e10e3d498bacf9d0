"""Multipart uploads for large files: create, sign parts, status, complete, abort."""

from __future__ import annotations

from flask import jsonify
from flask_jwt_extended import current_user

from ..policy import get_policy
from ..schemas import (
    CompleteMultipartSchema,
    FileSchema,
    MultipartAbortSchema,
    MultipartCreateSchema,
    MultipartUploadSchema,
    SignedPartsSchema,
    SignPartsSchema,
)
from ..services import multipart
from ..timeutil import isoformat_z
from .base import Blueprint, auth_required, errors

blp = Blueprint("multipart", __name__, url_prefix="/api/files/multipart", description="Large files")


# -- routes --------------------------------------------------------------------------------


@blp.route("/", methods=["POST"])
@errors(400, 401, 413, 415, 422, 503, 507)
@auth_required()
@blp.arguments(MultipartCreateSchema)
@blp.response(201, MultipartUploadSchema)
def create(fields):
    """Start a multipart upload: policy and quota checked, the S3 upload created."""
    spec = get_policy().upload_spec(0, fields, multipart=True)
    return multipart.describe(multipart.create_multipart(current_user.id, spec))


@blp.route("/<string:file_id>/sign", methods=["POST"])
@errors(400, 401, 404, 409, 413, 422, 503)
@auth_required()
@blp.arguments(SignPartsSchema)
@blp.response(200, SignedPartsSchema)
def sign(args, file_id):
    """Sign PUT URLs for up to 1,000 parts; each URL signs its part's exact length."""
    parts = multipart.sign_parts(current_user.id, file_id, args["part_numbers"])
    # Built by hand, not dumped through marshmallow: signing batches of parts is a hot path.
    return jsonify(
        {
            "parts": [
                {"part_number": p["part_number"], "url": p["url"], "headers": p["headers"], "size": p["size"]}
                for p in parts
            ],
            "expires_at": isoformat_z(parts[0]["expires_at"]),
        }
    )


@blp.route("/<string:file_id>", methods=["GET"])
@errors(401, 404, 409, 422, 503)
@auth_required()
@blp.response(200, MultipartUploadSchema)
def status(file_id):
    """Return the upload with the parts S3 holds (resume after a reload) and bytes_uploaded."""
    record = multipart.get_multipart(current_user.id, file_id)
    return multipart.describe(record, multipart.list_parts(current_user.id, file_id))


@blp.route("/<string:file_id>/complete", methods=["POST"])
@errors(400, 401, 404, 409, 413, 422, 503, 507)
@auth_required()
@blp.arguments(CompleteMultipartSchema)
@blp.response(200, FileSchema)
def complete(args, file_id):
    """Complete the upload from the client's ETags, or from S3's part list for {}; size verified."""
    return multipart.complete_multipart(current_user.id, file_id, args["parts"])


@blp.route("/<string:file_id>", methods=["DELETE"])
@errors(401, 404, 409, 422, 503)
@auth_required()
@blp.response(200, MultipartAbortSchema)
def abort(file_id):
    """Abort the upload in S3 and release its quota reservation."""
    record = multipart.abort_multipart(current_user.id, file_id)
    return {"id": record.id, "status": record.status}
