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

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select

from ..errors import IntegrityMismatch, InvalidState, MultipartRefused, NotFound, ObjectMissing, ValidationFailed
from ..extensions import db
from ..models import File, FileStatus
from ..parts import MAX_ETAG_LENGTH, part_count, part_length
from ..policy import UploadSpec
from ..storage import PartInfo, get_storage
from ..timeutil import utcnow
from .confirm import settle_arrival
from .files import get_owned_file
from .quota import transition
from .uploads import presign_uploads

_S3_REFUSALS = {
    "InvalidPart": "a listed part was not found in storage, or its ETag differs",
    "InvalidPartOrder": "the parts were not listed in ascending order",
    "EntityTooSmall": "a part other than the last is smaller than 5 MiB",
}


def get_multipart(user_id: str, file_id: str) -> File:
    """Return the user's multipart upload record, or not_found (also for others' files and simple uploads)."""
    record = get_owned_file(user_id, file_id, "No such multipart upload.")
    if record.part_size is None:
        raise NotFound("No such multipart upload.")
    return record


def find_multipart(user_id: str, s3_key: str, upload_id: str | None = None) -> File:
    """Return the user's multipart upload with this key (and S3 upload id), or not_found."""
    record = db.session.scalar(select(File).where(File.user_id == user_id, File.s3_key == s3_key))
    if record is None or record.part_size is None or (upload_id is not None and record.upload_id != upload_id):
        raise NotFound("No such multipart upload.")
    return record


def create_multipart(user_id: str, spec: UploadSpec) -> File:
    """Start a multipart upload (a spec with its part_size): quota reserved, the S3 upload created."""
    result = presign_uploads(user_id, [spec])
    if result.failures:
        raise result.failures[0].error
    return get_multipart(user_id, result.tickets[0]["id"])


def upload_part_count(record: File) -> int:
    """Return how many parts the upload was planned with."""
    return part_count(record.size, record.part_size)


def sign_parts(user_id: str, file_id: str, part_numbers: list[int]) -> list[dict[str, Any]]:
    """Return a PUT URL per part number (at most 1,000), each signing that part's exact Content-Length.

    Each item is {part_number, url, headers, size, expires_at}; the client sends `headers`
    and exactly `size` bytes. Signing keeps the quota reservation alive at least as long
    as the URLs it hands out.
    """
    record = get_multipart(user_id, file_id)
    _require_uploading(record)
    numbers = check_part_numbers(part_numbers, upload_part_count(record), "part_numbers")
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
        raise gone(refusal) from None
    return [part for part in parts if 1 <= part.part_number <= count]


@dataclass
class MultipartStatus:
    """The API's MultipartUpload view of a record; parts and bytes_uploaded only in the status answer."""

    id: str
    s3_key: str
    file_name: str
    upload_id: str | None
    part_size: int
    part_count: int
    file_size: int
    status: str
    expires_at: datetime | None
    parts: list[PartInfo] | None = None
    bytes_uploaded: int | None = None


def describe(record: File, parts: list[PartInfo] | None = None) -> MultipartStatus:
    """Return the MultipartUpload view of a record, with parts and bytes_uploaded when parts are given."""
    view = MultipartStatus(
        record.id,
        record.s3_key,
        record.file_name,
        record.upload_id,
        record.part_size,
        upload_part_count(record),
        record.size,
        record.status,
        record.expires_at,
    )
    if parts is not None:
        view.parts = parts
        view.bytes_uploaded = record.size if record.status == FileStatus.COMPLETE else sum(p.size for p in parts)
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
    return _settle_completed(user_id, record, storage.head_object(record.s3_key))


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
    moved = transition([record.id], FileStatus.UPLOADING, FileStatus.ABORTED)
    db.session.commit()
    if not moved:
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


def gone(refusal: MultipartRefused) -> InvalidState:
    """Return the invalid_state answer for an upload S3 no longer has."""
    return InvalidState(
        "Storage no longer has this multipart upload (aborted or expired); abort it and start a new one.",
        details={"s3_error": refusal.s3_error},
    )


def keep_reserved(record: File, now: datetime, until: datetime) -> None:
    """Refuse a lapsed upload; make a live one's reservation outlast URLs that expire at `until`."""
    if record.expires_at is None or record.expires_at <= now:
        raise InvalidState("The multipart upload has expired; start a new one.", details={"status": "expired"})
    if record.expires_at >= until:
        return  # the usual case: no write
    moved = transition([record.id], FileStatus.UPLOADING, where=[File.expires_at > now], expires_at=until)
    db.session.commit()
    if not moved:
        raise InvalidState("The multipart upload is no longer open.")


def check_part_numbers(part_numbers: list[int], highest: int, field: str) -> list[int]:
    """Return the part numbers deduplicated in order, each within 1..highest (the schema checked the rest)."""
    for number in part_numbers:
        if not 1 <= number <= highest:
            raise ValidationFailed(
                f"Part numbers of this upload run from 1 to {highest}.",
                details={field: [f"Each must be an integer from 1 to {highest}; got {number!r}."]},
            )
    return list(dict.fromkeys(part_numbers))


def _client_etags(parts: list[dict[str, Any]], count: int) -> dict[int, str]:
    """Return part number -> unquoted ETag from the client's list (loaded by a schema), refusing
    part numbers beyond the upload's plan, blank or unprintable ETags, and parts listed twice."""
    etags: dict[int, str] = {}
    for index, part in enumerate(parts):
        number, etag = part["part_number"], part["etag"]
        if not 1 <= number <= count:
            raise ValidationFailed(details={"parts": {index: {"part_number": [f"Must be from 1 to {count}."]}}})
        # ETags are accepted quoted (as S3 sends them) or not.
        etag = etag.strip().strip('"')
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
    if refusal.s3_error == "NoSuchUpload":
        # Gone (aborted, expired), or completed by an earlier attempt that was never recorded.
        info = storage.head_object(record.s3_key)
        if info is not None and (info.metadata or {}).get("file-id") == record.id:
            return _settle_completed(user_id, record, info)
        db.session.refresh(record)
        if record.status == FileStatus.COMPLETE:
            return record
        raise gone(refusal)
    if refusal.size_differs:
        # Each part URL signs its length, so only a store that ignores signatures gets here.
        reject_upload(record)
        raise IntegrityMismatch(
            f"The parts do not add up to the declared {record.size} bytes; the upload was rejected.",
            details={"declared_size": record.size, "s3_error": refusal.s3_error},
        )
    reason = _S3_REFUSALS.get(refusal.s3_error, refusal.message)
    raise IntegrityMismatch(
        f"Storage refused to complete the upload: {reason}.", details={"s3_error": refusal.s3_error}
    )


def reject_upload(record: File) -> None:
    """Abort the upload in S3 and mark the record rejected (its reservation goes with it)."""
    get_storage().abort_multipart(record.s3_key, record.upload_id)
    transition([record.id], FileStatus.UPLOADING, FileStatus.REJECTED)
    db.session.commit()


def _settle_completed(user_id: str, record: File, info) -> File:
    """Record a completed object under the quota lock: complete, or rejected if it is not as declared."""
    if info is None:
        db.session.refresh(record)
        if record.status != FileStatus.COMPLETE:
            raise ObjectMissing("Storage does not show the completed object yet; complete again.")
        return record
    return settle_arrival(user_id, record.id, FileStatus.UPLOADING, info.size, info.etag)
