"""Uppy drop-in: session tokens, Companion metadata, and Companion's S3 calls on top of uploads and multipart.

Stock `@uppy/aws-s3` speaks Companion's protocol, which differs from the native API in two ways:

- It never says how large a file is. Uppy sends the name, the type and the file's meta fields.
  An app may declare the size in the meta (`uppy.setFileMeta(id, {size: file.size})`); stock
  Uppy does not, and needs no code for it:
  - `/s3/params` (a POST form) signs a declared size exactly. An undeclared one may be anything up
    to the multipart threshold (or what the quota has left, if less): the record reserves that
    bound with size_declared false, and confirm replaces it with the size S3 reports.
  - Multipart uploads work with or without it. Declared: the size is reserved at create and the
    parts must add up to it. Undeclared: the record holds size 0 (nothing reserved) while the parts
    upload, and complete learns the size from S3's part list and checks it against the per-file
    limit and the quota under the user's lock, before the object exists; what does not fit is
    aborted and the record rejected.
- Uppy chooses its own part size (`getChunkSize`; by default max(5 MiB, size / 10,000)) and never
  tells it. So part URLs here sign no Content-Length (S3 still caps a part at 5 GiB, and only part
  numbers the upload can have are signed). At complete, the part plan (part size, count) is read
  back from S3 and written to the record, and the native `complete_multipart` verifies and settles
  it: every part present, the total equal to the record's size, the object's size checked again.

Simple uploads end in S3, and Uppy makes no call after one (and Uppy 6 refuses a form that
would redirect the browser back to us). So the process that signed a form watches for its object
(services/watcher.py) and confirms it, as the native confirm does, within about a second of its
arrival. An app may still confirm the keys Uppy reports, and the sweeper confirms what arrived
once the form expires.
"""

from __future__ import annotations

import email.header
import posixpath
from datetime import datetime, timedelta
from email.errors import HeaderParseError
from typing import Any
from urllib.parse import quote

from flask import current_app
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import update

from ..errors import (
    FileTooLarge,
    IntegrityMismatch,
    InvalidState,
    NotFound,
    QuotaExceeded,
    Unauthorized,
    ValidationFailed,
)
from ..extensions import db
from ..models import File, FileStatus, User
from ..storage import MultipartRefused, PartInfo
from ..timeutil import utcnow
from . import get_policy, get_storage, multipart
from .uploads import MAX_PARTS, MIN_PART_SIZE, part_count, presign_uploads
from .users import available_bytes, lock_user, token_user
from .watcher import get_watcher

SESSION_SALT = "s3drive.uppy-session"
DEFAULT_SESSION_SECONDS = 3600
# Meta fields Uppy may send that mean something here; Uppy sends all of a file's meta, the rest is ignored.
METADATA_KEYS = frozenset({"name", "type", "size", "title", "description", "tags", "folder", "relativePath", "tier"})
MAX_METADATA_VALUE = 4096
# Uppy 6 sends String(value) for every meta field, so an unset one arrives as "null".
_ABSENT = frozenset({"", "null", "undefined"})


# -- session tokens ------------------------------------------------------------------------


def _serializer() -> URLSafeSerializer:
    # Keyed by the JWT secret; the salt keeps these tokens apart from every other signed value.
    return URLSafeSerializer(current_app.config["JWT_SECRET_KEY"], salt=SESSION_SALT)


def session_lifetime() -> int:
    """Return how long an Uppy session token lives, in seconds (S3DRIVE_UPPY_SESSION_EXPIRES)."""
    return int(current_app.config.get("UPPY_SESSION_EXPIRES") or DEFAULT_SESSION_SECONDS)


def issue_session(user_id: str, access_jti: str | None) -> tuple[str, datetime]:
    """Return a token for the user's Companion endpoint and when it expires.

    It names the access token it was made with, so logging that token out ends the session too.
    """
    expires_at = utcnow() + timedelta(seconds=session_lifetime())
    token = _serializer().dumps([user_id, access_jti or "", int(expires_at.timestamp())])
    return token, expires_at.replace(microsecond=0)


def session_user(token: str) -> User:
    """Return the active user a session token was issued to, or raise 401 (invalid, expired, revoked)."""
    try:
        user_id, jti, expires = _serializer().loads(token)
    except (BadSignature, ValueError, TypeError):
        raise Unauthorized("The Uppy session token is invalid.", code="invalid_token") from None
    if not isinstance(expires, int) or expires <= utcnow().timestamp():
        raise Unauthorized("The Uppy session has expired; start a new one.", code="token_expired")
    user, revoked = token_user(user_id, jti) if isinstance(user_id, str) and isinstance(jti, str) else (None, False)
    if revoked:
        raise Unauthorized("The Uppy session was revoked (its login was logged out).", code="token_revoked")
    if user is None or not user.is_active:
        raise Unauthorized("The account for this session is disabled or gone.", code="invalid_token")
    return user


# -- metadata ------------------------------------------------------------------------------


def decode_text(value: Any, field: str) -> str:
    """Return a metadata string with RFC 2047 encoded-words (=?UTF-8?B?...?=) decoded."""
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ValidationFailed(details={field: ["Must be a string."]})
    text = str(value)
    if len(text) > MAX_METADATA_VALUE:
        raise ValidationFailed(details={field: [f"Longer than {MAX_METADATA_VALUE} characters."]})
    if "=?" not in text:
        return text  # the usual case; decode_header would also fold whitespace
    try:
        return str(email.header.make_header(email.header.decode_header(text)))
    except (HeaderParseError, LookupError, UnicodeError, ValueError):
        raise ValidationFailed(details={field: ["Not a valid RFC 2047 encoded word."]}) from None


def decode_metadata(raw: Any) -> dict[str, str]:
    """Return the allow-listed metadata fields, decoded; unset ('null') and unknown fields are dropped."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValidationFailed(details={"metadata": ["Must be an object of meta fields."]})
    metadata = {}
    for key, value in raw.items():
        if key not in METADATA_KEYS or value is None:
            continue
        text = decode_text(value, f"metadata.{key}").strip()
        if text not in _ABSENT:
            metadata[key] = text
    return metadata


def declared_size(metadata: dict[str, str]) -> int | None:
    """Return the file size the app declared in the meta, or None."""
    text = metadata.get("size")
    if text is None:
        return None
    if not text.isdigit() or len(text) > 18:
        raise ValidationFailed(details={"metadata.size": ["Must be the file's size in bytes."]})
    return int(text)


def file_spec(filename: Any, content_type: Any, metadata: dict[str, str], size: int) -> dict[str, Any]:
    """Return the FileSpec for an Uppy file: name and type, plus the allow-listed meta mapped to its fields."""
    name = decode_text(filename, "filename") if filename not in (None, "") else metadata.get("name", "")
    ctype = content_type if content_type not in (None, "") else metadata.get("type") or "application/octet-stream"
    folder = metadata.get("folder", "")
    relative = metadata.get("relativePath", "")
    if relative:
        # A dropped folder: "holiday/day1/a.jpg" files a.jpg under <folder>/holiday/day1.
        folder = posixpath.join(folder, posixpath.dirname(relative.replace("\\", "/")))
    spec: dict[str, Any] = {"file_name": name, "content_type": ctype, "file_size": size}
    for field in ("title", "description", "tags", "tier"):
        if field in metadata:
            spec[field] = metadata[field]
    if folder:
        spec["folder"] = folder
    return spec


# -- simple uploads: a POST form ----------------------------------------------------------


def upload_params(user_id: str, filename: Any, content_type: Any, raw_metadata: Any) -> dict[str, Any]:
    """Presign a POST form for one Uppy file, under the native policy and quota.

    A size declared in the meta is signed exactly. Without one (stock Uppy), the form allows up to
    the multipart threshold (where Uppy itself switches to multipart by default), capped by what
    the quota has left; that bound is reserved, and confirm keeps the size S3 reports. The upload
    watcher confirms the upload once it arrives: Uppy makes no call after a form upload.
    """
    metadata = decode_metadata(raw_metadata)
    size = declared_size(metadata)
    policy = get_policy()
    threshold = policy.multipart_threshold
    if size is not None and size > threshold:
        raise FileTooLarge(
            f"Files above {threshold} bytes are uploaded in parts: let Uppy use multipart for them.",
            details={"file_size": size, "multipart_threshold": threshold},
        )
    bound = min(threshold, policy.max_file_size) if size is None else size
    spec = {**file_spec(filename, content_type, metadata, bound), "method": "POST"}
    result = presign_uploads(user_id, [spec], size_is_limit=size is None)
    if result.failures:
        raise result.failures[0].error
    ticket = result.tickets[0]
    get_watcher().watch(user_id, ticket["id"], ticket["s3_key"], ticket["expires_at"])
    return {
        "method": "POST",
        "url": ticket["presigned_url"],
        "fields": ticket["fields"],
        "expires": current_app.config["URL_EXPIRES_IN"],
    }


# -- multipart uploads ----------------------------------------------------------------------


def create_upload(user_id: str, filename: Any, content_type: Any, raw_metadata: Any) -> File:
    """Start a multipart upload for an Uppy file; its size, if declared in the meta, is reserved."""
    metadata = decode_metadata(raw_metadata)
    size = declared_size(metadata)
    spec = file_spec(filename, content_type, metadata, size or 0)
    # The record's part size is a placeholder until complete reads Uppy's real one from S3
    # (Uppy's default: 5 MiB, or size / 10,000 for files too large for 10,000 parts of 5 MiB).
    placeholder = max(MIN_PART_SIZE, -(-(size or 0) // MAX_PARTS))
    return multipart.create_multipart(user_id, {**spec, "part_size": placeholder})


def find_upload(user_id: str, upload_id: Any, key: Any) -> File:
    """Return the user's multipart upload with this S3 key and upload id, or not_found."""
    if not isinstance(key, str) or not key or not isinstance(upload_id, str) or not upload_id:
        raise NotFound("No such multipart upload.")
    return multipart.find_multipart(user_id, key, upload_id)


def max_part_number(record: File) -> int:
    """Return the highest part number the upload can have (parts are at least 5 MiB but the last)."""
    return min(part_count(record.size, MIN_PART_SIZE), MAX_PARTS) if record.size else MAX_PARTS


def sign_part_urls(user_id: str, upload_id: Any, key: Any, part_numbers: list[int]) -> dict[int, str]:
    """Return an UploadPart URL per part number; Uppy picks the part size, so no length is signed."""
    record = find_upload(user_id, upload_id, key)
    _require_open(record)
    highest = max_part_number(record)
    for number in part_numbers:
        if not 1 <= number <= highest:
            raise ValidationFailed(
                f"Part numbers of this upload run from 1 to {highest}.",
                details={"partNumbers": [f"Each must be from 1 to {highest}; got {number}."]},
            )
    expires_in = current_app.config["URL_EXPIRES_IN"]
    now = utcnow()
    multipart.keep_reserved(record, now, now + timedelta(seconds=expires_in))
    numbers = list(dict.fromkeys(part_numbers))
    query = [(record.s3_key, None, {"partNumber": str(n), "uploadId": record.upload_id}) for n in numbers]
    urls = get_storage().signer.presign_many("PUT", query, expires_in=expires_in)
    return dict(zip(numbers, urls, strict=True))


def list_upload_parts(user_id: str, upload_id: Any, key: Any) -> list[PartInfo]:
    """Return the parts S3 holds for the upload (all of them: Uppy's part plan is its own)."""
    record = find_upload(user_id, upload_id, key)
    if record.status != FileStatus.UPLOADING:
        return []
    try:
        return get_storage().list_parts(record.s3_key, record.upload_id)
    except MultipartRefused:
        db.session.refresh(record)
        if record.status == FileStatus.COMPLETE:
            return []
        raise InvalidState(
            "Storage no longer has this multipart upload (aborted or expired); start a new one."
        ) from None


def complete_upload(user_id: str, upload_id: Any, key: Any, parts: list[dict[str, Any]]) -> File:
    """Complete an Uppy multipart upload from its [{part_number, etag}] list; idempotent.

    The part plan is read back from S3 and recorded, then the native complete verifies and settles it.
    """
    record = find_upload(user_id, upload_id, key)
    if record.status == FileStatus.COMPLETE:
        return record
    _require_open(record, check_expiry=False)
    numbers = [part["part_number"] for part in parts]
    storage = get_storage()
    try:
        stored = {part.part_number: part for part in storage.list_parts(record.s3_key, record.upload_id)}
    except MultipartRefused as refusal:
        if refusal.code != "NoSuchUpload":
            raise IntegrityMismatch(f"Storage refused to list the parts: {refusal.message}.") from None
        # Completed by an earlier call whose answer was lost? Then the object tells the size.
        _learn_size_from_object(user_id, record, len(parts))
        return multipart.complete_multipart(user_id, record.id, parts)
    sizes = _part_sizes(numbers, stored)
    _record_part_plan(user_id, record, sizes)
    return multipart.complete_multipart(user_id, record.id, parts)


def abort_upload(user_id: str, upload_id: Any, key: Any) -> File:
    """Abort the upload in S3 and release its reservation (native abort)."""
    record = find_upload(user_id, upload_id, key)
    return multipart.abort_multipart(user_id, record.id)


def object_location(key: str) -> str:
    """Return the object's (unsigned) URL, as Companion reports it."""
    return get_storage().signer.bucket_url.rstrip("/") + "/" + quote(key, safe="/~")


def bucket_name() -> str:
    """Return the bucket uploads go to."""
    return get_storage().signer.bucket


# -- helpers --------------------------------------------------------------------------------


def _require_open(record: File, check_expiry: bool = True) -> None:
    if record.status != FileStatus.UPLOADING or record.upload_id is None:
        raise InvalidState(f"The multipart upload is {record.status}.", details={"status": record.status})
    if check_expiry and (record.expires_at is None or record.expires_at <= utcnow()):
        raise InvalidState("The multipart upload has expired; start a new one.", details={"status": "expired"})


def _part_sizes(numbers: list[int], stored: dict[int, PartInfo]) -> list[int]:
    """Return the sizes of parts 1..n the client listed, as S3 holds them; refuse gaps and unknown parts."""
    if sorted(numbers) != list(range(1, len(numbers) + 1)):
        raise IntegrityMismatch(
            "List every part from 1 to the last one exactly once.", details={"part_numbers": sorted(numbers)[:100]}
        )
    missing = [number for number in numbers if number not in stored]
    if missing:
        raise IntegrityMismatch(
            f"{len(missing)} listed parts are not in storage; upload them, then complete again.",
            details={"missing_parts": missing[:100], "missing_count": len(missing)},
        )
    return [stored[number].size for number in range(1, len(numbers) + 1)]


def _record_part_plan(user_id: str, record: File, sizes: list[int]) -> None:
    """Write Uppy's part size (and, if undeclared, the total) to the record, or reject the upload."""
    total = sum(sizes)
    part_size = max(sizes[0], 1)
    if any(size != part_size for size in sizes[:-1]) or sizes[-1] > part_size:
        # Uppy cuts equal parts; a plan of uneven parts cannot be described by one part size.
        raise IntegrityMismatch(
            "Every part but the last must have the same size, and the last no more.",
            details={"part_sizes": sizes[:100]},
        )
    problem = None
    user = lock_user(user_id)
    db.session.refresh(record)
    if record.status != FileStatus.UPLOADING:
        db.session.commit()
        raise InvalidState(f"The multipart upload is {record.status}.", details={"status": record.status})
    if record.size and total != record.size:
        problem = IntegrityMismatch(
            f"The parts add up to {total} bytes, not the declared {record.size}; the upload was rejected.",
            details={"size": total, "declared_size": record.size},
        )
    elif not record.size:
        limit = get_policy().max_file_size
        available = available_bytes(user)
        if total > limit:
            problem = FileTooLarge(
                f"File is {total} bytes; the limit is {limit} bytes. The upload was rejected.",
                details={"size": total, "max_file_size": limit},
            )
        elif total > available:
            problem = QuotaExceeded(
                f"Uploading {total} bytes would exceed your quota ({max(available, 0)} bytes left); "
                "the upload was rejected.",
                details={"available_bytes": max(available, 0), "file_size": total},
            )
    if problem is not None:
        db.session.commit()
        _reject(record)
        raise problem
    # The record now reserves the real size, under the same lock that checked it fits.
    record.size = total
    record.part_size = part_size
    db.session.commit()


def _learn_size_from_object(user_id: str, record: File, count: int) -> None:
    """Record the plan of an object that an earlier, unrecorded completion made of `count` parts."""
    info = get_storage().head_object(record.s3_key)
    if info is None or (info.metadata or {}).get("file-id") != record.id:
        return  # the native complete reports the upload as gone
    user = lock_user(user_id)
    db.session.refresh(record)
    if record.status == FileStatus.UPLOADING:
        if not record.size and info.size <= available_bytes(user):
            record.size = info.size
        # Equal parts but the last: the part size that cuts this size into `count` parts.
        record.part_size = max(-(-record.size // max(count, 1)), 1)
    db.session.commit()


def _reject(record: File) -> None:
    """Abort the upload in S3 and mark the record rejected (its reservation goes with it)."""
    get_storage().abort_multipart(record.s3_key, record.upload_id)
    db.session.execute(
        update(File)
        .where(File.id == record.id, File.status == FileStatus.UPLOADING)
        .values(status=FileStatus.REJECTED)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
