"""Presigning batches of uploads: validate, reserve quota, insert, sign."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from flask import current_app
from marshmallow import ValidationError

from ..bulk import bulk_insert
from ..errors import (
    AppError,
    ContentTypeNotAllowed,
    FileTooLarge,
    QuotaExceeded,
    ValidationFailed,
)
from ..extensions import db
from ..models import File, FileStatus, new_ids
from ..policy import (
    TIERS,
    PolicyError,
    UploadPolicy,
    normalize_checksum,
    normalize_folder,
    normalize_tags,
    object_key,
    sanitize_file_name,
)
from ..schemas import FileSpecSchema, load_file_spec_fast
from ..timeutil import utcnow
from . import get_policy, get_storage
from .users import available_bytes, lock_user

_file_spec_schema = FileSpecSchema()
_POLICY_ERRORS = {
    "validation_error": ValidationFailed,
    "file_too_large": FileTooLarge,
    "content_type_not_allowed": ContentTypeNotAllowed,
}


@dataclass
class UploadFailure:
    index: int
    file_name: str | None
    error: AppError


@dataclass
class PresignResult:
    tickets: list[dict[str, Any]] = field(default_factory=list)
    failures: list[UploadFailure] = field(default_factory=list)


def load_file_spec(raw: Any, policy: UploadPolicy) -> dict[str, Any]:
    """Validate one FileSpec and apply policy; return the normalized upload, or raise AppError."""
    if not isinstance(raw, dict):
        raise ValidationFailed("Each file must be a JSON object.", details={"_schema": ["Not an object."]})
    spec = load_file_spec_fast(raw)
    if spec is None:
        try:
            spec = _file_spec_schema.load(raw)
        except ValidationError as error:
            raise ValidationFailed(details=error.normalized_messages()) from None
    try:
        name = sanitize_file_name(spec["file_name"])
        policy.check_size(spec["file_size"])
        content_type = policy.check_content_type(spec["content_type"], name)
        if spec["method"] == "POST" and spec["checksum_sha256"]:
            # S3-compatible stores neither check nor keep a checksum sent in a POST form.
            raise PolicyError(
                "checksum_sha256 needs method PUT; POST forms cannot carry a verified checksum.",
                field="checksum_sha256",
            )
        return {
            "file_name": name,
            "content_type": content_type,
            "size": spec["file_size"],
            "checksum_sha256": normalize_checksum(spec["checksum_sha256"]),
            "tier": spec["tier"],
            "title": spec["title"],
            "description": spec["description"],
            "tags": normalize_tags(spec["tags"]),
            "folder": normalize_folder(spec["folder"]),
            "method": spec["method"],
        }
    except PolicyError as error:
        details = {error.field: [str(error)]} if error.field else {}
        raise _POLICY_ERRORS[error.code](str(error), details=details) from None


def _raw_name(raw: Any) -> str | None:
    name = raw.get("file_name") if isinstance(raw, dict) else None
    return name if isinstance(name, str) else None


def presign_uploads(user_id: str, raw_specs: list[Any]) -> PresignResult:
    """Presign a batch: one transaction, quota reserved atomically, partial success."""
    config = current_app.config
    policy = get_policy()
    result = PresignResult()
    accepted: list[tuple[int, dict[str, Any]]] = []
    for index, raw in enumerate(raw_specs):
        try:
            accepted.append((index, load_file_spec(raw, policy)))
        except AppError as error:
            result.failures.append(UploadFailure(index, _raw_name(raw), error))

    now = utcnow()
    expires_at = now + timedelta(seconds=config["URL_EXPIRES_IN"])
    ids = new_ids(len(accepted) + 1)
    batch_id = ids.pop()
    prefix = config["S3_KEY_PREFIX"]
    rows: list[dict[str, Any]] = []
    if accepted:
        user = lock_user(user_id)
        available = available_bytes(user, now)
        for index, spec in accepted:
            if spec["size"] > available:
                result.failures.append(
                    UploadFailure(
                        index,
                        spec["file_name"],
                        QuotaExceeded(
                            f"Uploading {spec['size']} bytes would exceed your quota ({max(available, 0)} bytes left).",
                            details={"available_bytes": max(available, 0), "file_size": spec["size"]},
                        ),
                    )
                )
                continue
            available -= spec["size"]
            file_id = ids.pop()
            rows.append(
                {
                    **spec,
                    "id": file_id,
                    "user_id": user_id,
                    "batch_id": batch_id,
                    "s3_key": object_key(prefix, user_id, batch_id, file_id, spec["file_name"]),
                    "status": FileStatus.PENDING,
                    "created_at": now,
                    "expires_at": expires_at,
                }
            )
        if rows:
            bulk_insert(File.__table__, rows)
        # Commit releases the quota lock before the (CPU-only) signing below.
        db.session.commit()

    result.failures.sort(key=lambda failure: failure.index)
    result.tickets = sign_tickets(rows)
    return result


def upload_headers(row: dict[str, Any]) -> dict[str, str]:
    """Return the headers a client must send with its PUT (all of them are signed)."""
    config = current_app.config
    headers = {"Content-Type": row["content_type"], "x-amz-meta-file-id": row["id"]}
    if row["checksum_sha256"]:
        headers["x-amz-checksum-sha256"] = row["checksum_sha256"]
        # Names the algorithm as the AWS SDKs do; stores such as moto keep the checksum only then.
        headers["x-amz-sdk-checksum-algorithm"] = "SHA256"
    if row["tier"] != "standard":
        headers["x-amz-storage-class"] = TIERS[row["tier"]]
    if config["SSE"]:
        headers["x-amz-server-side-encryption"] = config["SSE"]
        if config["SSE_KMS_KEY_ID"]:
            headers["x-amz-server-side-encryption-aws-kms-key-id"] = config["SSE_KMS_KEY_ID"]
    return headers


def sign_tickets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sign an upload URL (or POST form) for every inserted row."""
    storage = get_storage()
    expires_in = current_app.config["URL_EXPIRES_IN"]
    headers = [upload_headers(row) for row in rows]
    # Content-Length is signed too, but browsers set it themselves: not in `headers`.
    put_requests = [
        (row["s3_key"], {**row_headers, "Content-Length": str(row["size"])})
        for row, row_headers in zip(rows, headers, strict=True)
        if row["method"] == "PUT"
    ]
    put_urls = iter(storage.presign_put_many(put_requests, expires_in))
    tickets = []
    for row, row_headers in zip(rows, headers, strict=True):
        form_fields = None
        if row["method"] == "POST":
            url, form_fields = storage.presign_post(
                row["s3_key"], fields=row_headers, conditions=post_conditions(row, row_headers), expires_in=expires_in
            )
            row_headers = {}
        else:
            url = next(put_urls)
        tickets.append(
            {
                "id": row["id"],
                "file_name": row["file_name"],
                "s3_key": row["s3_key"],
                "status": row["status"],
                "method": row["method"],
                "presigned_url": url,
                "headers": row_headers,
                "fields": form_fields,
                "expires_at": row["expires_at"],
                "multipart": False,
            }
        )
    return tickets


def post_conditions(row: dict[str, Any], fields: dict[str, str]) -> list:
    """Return a POST policy with a condition for every field the form carries."""
    conditions: list = [["content-length-range", row["size"], row["size"]]]
    conditions.extend({name: value} for name, value in fields.items())
    return conditions
