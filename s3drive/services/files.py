"""A user's files: reading, metadata and tier changes, downloads, deletes and server-side copies.

Rules of state:
- metadata (name, title, description, tags, folder) may change while a file is live:
  `pending`, `uploading` or `complete`; a rejected, expired, aborted or deleted record is
  history and answers invalid_state. Renaming never moves the object: the key stays.
- tier changes, downloads and copies need the bytes, so only `complete` files qualify,
  and not while archived (GLACIER, DEEP_ARCHIVE): S3 refuses to read those until restored.
- tier changes and copies: S3 first, database second, so a failed S3 call leaves every record
  as it was (503); no lock is held during the S3 call (a tier change marks itself in progress).
- deletes: the intent first (`deleting`), then S3, then the record (delete_files); a failed or
  interrupted delete stays `deleting` until a retry or the sweeper finishes it.
"""

from __future__ import annotations

import re
import time
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from flask import current_app
from sqlalchemy import Row, select

from ..errors import AppError, Conflict, InvalidState, NotFound, NotReady, StorageUnavailable, ValidationFailed
from ..extensions import db
from ..models import File, FileStatus, new_ids
from ..policy import TIERS, checked_name, normalize_folder, normalize_tags, object_key, sanitize_file_name
from ..storage import get_storage
from ..timeutil import utcnow
from .confirm import settle_arrival
from .inspection import blocks_download, owned_keys
from .quota import chunked, locking, open_ledger, transition

# S3 cannot read objects in these classes until they are restored.
ARCHIVED_TIERS = frozenset({"glacier", "deep_archive"})
EDITABLE_STATUSES = frozenset({FileStatus.PENDING, FileStatus.UPLOADING, FileStatus.COMPLETE})
METADATA_FIELDS = ("file_name", "title", "description", "tags", "folder")
# A copy in progress holds its size like an upload does; long enough for a multi-GiB copy.
COPY_RESERVATION = timedelta(hours=6)
# How long a tier change counts as in progress (S3 copies up to 5 GiB in one CopyObject), and how
# long a second change of the same file waits for the first before answering 409.
TIER_CHANGE_BUDGET = timedelta(minutes=15)
TIER_CHANGE_WAIT = 5.0
# RFC 5987 attr-char beyond what quote() always keeps (letters, digits, "_.-~").
_ATTR_CHAR_EXTRA = "!#$&+^`|"
# In the quoted ASCII fallback: no quote, backslash, percent (some browsers decode it) or path parts.
_FALLBACK_UNSAFE = re.compile(r'[^\x20-\x7e]|["\\%/]')


@dataclass
class DeleteOutcome:
    """What a batch delete did: ids now deleted, and (id, error) for the rest."""

    deleted: list[str] = field(default_factory=list)
    failed: list[tuple[str, AppError]] = field(default_factory=list)


# -- reading and locking ----------------------------------------------------------------


def get_owned_file(user_id: str, file_id: str, not_found: str = "No such file.") -> File:
    """Return the user's file, or not_found (also for other users' files: never reveal they exist)."""
    record = db.session.get(File, file_id) if isinstance(file_id, str) and len(file_id) <= 64 else None
    if record is None or record.user_id != user_id:
        raise NotFound(not_found)
    return record


def lock_file(user_id: str, file_id: str) -> File:
    """Lock one of the user's file rows until commit and return it fresh, else not_found."""
    get_owned_file(user_id, file_id)  # cheap not_found (and id length check) before locking
    return db.session.scalars(locking([File], File.id == file_id, touch=File.status)).one()


def lock_file_rows(user_id: str, ids: list[str]) -> dict[str, Row]:
    """Lock the user's file rows among ids until commit; return id -> (id, s3_key, status, size, thumbnail_key,
    inspection_state)."""
    found: dict[str, Row] = {}
    columns = [File.id, File.s3_key, File.status, File.size, File.thumbnail_key, File.inspection_state]
    # One lock order for everyone: no deadlocks between batches.
    for chunk in chunked(sorted(set(ids))):
        query = locking(columns, File.user_id == user_id, File.id.in_(chunk), touch=File.status, order_by=[File.id])
        found.update((row.id, row) for row in db.session.execute(query))
    return found


# -- metadata and tier -------------------------------------------------------------------


def update_file(user_id: str, file_id: str, changes: dict[str, Any]) -> File:
    """Change a file's metadata and/or tier; a tier change copies the object in place."""
    values = normalize_changes(changes)
    if not values:
        raise ValidationFailed("Give at least one field to change.", details={"_schema": ["Nothing to change."]})
    tier = values.pop("tier", None)
    if tier is None:
        record = lock_editable(user_id, file_id)
        apply_changes(record, values)
    else:
        change_tier(user_id, file_id, tier, values)
    return get_owned_file(user_id, file_id)


def lock_editable(user_id: str, file_id: str) -> File:
    """Lock the file's row; raise invalid_state if its record is history."""
    record = lock_file(user_id, file_id)
    if record.status not in EDITABLE_STATUSES:
        db.session.rollback()
        raise InvalidState(f"The file is {record.status}; it can no longer be changed.")
    return record


def apply_changes(record: File, values: dict[str, Any]) -> None:
    """Set the metadata on the locked record and commit."""
    for name, value in values.items():
        setattr(record, name, value)
    db.session.commit()


def normalize_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """Apply the presign rules to the fields of a PATCH; raise 422 or 415."""
    values: dict[str, Any] = {}
    if "file_name" in changes:
        values["file_name"] = checked_name(changes["file_name"])
    if "folder" in changes:
        values["folder"] = normalize_folder(changes["folder"])
    if "tags" in changes:
        values["tags"] = normalize_tags(changes["tags"])
    for name in ("title", "description", "tier"):
        if name in changes:
            values[name] = changes[name]
    return values


def change_tier(user_id: str, file_id: str, tier: str, values: dict[str, Any]) -> None:
    """Copy a complete file's object onto itself with a new storage class, then record the tier
    and the other changes (all or nothing).

    No lock is held during the S3 copy: the record carries the change in progress
    (tier_changing_until), so a second change of the same file waits for the first instead of
    racing it in S3. A failed copy changes nothing (503); a process that dies mid-copy leaves the
    marker, which lapses after TIER_CHANGE_BUDGET, and a repeated PATCH copies again.
    """
    record = _claim_tier_change(user_id, file_id, tier, values)
    if record is None:
        return  # the tier already was the one asked for: only the metadata changed
    key, size = record.s3_key, record.size
    try:
        etag = get_storage().copy_object(key, key, size, storage_class=TIERS[tier])
    except AppError:
        _finish_tier_change(user_id, file_id, {})
        raise
    _finish_tier_change(user_id, file_id, {**values, "tier": tier, "etag": etag})


def _claim_tier_change(user_id: str, file_id: str, tier: str, values: dict[str, Any]) -> File | None:
    """Mark the file's tier change as in progress and commit (waiting while another one runs).

    Return None, having applied `values`, when the file already has that tier.
    """
    deadline = time.monotonic() + TIER_CHANGE_WAIT
    while True:
        record = lock_editable(user_id, file_id)
        if record.tier == tier:
            apply_changes(record, values)
            return None
        try:
            require_readable(record, "change tier")
        except InvalidState:
            db.session.rollback()
            raise
        now = utcnow()
        if record.tier_changing_until is None or record.tier_changing_until <= now:
            record.tier_changing_until = now + TIER_CHANGE_BUDGET
            db.session.commit()
            return record
        db.session.commit()
        if time.monotonic() >= deadline:
            raise Conflict("Another tier change of this file is in progress; try again shortly.")
        time.sleep(0.05)


def _finish_tier_change(user_id: str, file_id: str, values: dict[str, Any]) -> None:
    """Clear the in-progress marker and, if the copy succeeded, record the tier, ETag and changes."""
    record = lock_file(user_id, file_id)
    record.tier_changing_until = None
    if values and record.status == FileStatus.COMPLETE:
        values["etag"] = values["etag"] or record.etag
        for name, value in values.items():
            setattr(record, name, value)
    db.session.commit()


def require_readable(record: File, action: str) -> None:
    """Raise invalid_state unless the file is complete and S3 can read its object now."""
    if record.status != FileStatus.COMPLETE:
        raise InvalidState(f"The file is {record.status}; only complete files can {action}.")
    if record.tier in ARCHIVED_TIERS:
        raise InvalidState(f"The file is archived ({record.tier}); restore it before you {action}.")


# -- download ----------------------------------------------------------------------------

# Types a browser renders as a document that can run scripts (allowed uploads under text/* and image/*).
ACTIVE_CONTENT_TYPES = frozenset(
    {
        "text/html",
        "application/xhtml+xml",
        "image/svg+xml",
        "text/xml",
        "application/xml",
        "text/xsl",
        "application/xslt+xml",
        "text/javascript",
        "application/javascript",
    }
)


@dataclass
class DownloadLink:
    """A presigned GET URL and when it stops working."""

    url: str
    expires_at: datetime


def download_link(user_id: str, file_id: str, disposition: str = "attachment") -> DownloadLink:
    """Return a presigned GET URL whose response names the file (Content-Disposition)."""
    return signed_download(get_owned_file(user_id, file_id), disposition)


def signed_download(record: File, disposition: str = "attachment", expires_in: int | None = None) -> DownloadLink:
    """Return a presigned GET URL of a readable, inspected file that names it; S3DRIVE_URL_EXPIRES_IN unless
    `expires_in` (seconds) is shorter. Raise invalid_state or not_ready otherwise."""
    require_readable(record, "be downloaded")
    if blocks_download(record):
        raise NotReady("The file's content is still being inspected; it can be downloaded once that passes.")
    expires_in = min(expires_in or current_app.config["URL_EXPIRES_IN"], current_app.config["URL_EXPIRES_IN"])
    query = {"response-content-disposition": content_disposition(record.file_name, disposition)}
    if disposition == "inline" and record.content_type in ACTIVE_CONTENT_TYPES:
        # Shown inline, these would run scripts in the bucket's origin: show their source instead.
        query["response-content-type"] = "text/plain; charset=utf-8"
    url = get_storage().presign_get(record.s3_key, expires_in, query=query)
    return DownloadLink(url, utcnow() + timedelta(seconds=expires_in))


def content_disposition(name: str, disposition: str = "attachment") -> str:
    """Return a Content-Disposition value per RFC 6266: ASCII fallback plus UTF-8 filename*."""
    try:
        name = sanitize_file_name(name)  # stored names are clean already; this guards old rows
    except ValidationFailed:
        name = "download"
    return f"{disposition}; filename=\"{ascii_fallback(name)}\"; filename*=UTF-8''{quote(name, safe=_ATTR_CHAR_EXTRA)}"


def ascii_fallback(name: str) -> str:
    """Return a plain-ASCII rendering of a name that is safe inside a quoted-string."""
    fallback = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    fallback = _FALLBACK_UNSAFE.sub("_", fallback).strip()
    stem, dot, ext = fallback.rpartition(".")
    if dot and not stem.strip(" ._"):
        return f"download.{ext}" if ext.strip(" ._") else "download"
    return fallback if fallback.strip(" ._") else "download"


# -- delete ------------------------------------------------------------------------------


def delete_file(user_id: str, file_id: str) -> None:
    """Delete one file: its object from S3, then the record; raise its error if it fails."""
    get_owned_file(user_id, file_id)
    outcome = delete_files(user_id, [file_id])
    if outcome.failed:
        raise outcome.failed[0][1]


def delete_files(user_id: str, ids: list[str]) -> DeleteOutcome:
    """Delete files by id: the intent first, then S3 (DeleteObjects, 1,000 keys a call), then the records.

    1. Under the user's lock, the files become `deleting`: no longer listed, readable or
       confirmable, but a confirmed file's bytes still count (its object may still be in S3).
    2. S3 deletes the objects, with no lock held.
    3. What S3 deleted becomes `deleted` and stops counting (finish_deletes).
    A process that dies between 1 and 3, or an S3 failure, leaves files `deleting`: a retry of
    the delete or the sweeper finishes them. No file is ever `complete` without its object.
    """
    wanted = list(dict.fromkeys(ids))
    errors, doomed, previews = mark_deleting(user_id, wanted)
    gone, failures = get_storage().delete_objects([*doomed, *previews])
    finish_deletes(user_id, [doomed[key] for key in gone if key in doomed])
    for key, file_id in doomed.items():
        if key not in gone:
            errors[file_id] = StorageUnavailable(
                f"Object storage did not delete the object ({failures.get(key)}); the delete is recorded and"
                " finishes when you retry, or by the sweeper."
            )
    return DeleteOutcome(
        deleted=[file_id for file_id in wanted if file_id not in errors],
        failed=[(file_id, errors[file_id]) for file_id in wanted if file_id in errors],
    )


# Statuses a delete may start from (an upload in progress is aborted instead; `deleting` is retried).
DELETABLE = tuple(status for status in FileStatus if status not in (FileStatus.UPLOADING, FileStatus.DELETED))


def mark_deleting(user_id: str, ids: list[str]) -> tuple[dict[str, AppError], dict[str, str], list[str]]:
    """Write the intent to delete: the user's files among ids become `deleting`; commit.

    Return the errors of the ids that cannot be deleted, key -> id of those to delete in S3, and the
    keys of their previews (deleted with them). Files already `deleted` are neither: deleting twice
    is not an error.
    """
    open_ledger(user_id)  # serialized with confirms: none can complete a file being deleted
    rows = lock_file_rows(user_id, ids)
    errors: dict[str, AppError] = {}
    doomed: dict[str, str] = {}
    previews: list[str] = []
    for file_id in ids:
        row = rows.get(file_id)
        if row is None:
            errors[file_id] = NotFound("No such file.")
        elif row.status == FileStatus.UPLOADING:
            errors[file_id] = InvalidState(
                "This multipart upload is in progress: abort it with DELETE /api/files/multipart/<id>."
            )
        elif row.status != FileStatus.DELETED:
            doomed[row.s3_key] = row.id
            previews.extend(owned_keys(row)[1:])
    transition(list(doomed.values()), DELETABLE, FileStatus.DELETING)
    db.session.commit()
    return errors, doomed, previews


def finish_deletes(user_id: str, ids: list[str]) -> list[str]:
    """Record deletes S3 has done: `deleting` becomes `deleted` and confirmed files stop counting; commit.

    Idempotent: a file another process finished meanwhile is neither moved nor released twice.
    """
    ledger = open_ledger(user_id)
    counted: dict[str, int] = {}
    for chunk in chunked(ids):
        query = select(File.id, File.size).where(File.id.in_(chunk), File.confirmed_at.is_not(None))
        counted.update((file_id, size) for file_id, size in db.session.execute(query))
    moved = transition(ids, FileStatus.DELETING, FileStatus.DELETED)
    ledger.release(sum(counted.get(file_id, 0) for file_id in moved))
    db.session.commit()
    return moved


# -- copy --------------------------------------------------------------------------------


def copy_file(user_id: str, file_id: str, file_name: str | None = None, folder: str | None = None) -> File:
    """Copy a complete file server-side to a new record and key, counted against the quota.

    The copy is reserved first (a pending record, under the quota lock), then S3 copies,
    then the record becomes complete. No lock is held during the S3 copy, and a crash
    in between leaves only a reservation that expires.
    """
    source = get_owned_file(user_id, file_id)
    require_readable(source, "be copied")
    name = checked_name(file_name) if file_name is not None else source.file_name
    target_folder = normalize_folder(folder) if folder is not None else source.folder
    # Read before reserve_copy commits, which expires the loaded source.
    source_key, size, tier, content_type = source.s3_key, source.size, source.tier, source.content_type
    copy_id, copy_key = reserve_copy(user_id, source, name, target_folder)
    try:
        etag = get_storage().copy_object(
            source_key,
            copy_key,
            size,
            storage_class=TIERS[tier],
            content_type=content_type,
            metadata={"file-id": copy_id},
        )
    except AppError:
        abandon_copy(user_id, copy_id, copy_key)
        raise
    return settle_arrival(user_id, copy_id, FileStatus.PENDING, size, etag)


def reserve_copy(user_id: str, source: File, name: str, folder: str) -> tuple[str, str]:
    """Insert the copy's record as a pending reservation, or raise quota_exceeded; commit."""
    ledger = open_ledger(user_id)
    ledger.reserve(source.size, "Copying")
    copy_id, batch_id = new_ids(2)
    copy_key = object_key(current_app.config["S3_KEY_PREFIX"], user_id, batch_id, copy_id, name)
    db.session.add(
        File(
            id=copy_id,
            user_id=user_id,
            batch_id=batch_id,
            file_name=name,
            s3_key=copy_key,
            content_type=source.content_type,
            size=source.size,
            checksum_sha256=source.checksum_sha256,
            tier=source.tier,
            title=source.title,
            description=source.description,
            tags=list(source.tags or []),
            folder=folder,
            profile=source.profile,
            status=FileStatus.PENDING,
            method="COPY",
            created_at=ledger.now,
            expires_at=ledger.now + COPY_RESERVATION,
        )
    )
    db.session.commit()
    return copy_id, copy_key


def abandon_copy(user_id: str, copy_id: str, copy_key: str) -> None:
    """Mark a failed copy aborted (its reservation ends) and remove any partial object."""
    open_ledger(user_id)
    transition([copy_id], FileStatus.PENDING, FileStatus.ABORTED)
    db.session.commit()
    get_storage().discard([copy_key], "object of failed copy")
