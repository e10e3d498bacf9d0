"""Uppy drop-in: session tokens, Companion metadata, and Companion's S3 calls on top of uploads and multipart.

Stock `@uppy/aws-s3` speaks Companion's protocol, which differs from the native API in two ways:

- It never says how large a file is. Uppy sends the name, the type and the file's meta fields.
  An app may declare the size in the meta (`uppy.setFileMeta(id, {size: file.size})`); stock
  Uppy does not, and needs no code for it:
  - `/s3/params` (a POST form) signs a declared size exactly, and reserves it. An undeclared one
    may be anything up to the multipart threshold (or what the quota has left, if less) and
    reserves nothing (size_declared false): several such forms at once, as stock Uppy sends them,
    must not each hold all that is left. Its bytes must fit the quota when they arrive: confirm
    (or the watcher, or the sweeper) counts the size S3 reports, or rejects the upload and deletes
    the object.
  - Multipart uploads work with or without it. Declared: the size is reserved at create and the
    parts must add up to it. Undeclared: the record holds size 0 (nothing reserved) while the parts
    upload; only part numbers that can still fit the quota are signed (every part but the last is
    at least 5 MiB), and complete learns the size from S3's part list and checks it against the
    per-file limit and the quota under the user's lock, before the object exists; what does not
    fit is aborted and the record rejected.
- Uppy chooses its own part size (`getChunkSize`; by default max(5 MiB, size / 10,000)) and never
  tells it. So part URLs here sign no Content-Length (S3 still caps a part at 5 GiB, and only part
  numbers the upload can have are signed). At complete, the part plan (part size, count) is read
  back from S3 and written to the record, and the native `complete_multipart` verifies and settles
  it: every part present, the total equal to the record's size, the object's size checked again.

Simple uploads end in S3, and Uppy makes no call after one (and Uppy 6 refuses a form that
would redirect the browser back to us). So each form is watched (services/watcher.py): a periodic
task confirms its object, as the native confirm does, within about a second
of its arrival. An app may still confirm the keys Uppy reports, and the sweeper confirms what arrived
once the form expires.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from flask import current_app
from itsdangerous import BadSignature, URLSafeSerializer

from ..errors import (
    FileTooLarge,
    IntegrityMismatch,
    InvalidState,
    MultipartRefused,
    NotFound,
    QuotaExceeded,
    Unauthorized,
)
from ..extensions import db
from ..models import File, FileStatus, User
from ..parts import MAX_PARTS, MIN_PART_SIZE, max_part_number, smallest_part_size
from ..policy import get_policy
from ..schemas import CompanionFile, load_upload_spec
from ..sizes import human_size
from ..storage import PartInfo, get_storage
from ..timeutil import utcnow
from . import multipart
from .auth_cache import Principal
from .quota import available_bytes, open_ledger
from .uploads import presign_uploads
from .users import token_principal

SESSION_SALT = "s3drive.uppy-session"
DEFAULT_SESSION_SECONDS = 3600


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


@lru_cache(maxsize=10_000)
def _session_claims(secret: str, token: str) -> tuple:
    """Return what a session token says, its signature checked: once per token text (a pure function
    of the secret and the text; a bad token raises every time). Expiry is checked on every use."""
    return tuple(URLSafeSerializer(secret, salt=SESSION_SALT).loads(token))


def session_user(token: str) -> Principal:
    """Return the active user a session token was issued to, or raise 401 (invalid, expired, revoked)."""
    try:
        user_id, jti, expires = _session_claims(current_app.config["JWT_SECRET_KEY"], token)
    except (BadSignature, ValueError, TypeError):
        raise Unauthorized("The Uppy session token is invalid.", code="invalid_token") from None
    if not isinstance(expires, int) or expires <= utcnow().timestamp():
        raise Unauthorized("The Uppy session has expired; start a new one.", code="token_expired")
    # The same cache as access tokens (a session is as good as the access token it was issued for).
    valid = isinstance(user_id, str) and isinstance(jti, str)
    user, revoked = token_principal(user_id, jti) if valid else (None, False)
    if revoked:
        raise Unauthorized("The Uppy session was revoked (its login was logged out).", code="token_revoked")
    if user is None:
        raise Unauthorized("The account for this session is disabled or gone.", code="invalid_token")
    return user


# -- simple uploads: a POST form ----------------------------------------------------------


def upload_params(user_id: str, upload: CompanionFile) -> dict[str, Any]:
    """Presign a POST form for one Uppy file, under the native policy and quota.

    A size declared in the meta is signed exactly and reserved. Without one (stock Uppy), the form
    allows up to the multipart threshold (where Uppy itself switches to multipart by default),
    capped by what the quota has left, and reserves nothing: confirm counts the size S3 reports if
    it still fits. The upload watcher confirms the upload once it arrives: Uppy makes no call
    after a form upload.
    """
    policy = get_policy()
    size, threshold = upload.declared_size, policy.multipart_threshold
    if size is not None and size > threshold:
        raise FileTooLarge(
            f"Files above {human_size(threshold)} are uploaded in parts: let Uppy use multipart for them.",
            details={"file_size": size, "multipart_threshold": threshold},
        )
    bound = min(threshold, policy.profile(upload.fields.get("profile")).max_file_size) if size is None else size
    spec = load_upload_spec({**upload.fields, "file_size": bound, "method": "POST"}, policy)
    spec.size_declared = size is not None
    spec.watch = True
    result = presign_uploads(user_id, [spec])
    if result.failures:
        raise result.failures[0].error
    ticket = result.tickets[0]
    return {
        "method": "POST",
        "url": ticket["presigned_url"],
        "fields": ticket["fields"],
        "expires": current_app.config["URL_EXPIRES_IN"],
    }


# -- multipart uploads ----------------------------------------------------------------------


def create_upload(user_id: str, upload: CompanionFile) -> File:
    """Start a multipart upload for an Uppy file; its size, if declared in the meta, is reserved."""
    size = upload.declared_size or 0
    # The record's part size is a placeholder until complete reads Uppy's real one from S3
    # (Uppy's default: 5 MiB, or size / 10,000 for files too large for 10,000 parts of 5 MiB).
    placeholder = max(MIN_PART_SIZE, smallest_part_size(size))
    raw = {**upload.fields, "file_size": size, "part_size": placeholder}
    return multipart.create_multipart(user_id, load_upload_spec(raw, get_policy(), multipart=True))


def find_upload(user_id: str, upload_id: Any, key: Any) -> File:
    """Return the user's multipart upload with this S3 key and upload id, or not_found."""
    if not isinstance(key, str) or not key or not isinstance(upload_id, str) or not upload_id:
        raise NotFound("No such multipart upload.")
    return multipart.find_multipart(user_id, key, upload_id)


def sign_part_urls(user_id: str, upload_id: Any, key: Any, part_numbers: list[int]) -> dict[int, str]:
    """Return an UploadPart URL per part number; Uppy picks the part size, so no length is signed."""
    record = find_upload(user_id, upload_id, key)
    _require_open(record)
    # Parts are at least 5 MiB but the last: a declared size bounds the part numbers.
    highest = max_part_number(record.size) if record.size else MAX_PARTS
    numbers = multipart.check_part_numbers(part_numbers, highest, "partNumbers")
    if not record.size:
        _check_parts_fit(record, numbers)
    expires_in = current_app.config["URL_EXPIRES_IN"]
    now = utcnow()
    multipart.keep_reserved(record, now, now + timedelta(seconds=expires_in))
    urls = get_storage().presign_upload_parts(record.s3_key, record.upload_id, [(n, None) for n in numbers], expires_in)
    return dict(zip(numbers, urls, strict=True))


def _check_parts_fit(record: File, numbers: list[int]) -> None:
    """Refuse part numbers an upload of undeclared size could only reach beyond the file limit or the quota.

    Part n follows n - 1 parts of at least 5 MiB: it needs more than (n - 1) x 5 MiB of room.
    """
    max_file_size = get_policy().profile_of(record.profile).max_file_size
    beyond_limit = _beyond(numbers, max_file_size)
    if beyond_limit:
        raise FileTooLarge(
            f"Part {beyond_limit[0]} would take this upload beyond the file limit of {human_size(max_file_size)}.",
            details={"max_file_size": max_file_size},
        )
    user = db.session.get(User, record.user_id)
    # What the quota's bound leaves is never more than what is left: if the parts fit in it, they
    # fit, without summing the user's reservations (quota.py); else count exactly.
    left = max(user.quota_bytes - user.used_bytes - user.reserved_bound, 0)
    beyond_quota = _beyond(numbers, left)
    if beyond_quota:
        left = max(available_bytes(user), 0)
        beyond_quota = _beyond(numbers, left)
    if beyond_quota:
        raise QuotaExceeded(
            f"Part {beyond_quota[0]} would take this upload beyond your quota ({human_size(left)} left).",
            details={"available_bytes": left},
        )


def _beyond(numbers: list[int], room: int) -> list[int]:
    """Return the part numbers an upload cannot reach within `room` bytes (parts of at least 5 MiB)."""
    highest = -(-room // MIN_PART_SIZE)
    return [number for number in numbers if number > highest]


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
        if refusal.s3_error != "NoSuchUpload":
            raise IntegrityMismatch(f"Storage refused to list the parts: {refusal.message}.") from None
        # Completed by an earlier call whose answer was lost? Then the object tells the size.
        _learn_size_from_object(user_id, record, len(parts))
        return multipart.complete_multipart(user_id, record.id, parts)
    sizes = _part_sizes(numbers, stored)
    _record_part_plan(user_id, record, sizes)
    return multipart.complete_multipart(user_id, record.id, parts)


def abort_upload(user_id: str, upload_id: Any, key: Any) -> File:
    """Abort the upload in S3 and release its reservation (native abort).

    Uppy aborts an upload the server refused (at complete, say): that one is over already, and
    Companion's contract answers {} to it, not a conflict.
    """
    record = find_upload(user_id, upload_id, key)
    if record.status in (FileStatus.REJECTED, FileStatus.EXPIRED):
        return record
    return multipart.abort_multipart(user_id, record.id)


def object_location(key: str) -> str:
    """Return the object's (unsigned) URL, as Companion reports it."""
    return get_storage().object_url(key)


def bucket_name() -> str:
    """Return the bucket uploads go to."""
    return get_storage().bucket


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
    ledger = open_ledger(user_id)
    db.session.refresh(record)
    if record.status != FileStatus.UPLOADING:
        db.session.commit()
        raise InvalidState(f"The multipart upload is {record.status}.", details={"status": record.status})
    try:
        if record.size and total != record.size:
            raise IntegrityMismatch(
                f"The parts add up to {total} bytes, not the declared {record.size}; the upload was rejected.",
                details={"size": total, "declared_size": record.size},
            )
        if not record.size:
            get_policy().check_size(total, get_policy().profile_of(record.profile))
            ledger.reserve(total, consequence="; the upload was rejected")
    except (IntegrityMismatch, FileTooLarge, QuotaExceeded):
        db.session.commit()
        multipart.reject_upload(record)
        raise
    # The record now reserves the real size, under the same lock that checked it fits.
    record.size = total
    record.part_size = part_size
    db.session.commit()


def _learn_size_from_object(user_id: str, record: File, count: int) -> None:
    """Record the plan of an object that an earlier, unrecorded completion made of `count` parts."""
    info = get_storage().head_object(record.s3_key)
    if info is None or (info.metadata or {}).get("file-id") != record.id:
        return  # the native complete reports the upload as gone
    ledger = open_ledger(user_id)
    db.session.refresh(record)
    if record.status == FileStatus.UPLOADING:
        if not record.size and info.size <= ledger.available():
            ledger.reserve(info.size)
            record.size = info.size
        # Equal parts but the last: the part size that cuts this size into `count` parts.
        record.part_size = max(-(-record.size // max(count, 1)), 1)
    db.session.commit()
