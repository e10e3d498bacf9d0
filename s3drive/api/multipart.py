"""Multipart uploads for large files: create, sign parts, status, complete, abort."""

from __future__ import annotations

from flask import jsonify
from flask_jwt_extended import current_user
from marshmallow import fields, validate

from ..schemas import BaseSchema, FileSchema, FileSpecSchema, Timestamp
from ..services import multipart
from ..services.uploads import MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE
from ..timeutil import isoformat_z
from . import Blueprint, auth_required

blp = Blueprint("multipart", __name__, url_prefix="/api/files/multipart", description="Large files")


# -- schemas -------------------------------------------------------------------------------


class MultipartCreateSchema(FileSpecSchema):
    part_size = fields.Integer(
        strict=True,
        load_default=None,
        allow_none=True,
        validate=validate.Range(min=MIN_PART_SIZE, max=MAX_PART_SIZE),
        metadata={"description": "Bytes per part (the last may be smaller); default chosen from file_size."},
    )


class UploadedPartSchema(BaseSchema):
    part_number = fields.Integer()
    size = fields.Integer()
    etag = fields.String()


class MultipartUploadSchema(BaseSchema):
    id = fields.String()
    s3_key = fields.String()
    file_name = fields.String()
    upload_id = fields.String(allow_none=True)
    part_size = fields.Integer()
    part_count = fields.Integer()
    file_size = fields.Integer()
    status = fields.String()
    expires_at = Timestamp()
    parts = fields.List(fields.Nested(UploadedPartSchema), metadata={"description": "Only in the status answer."})
    bytes_uploaded = fields.Integer(metadata={"description": "Only in the status answer."})


class SignPartsSchema(BaseSchema):
    part_numbers = fields.List(
        fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_PARTS)),
        required=True,
        validate=validate.Length(min=1, max=multipart.MAX_SIGN_BATCH),
    )


class SignedPartSchema(BaseSchema):
    part_number = fields.Integer()
    url = fields.String()
    headers = fields.Dict(keys=fields.String(), values=fields.String())
    size = fields.Integer(metadata={"description": "Exact bytes to send; the URL signs this Content-Length."})


class SignedPartsSchema(BaseSchema):
    parts = fields.List(fields.Nested(SignedPartSchema))
    expires_at = Timestamp()


class CompletedPartSchema(BaseSchema):
    part_number = fields.Integer(strict=True, required=True, validate=validate.Range(min=1, max=MAX_PARTS))
    etag = fields.String(required=True, validate=validate.Length(min=1, max=multipart.MAX_ETAG_LENGTH + 2))


class CompleteMultipartSchema(BaseSchema):
    parts = fields.List(
        fields.Nested(CompletedPartSchema),
        load_default=None,
        validate=validate.Length(min=1, max=MAX_PARTS),
        metadata={"description": "Leave out (send {}) to let the server list the parts in S3."},
    )


class MultipartAbortSchema(BaseSchema):
    id = fields.String()
    status = fields.String()


# -- routes --------------------------------------------------------------------------------


@blp.route("/", methods=["POST"])
@auth_required()
@blp.arguments(MultipartCreateSchema)
@blp.response(201, MultipartUploadSchema)
def create(spec):
    """Start a multipart upload: policy and quota checked, the S3 upload created."""
    return multipart.describe(multipart.create_multipart(current_user.id, spec))


@blp.route("/<string:file_id>/sign", methods=["POST"])
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
@auth_required()
@blp.response(200, MultipartUploadSchema)
def status(file_id):
    """Return the upload with the parts S3 holds (resume after a reload) and bytes_uploaded."""
    record = multipart.get_multipart(current_user.id, file_id)
    return multipart.describe(record, multipart.list_parts(current_user.id, file_id))


@blp.route("/<string:file_id>/complete", methods=["POST"])
@auth_required()
@blp.arguments(CompleteMultipartSchema)
@blp.response(200, FileSchema)
def complete(args, file_id):
    """Complete the upload from the client's ETags, or from S3's part list for {}; size verified."""
    return multipart.complete_multipart(current_user.id, file_id, args["parts"])


@blp.route("/<string:file_id>", methods=["DELETE"])
@auth_required()
@blp.response(200, MultipartAbortSchema)
def abort(file_id):
    """Abort the upload in S3 and release its quota reservation."""
    record = multipart.abort_multipart(current_user.id, file_id)
    return {"id": record.id, "status": record.status}
