"""Multipart uploads of large files: create, sign parts, read the stored parts (resume), complete, abort.

Plain functions shared by the native routes (api/multipart.py) and Companion-style ones.
Each takes the caller's user id and checks ownership (another user's upload is not_found),
the upload's state, the part plan fixed at create, and quota; errors are s3drive.errors.*.

The part plan (part_size, hence part_count and each part's exact length) is fixed when
the upload is created. Every part URL signs its exact Content-Length, so a store that
enforces signatures refuses any other body, and the signer cannot be used as an oracle
for arbitrary sizes, part numbers or keys. Complete checks the total size again anyway.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select, update

from ..errors import IntegrityMismatch, InvalidState, NotFound, ObjectMissing, QuotaExceeded, ValidationFailed
from ..extensions import db
from ..models import File, FileStatus
from ..storage import MultipartRefused, ObjectInfo, PartInfo
from ..timeutil import utcnow
from . import get_storage
from .uploads import MAX_PARTS, part_count, part_length, presign_uploads
from .users import available_bytes, lock_user

MAX_SIGN_BATCH = 1000
MAX_ETAG_LENGTH = 128
_S3_REFUSALS = {
    "InvalidPart": "a listed part was not found in storage, or its ETag differs",
    "InvalidPartOrder": "the parts were not listed in ascending order",
    "EntityTooSmall": "a part other than the last is smaller than 5 MiB",
}


def get_multipart(user_id: str, file_id: str) -> File:
    """Return the user's multipart upload record, or not_found (also for others' files and simple uploads)."""
    record = db.session.get(File, file_id) if isinstance(file_id, str) and len(file_id) <= 64 else None
    if record is None or record.user_id != user_id or record.part_size is None:
        raise NotFound("No such multipart upload.")
    return record


def find_multipart(user_id: str, s3_key: str, upload_id: str | None = None) -> File:
    """Return the user's multipart upload with this key (and S3 upload id), or not_found."""
    record = db.session.scalar(select(File).where(File.user_id == user_id, File.s3_key == s3_key))
    if record is None or record.part_size is None or (upload_id is not None and record.upload_id != upload_id):
        raise NotFound("No such multipart upload.")
    return record


def create_multipart(user_id: str, spec: Any) -> File:
    """Start a multipart upload for one FileSpec (+ optional part_size): policy, quota reserved, S3 upload created."""
    result = presign_uploads(user_id, [spec], multipart=True)
    if result.failures:
        raise result.failures[0].error
    return get_multipart(user_id, result.tickets[0]["id"])


def upload_part_count(record: File) -> int:
    """Return how many parts the upload was planned with."""
    return part_count(record.size, record.part_size)


def sign_parts(user_id: str, file_id: str, part_numbers: Any) -> list[dict[str, Any]]:
    """Return a PUT URL per part number (at most 1,000), each signing that part's exact Content-Length.

    Each item is {part_number, url, headers, size, expires_at}; the client sends `headers`
    and exactly `size` bytes. Signing keeps the quota reservation alive at least as long
    as the URLs it hands out.
    """
    record = get_multipart(user_id, file_id)
    _require_uploading(record)
    numbers = _check_part_numbers(part_numbers, upload_part_count(record))
    now = utcnow()
    expires_in = current_app.config["URL_EXPIRES_IN"]
    expires_at = now + timedelta(seconds=expires_in)
    keep_reserved(record, now, expires_at)
    sizes = [(number, part_length(record.size, record.part_size, number)) for number in numbers]
    urls = get_storage().presign_upload_parts(record.s3_key, record.upload_id, sizes, expires_in)
    return [
        {"part_number": number, "url": url, "headers": {}, "size": size, "expires_at": expires_at}
        for (number, size), url in zip(sizes, urls, strict=True)
    ]


def list_parts(user_id: str, file_id: str) -> list[PartInfo]:
    """Return the parts S3 holds for the upload (paginated ListParts), to resume after a reload."""
    record = get_multipart(user_id, file_id)
    if record.status != FileStatus.UPLOADING or record.upload_id is None:
        return []  # complete, aborted, rejected or expired: S3 keeps no parts for it
    count = upload_part_count(record)
    try:
        parts = get_storage().list_parts(record.s3_key, record.upload_id)
    except MultipartRefused as refusal:
        db.session.refresh(record)
        if record.status == FileStatus.COMPLETE:
            return []  # a concurrent complete finished meanwhile
        raise _gone(refusal) from None
    return [part for part in parts if 1 <= part.part_number <= count]


def describe(record: File, parts: list[PartInfo] | None = None) -> dict[str, Any]:
    """Return the API's MultipartUpload view of a record, with parts and bytes_uploaded when given."""
    view = {
        "id": record.id,
        "s3_key": record.s3_key,
        "file_name": record.file_name,
        "upload_id": record.upload_id,
        "part_size": record.part_size,
        "part_count": upload_part_count(record),
        "file_size": record.size,
        "status": record.status,
        "expires_at": record.expires_at,
    }
    if parts is not None:
        view["parts"] = [{"part_number": p.part_number, "size": p.size, "etag": p.etag} for p in parts]
        view["bytes_uploaded"] = record.size if record.status == FileStatus.COMPLETE else sum(p.size for p in parts)
    return view


def complete_multipart(user_id: str, file_id: str, parts: list[dict[str, Any]] | None = None) -> File:
    """Complete the upload from the client's [{part_number, etag}] (or S3's own part list when None).

    Idempotent: a complete upload is returned as it is. Missing parts, wrong ETags or
    parts S3 refuses give integrity_mismatch and leave the upload open for another try.
    An object whose size differs from the declared one is deleted and the record rejected.
    """
    record = get_multipart(user_id, file_id)
    if record.status == FileStatus.COMPLETE:
        return record
    _require_uploading(record)
    count = upload_part_count(record)
    etags = None if parts is None else _client_etags(parts, count)  # checked before any S3 call
    storage = get_storage()
    try:
        if etags is None:
            etags = {p.part_number: p.etag for p in storage.list_parts(record.s3_key, record.upload_id)}
        _require_all_parts(etags, count)
        storage.complete_multipart_upload(
            record.s3_key,
            record.upload_id,
            [(number, etags[number]) for number in range(1, count + 1)],
            expected_size=record.size,
        )
    except MultipartRefused as refusal:
        return _after_refusal(user_id, record, refusal)
    return _settle_completed(user_id, record.id, storage.head_object(record.s3_key))


def abort_multipart(user_id: str, file_id: str) -> File:
    """Abort the upload in S3 and mark it aborted, releasing its quota reservation; idempotent."""
    record = get_multipart(user_id, file_id)
    if record.status == FileStatus.ABORTED:
        return record
    if record.status == FileStatus.COMPLETE:
        raise InvalidState("The upload is complete; delete the file instead.", details={"status": record.status})
    if record.status != FileStatus.UPLOADING:
        raise _nothing_to_abort(record.status)
    storage = get_storage()
    # S3 first: if it fails, the record stays `uploading` and the client can retry.
    existed = storage.abort_multipart(record.s3_key, record.upload_id) if record.upload_id else False
    if not _move(record.id, FileStatus.UPLOADING, FileStatus.ABORTED):
        db.session.refresh(record)
        if record.status == FileStatus.ABORTED:
            return record
        raise _nothing_to_abort(record.status)
    if not existed:
        # S3 had no upload: a completion that was never recorded may have left the object behind.
        storage.delete_objects([record.s3_key])
    return get_multipart(user_id, file_id)


# -- helpers --------------------------------------------------------------------------------


def _require_uploading(record: File) -> None:
    if record.status != FileStatus.UPLOADING:
        raise InvalidState(f"The multipart upload is {record.status}.", details={"status": record.status})
    if record.upload_id is None:
        raise InvalidState("The multipart upload never started in storage; start a new one.")


def _nothing_to_abort(status: str) -> InvalidState:
    return InvalidState(f"The upload is {status}; there is nothing to abort.", details={"status": status})


def _gone(refusal: MultipartRefused) -> InvalidState:
    return InvalidState(
        "Storage no longer has this multipart upload (aborted or expired); abort it and start a new one.",
        details={"s3_error": refusal.code},
    )


def keep_reserved(record: File, now: datetime, until: datetime) -> None:
    """Refuse a lapsed upload; make a live one's reservation outlast URLs that expire at `until`."""
    if record.expires_at is None or record.expires_at <= now:
        raise InvalidState("The multipart upload has expired; start a new one.", details={"status": "expired"})
    if record.expires_at >= until:
        return  # the usual case: no write
    moved = db.session.execute(
        update(File)
        .where(File.id == record.id, File.status == FileStatus.UPLOADING, File.expires_at > now)
        .values(expires_at=until)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    if not moved:
        raise InvalidState("The multipart upload is no longer open.")


def _check_part_numbers(part_numbers: Any, count: int) -> list[int]:
    """Return the requested part numbers, deduplicated in order; each must lie within 1..count."""
    if not isinstance(part_numbers, list) or not part_numbers:
        raise ValidationFailed(details={"part_numbers": ["Give a list of 1 to 1000 part numbers."]})
    if len(part_numbers) > MAX_SIGN_BATCH:
        raise ValidationFailed(
            f"Sign at most {MAX_SIGN_BATCH} parts a call.",
            details={"part_numbers": [f"Longer than maximum length {MAX_SIGN_BATCH}."]},
        )
    for number in part_numbers:
        if type(number) is not int or not 1 <= number <= count:
            raise ValidationFailed(
                f"Part numbers of this upload run from 1 to {count}.",
                details={"part_numbers": [f"Each must be an integer from 1 to {count}; got {number!r}."]},
            )
    return list(dict.fromkeys(part_numbers))


def _client_etags(parts: Any, count: int) -> dict[int, str]:
    """Return part number -> unquoted ETag from the client's list, refusing malformed entries."""
    if not isinstance(parts, list) or not parts or len(parts) > MAX_PARTS:
        raise ValidationFailed(details={"parts": ["Give the uploaded parts, or send {} to let the server list them."]})
    etags: dict[int, str] = {}
    for index, part in enumerate(parts):
        number = part.get("part_number") if isinstance(part, dict) else None
        etag = part.get("etag") if isinstance(part, dict) else None
        if type(number) is not int or not 1 <= number <= count:
            raise ValidationFailed(details={"parts": {index: {"part_number": [f"Must be from 1 to {count}."]}}})
        # ETags are accepted quoted (as S3 sends them) or not.
        etag = etag.strip().strip('"') if isinstance(etag, str) else ""
        if not etag or len(etag) > MAX_ETAG_LENGTH or not (etag.isascii() and etag.isprintable()):
            raise ValidationFailed(details={"parts": {index: {"etag": ["Must be the ETag S3 returned for the part."]}}})
        if number in etags:
            raise ValidationFailed(details={"parts": {index: {"part_number": [f"Part {number} is listed twice."]}}})
        etags[number] = etag
    return etags


def _require_all_parts(etags: dict[int, str], count: int) -> None:
    missing = [number for number in range(1, count + 1) if number not in etags]
    if missing:
        raise IntegrityMismatch(
            f"{len(missing)} of {count} parts are missing; upload them, then complete again.",
            details={"missing_parts": missing[:100], "missing_count": len(missing)},
        )


def _after_refusal(user_id: str, record: File, refusal: MultipartRefused) -> File:
    """Answer S3's refusal to list or complete the parts."""
    storage = get_storage()
    if refusal.code == "NoSuchUpload":
        # Gone (aborted, expired), or completed by an earlier attempt that was never recorded.
        info = storage.head_object(record.s3_key)
        if info is not None and (info.metadata or {}).get("file-id") == record.id:
            return _settle_completed(user_id, record.id, info)
        db.session.refresh(record)
        if record.status == FileStatus.COMPLETE:
            return record
        raise _gone(refusal)
    if refusal.size_differs:
        # Each part URL signs its length, so only a store that ignores signatures gets here.
        storage.abort_multipart(record.s3_key, record.upload_id)
        _move(record.id, FileStatus.UPLOADING, FileStatus.REJECTED)
        raise IntegrityMismatch(
            f"The parts do not add up to the declared {record.size} bytes; the upload was rejected.",
            details={"declared_size": record.size, "s3_error": refusal.code},
        )
    reason = _S3_REFUSALS.get(refusal.code, refusal.message)
    raise IntegrityMismatch(f"Storage refused to complete the upload: {reason}.", details={"s3_error": refusal.code})


def _settle_completed(user_id: str, file_id: str, info: ObjectInfo | None) -> File:
    """Record a completed object under the quota lock: complete, or rejected if it is not as declared."""
    now = utcnow()
    user = lock_user(user_id)
    # Re-read under the lock: a concurrent complete or abort may have settled it first.
    record = db.session.scalars(select(File).where(File.id == file_id).execution_options(populate_existing=True)).one()
    if record.status == FileStatus.COMPLETE:
        db.session.commit()
        return record
    storage = get_storage()
    if record.status != FileStatus.UPLOADING:
        status = record.status
        db.session.commit()
        # An abort won the race: the object just made must not outlive its record.
        storage.delete_objects([record.s3_key])
        raise InvalidState(f"The upload was {status} meanwhile.", details={"status": status})
    if info is None:
        db.session.commit()
        raise ObjectMissing("Storage does not show the completed object yet; complete again.")
    problem = None
    if info.size != record.size:
        problem = IntegrityMismatch(
            f"The uploaded object has {info.size} bytes, not the declared {record.size}; it was rejected.",
            details={"size": info.size, "declared_size": record.size},
        )
    elif record.expires_at is not None and record.expires_at <= now and record.size > available_bytes(user, now):
        # The reservation lapsed; the bytes must fit the quota again (as confirm does).
        problem = QuotaExceeded("The upload completed too late and no longer fits your quota.")
    if problem is not None:
        record.status = FileStatus.REJECTED
        db.session.commit()
        storage.delete_objects([record.s3_key])
        raise problem
    record.status = FileStatus.COMPLETE
    record.confirmed_at = now
    record.etag = info.etag
    user.used_bytes += record.size
    db.session.commit()
    return record


def _move(file_id: str, from_status: str, to_status: str) -> bool:
    """Move a record from one status to another if it is still there; commit; tell whether it moved."""
    moved = db.session.execute(
        update(File)
        .where(File.id == file_id, File.status == from_status)
        .values(status=to_status)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    return bool(moved)
