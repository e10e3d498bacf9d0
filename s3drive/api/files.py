"""File routes: presign uploads, confirm them, read records, usage and limits."""

from __future__ import annotations

from flask import current_app, jsonify
from flask_jwt_extended import current_user

from ..policy import TIERS, UploadFailure, get_policy
from ..schemas import (
    BatchUploadResultSchema,
    ConfirmManyResultSchema,
    ConfirmManySchema,
    ConfirmOneResultSchema,
    ConfirmOneSchema,
    FileSchema,
    FormatsSchema,
    LimitsSchema,
    UploadTicketSchema,
    UsageSchema,
    check_batch_size,
    iter_upload_specs,
    load_upload_request,
    load_upload_spec,
)
from ..services import confirm as confirm_service
from ..services import files as file_service
from ..services import inspection, uploads, users
from ..timeutil import isoformat_z
from .base import Blueprint, auth_required, errors, json_object_body

blp = Blueprint("files", __name__, url_prefix="/api/files", description="Uploads and file records")


def _ticket_json(ticket: dict) -> dict:
    # Built by hand, not dumped through marshmallow: a 1,000-file batch is the hot path.
    return {**ticket, "expires_at": isoformat_z(ticket["expires_at"])}


@blp.route("/upload/", methods=["POST"])
@errors(400, 401, 413, 415, 422, 503, 507)
@auth_required()
@blp.doc(
    requestBody={
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [{"$ref": "#/components/schemas/FileSpec"}, {"$ref": "#/components/schemas/BatchUpload"}]
                }
            }
        },
    }
)
@blp.alt_response(
    200,
    schema={"oneOf": [UploadTicketSchema, BatchUploadResultSchema]},
    description="The single form answers one UploadTicket, the batch form a BatchUploadResult",
    success=True,
)
def upload():
    """Presign uploads: one FileSpec, or {"files": [FileSpec, ...]} for a batch."""
    body = json_object_body()
    policy = get_policy()
    items = load_upload_request(body, current_app.config["MAX_BATCH"])
    if items is None:
        result = uploads.presign_uploads(current_user.id, [load_upload_spec(body, policy)])
        if result.failures:
            raise result.failures[0].error
        return jsonify(_ticket_json(result.tickets[0]))

    # Each file is validated on its own (partial success), as presigning takes it.
    failures: list[UploadFailure] = []
    result = uploads.presign_uploads(current_user.id, iter_upload_specs(items, policy, failures))
    failures = sorted(failures + result.failures, key=lambda failure: failure.index)
    ok, failed = len(result.tickets), len(failures)
    files = "file" if ok == 1 else "files"
    message = f"Generated upload URLs for {ok} {files}" + (f", {failed} failed." if failed else ".")
    return jsonify(
        {
            "message": message,
            "successful": [_ticket_json(t) for t in result.tickets],
            "failed": [{"index": f.index, "file_name": f.file_name, "error": f.error.to_dict()} for f in failures],
            "total_requested": len(items),
            "total_successful": ok,
            "total_failed": failed,
        }
    )


@blp.route("/confirm_upload/", methods=["POST"])
@errors(400, 401, 404, 409, 413, 422, 503, 507)
@auth_required()
@blp.arguments(ConfirmOneSchema)
@blp.response(200, ConfirmOneResultSchema)
def confirm_upload(args):
    """Confirm one upload by id or s3_key: S3 must hold what was declared."""
    return confirm_service.confirm_one(current_user.id, file_id=args.get("id"), s3_key=args.get("s3_key"))


@blp.route("/confirm_uploads/", methods=["POST"])
@errors(400, 401, 413, 422, 503)
@auth_required()
@blp.arguments(ConfirmManySchema)
@blp.response(200, ConfirmManyResultSchema)
def confirm_uploads(args):
    """Confirm a batch of uploads by ids or s3_keys, concurrently against S3."""
    values = args.get("ids", args.get("s3_keys"))
    check_batch_size(values, current_app.config["MAX_BATCH"], "ids" if "ids" in args else "s3_keys")
    if "ids" in args:
        outcomes = confirm_service.confirm_uploads(current_user.id, ids=values)
    else:
        outcomes = confirm_service.confirm_uploads(current_user.id, s3_keys=values)
    ok = sum(o.status == "success" for o in outcomes)
    return {
        "message": "Upload confirmation processed",
        "results": outcomes,
        "total_requested": len(outcomes),
        "total_successful": ok,
        "total_failed": len(outcomes) - ok,
    }


@blp.route("/usage", methods=["GET"])
@errors(401, 503)
@auth_required()
@blp.response(200, UsageSchema)
def usage():
    """Return the caller's used, reserved and quota bytes."""
    # The row, not the cached principal: the used bytes are always fresh.
    return users.usage(users.get_user(current_user.id))


@blp.route("/formats", methods=["GET"])
@blp.response(200, FormatsSchema)
def formats():
    """Return what content inspection accepts: the allowed types of each kind and their limits (no auth needed)."""
    return inspection.formats()


@blp.route("/limits", methods=["GET"])
@blp.response(200, LimitsSchema)
def limits():
    """Return the upload limits clients should respect (no auth needed)."""
    config = current_app.config
    return {
        "max_file_size": config["MAX_FILE_SIZE"],
        "max_batch": config["MAX_BATCH"],
        "multipart_threshold": config["MULTIPART_THRESHOLD"],
        "default_part_size": config["DEFAULT_PART_SIZE"],
        "allowed_content_types": config["ALLOWED_CONTENT_TYPES"],
        "tiers": list(TIERS),
        "url_expires_in": config["URL_EXPIRES_IN"],
        "profiles": {name: profile.describe() for name, profile in get_policy().profiles.items()},
    }


@blp.route("/<string:file_id>", methods=["GET"])
@errors(401, 404, 422, 503)
@auth_required()
@blp.response(200, FileSchema)
def get_file(file_id):
    """Return one of the caller's files."""
    return file_service.get_owned_file(current_user.id, file_id)
