"""Presigning batches of uploads: validate, reserve quota, insert, sign; start multipart uploads."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from marshmallow import ValidationError
from sqlalchemy import delete, update

from ..bulk import bulk_insert
from ..errors import (
    AppError,
    ContentTypeNotAllowed,
    FileTooLarge,
    QuotaExceeded,
    StorageUnavailable,
    ValidationFailed,
)
from ..extensions import db
from ..models import File, FileStatus, new_ids, new_time_ordered_id
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

MIB = 1024**2
# S3's multipart rules: parts of 5 MiB to 5 GiB (the last may be smaller), at most 10,000 of them.
MIN_PART_SIZE = 5 * MIB
MAX_PART_SIZE = 5 * 1024**3
MAX_PARTS = 10_000

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


def presign_uploads(
    user_id: str,
    raw_specs: list[Any],
    *,
    multipart: bool = False,
    size_is_limit: bool = False,
) -> PresignResult:
    """Presign a batch: one transaction, quota reserved atomically, partial success.

    Files above the multipart threshold (every file with multipart=True) get multipart
    tickets; their CreateMultipartUpload calls run concurrently while the rest are signed.
    With size_is_limit, each file_size is the most a file may be, not its size (a POST form
    of unknown size): what is reserved and allowed is that, or what the quota has left if
    less, and confirm records what arrives.
    """
    config = current_app.config
    policy = get_policy()
    threshold = -1 if multipart else policy.multipart_threshold
    result = PresignResult()
    accepted: list[tuple[int, dict[str, Any]]] = []
    for index, raw in enumerate(raw_specs):
        try:
            spec = load_file_spec(raw, policy)
            if spec["size"] > threshold:
                spec = multipart_spec(spec, raw.get("part_size"))
            accepted.append((index, spec))
        except AppError as error:
            result.failures.append(UploadFailure(index, _raw_name(raw), error))

    now = utcnow()
    expires_at = now + timedelta(seconds=config["URL_EXPIRES_IN"])
    ids = new_ids(len(accepted))
    # Time-ordered, so the keys of newer batches sort after older ones (the upload watcher lists
    # a user's keys from its oldest watched batch on).
    batch_id = new_time_ordered_id()
    prefix = config["S3_KEY_PREFIX"]
    rows: list[dict[str, Any]] = []
    # (request index, position among the successful tickets, row) of each multipart upload.
    multipart_rows: list[tuple[int, int, dict[str, Any]]] = []
    if accepted:
        user = lock_user(user_id)
        available = available_bytes(user, now)
        for index, spec in accepted:
            if size_is_limit and 0 < available < spec["size"]:
                spec["size"] = available
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
            row = {
                **spec,
                "id": file_id,
                "user_id": user_id,
                "batch_id": batch_id,
                "s3_key": object_key(prefix, user_id, batch_id, file_id, spec["file_name"]),
                "status": FileStatus.PENDING,
                "size_declared": not size_is_limit,
                "created_at": now,
                "expires_at": expires_at,
            }
            if "part_size" in spec:
                row.update(status=FileStatus.UPLOADING, expires_at=multipart_expiry(now), upload_id=None)
                multipart_rows.append((index, len(rows) + len(multipart_rows), row))
            else:
                rows.append(row)
        if rows:
            bulk_insert(File.__table__, rows)
        if multipart_rows:
            bulk_insert(File.__table__, [row for _, _, row in multipart_rows])
        # Commit releases the quota lock before the S3 calls and the (CPU-only) signing below.
        db.session.commit()

    if not multipart_rows:
        result.failures.sort(key=lambda failure: failure.index)
        result.tickets = sign_tickets(rows)
        return result
    started = start_multipart_uploads([row for _, _, row in multipart_rows])
    tickets = sign_tickets(rows)  # while S3 answers the CreateMultipartUpload calls
    placed = finish_multipart_uploads(multipart_rows, started, result.failures)
    result.failures.sort(key=lambda failure: failure.index)
    result.tickets = _merge_tickets(tickets, placed)
    return result


def _merge_tickets(tickets: list[dict[str, Any]], placed: list[tuple[int, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Put multipart tickets back at their positions among the others (request order)."""
    merged: list[dict[str, Any]] = []
    others = iter(tickets)
    for position, ticket in placed:
        while len(merged) < position:
            merged.append(next(others))
        merged.append(ticket)
    merged.extend(others)
    return merged


# -- multipart uploads ----------------------------------------------------------------------


def part_count(size: int, part_size: int) -> int:
    """Return how many parts a file of `size` bytes has (an empty file has one, empty, part)."""
    return max(1, -(-size // part_size))


def part_length(size: int, part_size: int, number: int) -> int:
    """Return the exact byte length of part `number` (1-based): part_size, or the rest for the last."""
    return min(part_size, size - (number - 1) * part_size) if size else 0


def choose_part_size(size: int, requested: Any = None) -> int:
    """Return the part size: the requested one if S3 allows it, else the default grown to fit 10,000 parts."""
    smallest = -(-size // MAX_PARTS)  # below this a file needs more than 10,000 parts
    if requested is None:
        default = current_app.config["DEFAULT_PART_SIZE"]
        # Grown in whole MiB, so clients see a round number.
        return max(default, -(-smallest // MIB) * MIB)
    if type(requested) is not int:
        raise ValidationFailed(details={"part_size": ["Not a valid integer."]})
    if not MIN_PART_SIZE <= requested <= MAX_PART_SIZE:
        raise ValidationFailed(
            f"part_size must be between {MIN_PART_SIZE} and {MAX_PART_SIZE} bytes.",
            details={"part_size": [f"Must be between {MIN_PART_SIZE} and {MAX_PART_SIZE}."]},
        )
    if requested < smallest:
        raise ValidationFailed(
            f"A file of {size} bytes needs parts of at least {smallest} bytes (at most {MAX_PARTS} parts).",
            details={"part_size": [f"Must be at least {smallest} for this file size."]},
        )
    return requested


def multipart_spec(spec: dict[str, Any], requested_part_size: Any = None) -> dict[str, Any]:
    """Return a validated upload spec turned into a multipart one (with its part_size)."""
    if spec["checksum_sha256"]:
        # S3 keeps SHA-256 only per part for multipart objects: a whole-file digest cannot be verified.
        raise ValidationFailed(
            "checksum_sha256 cannot be verified for multipart uploads; leave it out for large files.",
            details={"checksum_sha256": ["Not supported for multipart uploads."]},
        )
    return {**spec, "method": "PUT", "part_size": choose_part_size(spec["size"], requested_part_size)}


def multipart_expiry(now: datetime) -> datetime:
    """Return when a multipart upload started now stops holding its quota reservation."""
    return now + timedelta(seconds=current_app.config["MULTIPART_EXPIRES_IN"])


def start_multipart_uploads(rows: list[dict[str, Any]]) -> list[Future]:
    """Submit one CreateMultipartUpload per row to the S3 pool; return the futures of the upload ids."""
    storage = get_storage()
    config = current_app.config
    return [
        storage.executor.submit(
            storage.create_multipart_upload,
            row["s3_key"],
            content_type=row["content_type"],
            metadata={"file-id": row["id"]},
            storage_class=TIERS[row["tier"]],
            sse=config["SSE"],
            sse_kms_key_id=config["SSE_KMS_KEY_ID"],
        )
        for row in rows
    ]


def finish_multipart_uploads(
    multipart_rows: list[tuple[int, int, dict[str, Any]]], started: list[Future], failures: list[UploadFailure]
) -> list[tuple[int, dict[str, Any]]]:
    """Record the upload ids S3 returned; drop the rows S3 refused (adding failures); return placed tickets."""
    placed: list[tuple[int, dict[str, Any]]] = []
    updates: list[dict[str, Any]] = []
    refused: list[str] = []
    for (index, position, row), future in zip(multipart_rows, started, strict=True):
        try:
            row["upload_id"] = future.result()
        except StorageUnavailable as error:
            failures.append(UploadFailure(index, row["file_name"], error))
            refused.append(row["id"])
            continue
        updates.append({"id": row["id"], "upload_id": row["upload_id"]})
        placed.append((position - len(refused), multipart_ticket(row)))
    if updates:
        db.session.execute(update(File), updates)
    if refused:
        # The client never saw these ids; their reservations go with them.
        db.session.execute(delete(File).where(File.id.in_(refused)))
    db.session.commit()
    return placed


def multipart_ticket(row: dict[str, Any]) -> dict[str, Any]:
    """Return the multipart ticket of a started upload (its parts are signed by the multipart routes)."""
    return {
        "id": row["id"],
        "file_name": row["file_name"],
        "s3_key": row["s3_key"],
        "status": row["status"],
        "multipart": True,
        "upload_id": row["upload_id"],
        "part_size": row["part_size"],
        "part_count": part_count(row["size"], row["part_size"]),
        "file_size": row["size"],
        "expires_at": row["expires_at"],
    }


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
    # Exactly the declared size; or, for a size not declared, anything up to the reserved bound.
    smallest = row["size"] if row["size_declared"] else 0
    conditions: list = [["content-length-range", smallest, row["size"]]]
    conditions.extend({name: value} for name, value in fields.items())
    return conditions
