"""Content inspection of complete uploads, run by task-queue workers (tasks/inspection.py).

A worker claims a pending inspection (a conditional update: the claim is a lease, so a worker
killed mid-task is taken over once it lapses), reads as little of the object as it can
(s3drive.inspect), makes a preview, and settles the record once:
- passed: what inspection found is recorded, with the preview's key;
- rejected: the record becomes `rejected` and its bytes stop counting (the quota ledger), the
  object is deleted, or kept under the quarantine prefix for an admin (S3DRIVE_QUARANTINE).
Settling is conditional on the worker's own claim, so a second delivery, or a worker that lost
its lease, settles nothing twice. No lock is held across a call to S3.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from flask import current_app
from sqlalchemy import func, or_, select
from sqlalchemy.exc import OperationalError

from ..errors import DatabaseUnavailable, InvalidState, NotFound, StorageUnavailable
from ..extensions import db
from ..inspect import Limits, Rejected, Report, inspect_object, kind_of
from ..inspect.sniff import UNRECOGNISED
from ..models import File, FileStatus, InspectionState
from ..policy import DEFAULT_PROFILE, get_policy, preview_key, quarantine_key
from ..storage import get_storage
from ..timeutil import utcnow
from . import inspection_queue
from .quota import chunked, open_ledger, reread, transition

# Presigned GETs FFmpeg probes media through: long enough for a slow probe, short enough to be useless later.
MEDIA_URL_SECONDS = 600
# An image is decoded for its preview only up to this many bytes (the pixel limit binds first for most).
PREVIEW_IMAGE_MAX_BYTES = 64 * 1024 * 1024
PREVIEW_TYPE = "image/webp"
# What File.inspection carries besides state, thumbnail_url and reason.
FINDINGS = ("detected_type", "width", "height", "duration_seconds", "pages", "entry_count")


class Outcome(StrEnum):
    """What one delivery of an inspection did."""

    PASSED = "passed"
    REJECTED = "rejected"
    SKIPPED = "skipped"  # settled already, claimed by a live worker, or no longer complete


def limits(profile_name: str = DEFAULT_PROFILE) -> Limits:
    """Return the inspection limits of the current settings, narrowed by an upload profile."""
    config = current_app.config
    profile = get_policy().profile_of(profile_name)
    return Limits(
        max_image_pixels=profile.max_image_pixels,
        max_media_seconds=profile.max_media_seconds,
        archive_max_ratio=config["ARCHIVE_MAX_RATIO"],
        archive_max_entries=config["ARCHIVE_MAX_ENTRIES"],
        archive_max_uncompressed=config["ARCHIVE_MAX_UNCOMPRESSED"],
        reject_active_pdf=config["REJECT_ACTIVE_PDF"],
        allowed_content_types=profile.allowed_content_types,
        thumbnail_size=config["THUMBNAIL_SIZE"],
        min_image_side=profile.min_image_side,
        max_image_side=profile.max_image_side,
        min_media_seconds=profile.min_media_seconds,
    )


def lease() -> timedelta:
    """Return how long a worker's claim on an inspection holds (S3DRIVE_INSPECTION_LEASE)."""
    return timedelta(seconds=current_app.config["INSPECTION_LEASE"])


def unclaimed(now: datetime) -> Any:
    """Return the condition of pending inspections nobody holds at `now`: never claimed, or the claim lapsed."""
    return or_(File.inspection_claimed_at.is_(None), File.inspection_claimed_at <= now - lease())


# -- one inspection ------------------------------------------------------------------------


def inspect_file(file_id: str) -> Outcome:
    """Inspect one complete upload and settle it once.

    S3 or the database away (StorageUnavailable, DatabaseUnavailable): the claim is given back and the
    error raised, for the task to retry with backoff. Any other failure keeps the claim: the sweeper
    queues the inspection again once the lease lapses, so a file that breaks a check is retried
    slowly, not in a loop.
    """
    claim = utcnow()
    pending = [File.inspection_state == InspectionState.PENDING, unclaimed(claim)]
    claimed = transition([file_id], FileStatus.COMPLETE, where=pending, inspection_claimed_at=claim)
    db.session.commit()
    if not claimed:
        return Outcome.SKIPPED
    [record] = reread([file_id])
    held = Held(file_id, record.user_id, record.s3_key, record.size, claim)
    declared, profile = record.content_type, record.profile
    db.session.commit()  # no transaction stays open across the reads from S3
    try:
        try:
            report, preview = examine(held.key, held.size, declared, profile)
        except Rejected as rejected:
            return reject(held, rejected)
        return settle_passed(held, report, preview)
    except (StorageUnavailable, DatabaseUnavailable, OperationalError):
        _release_claim(file_id, claim)  # the retry (or another worker) claims it at once
        raise


def examine(key: str, size: int, declared_type: str, profile: str = DEFAULT_PROFILE) -> tuple[Report, bytes | None]:
    """Read the object as little as possible and return what it is and its preview; raise Rejected."""
    storage = get_storage()
    checks = limits(profile)
    reader = storage.reader(key, size)
    media_url = storage.presign_get(key, MEDIA_URL_SECONDS) if _maybe_media(declared_type) else None
    report = inspect_object(reader, declared_type, checks, media_url)
    return report, make_preview(report, reader, media_url, checks)


def _maybe_media(declared_type: str) -> bool:
    major = declared_type.split("/", 1)[0].lower()
    return major in ("audio", "video") or declared_type.lower() in ("application/ogg", *UNRECOGNISED)


def make_preview(report: Report, reader, media_url: str | None, checks: Limits) -> bytes | None:
    """Return a WebP preview of an image, a video's poster frame or a PDF's first page, or None."""
    size = checks.thumbnail_size
    kind = report.kind or kind_of(report.detected_type or "", "")
    if kind == "image" and report.width and reader.size <= PREVIEW_IMAGE_MAX_BYTES:
        from ..inspect.image import thumbnail_image

        # Decoding the whole image is where a truncated or damaged file shows: corrupt_file.
        return thumbnail_image(reader.read(0, reader.size), size, checks.max_image_pixels)
    if kind == "video" and media_url is not None:
        from ..inspect.media import poster_frame

        return poster_frame(media_url, size)
    if kind == "pdf":
        from ..inspect.pdf import thumbnail_pdf

        return thumbnail_pdf(reader, size)
    return None


def findings(report: Report) -> dict[str, Any]:
    """Return what File.inspection records of a report."""
    return {name: getattr(report, name) for name in FINDINGS}


@dataclass(frozen=True)
class Held:
    """A file this worker claimed, as it was read when claimed (its key, owner and size do not change)."""

    file_id: str
    user_id: str
    key: str
    size: int
    claim: datetime


def settle_passed(held: Held, report: Report, preview: bytes | None) -> Outcome:
    """Store the preview, then record the inspection as passed if this worker still holds it."""
    file_id, thumbnail = held.file_id, None
    if preview is not None:
        thumbnail = preview_key(held.key)
        get_storage().put_object(thumbnail, preview, PREVIEW_TYPE)
    moved = transition(
        [file_id],
        FileStatus.COMPLETE,
        where=_held(held.claim),
        inspection_state=InspectionState.PASSED,
        inspection=findings(report),
        inspected_at=utcnow(),
        thumbnail_key=thumbnail,
    )
    db.session.commit()
    if not moved and thumbnail is not None:
        # Deleted meanwhile (its delete removed the preview key before it existed), or taken over.
        [record] = reread([file_id])
        if record.status != FileStatus.COMPLETE:
            get_storage().discard([thumbnail], "preview of a file gone meanwhile")
        db.session.commit()
    return Outcome.PASSED if moved else Outcome.SKIPPED


def reject(held: Held, rejected: Rejected) -> Outcome:
    """Reject the file for `rejected`'s reason: its bytes stop counting, its object goes (or is quarantined)."""
    file_id, user_id, key, size = held.file_id, held.user_id, held.key, held.size
    storage = get_storage()
    kept = None
    if current_app.config["QUARANTINE"]:
        kept = quarantine_key(key)
        # Copied before the record says so: a quarantined record always has its object.
        storage.copy_object(key, kept, size, storage_class="STANDARD")
    ledger = open_ledger(user_id)
    reason = {"code": rejected.code, "message": rejected.message}
    moved = transition(
        [file_id],
        FileStatus.COMPLETE,
        FileStatus.REJECTED,
        where=_held(held.claim),
        inspection_state=InspectionState.REJECTED,
        inspection={**findings(Report()), "reason": reason},
        inspected_at=ledger.now,
        quarantine_key=kept,
        thumbnail_key=None,
    )
    if moved:
        ledger.release(size)
    db.session.commit()
    if moved:
        # A crash before this leaves the object to the sweeper's purge (a rejected record's key). A preview an
        # earlier inspection made (re-inspected after a policy change) goes in the same request.
        storage.discard([key, preview_key(key)], "object of a rejected upload")
        current_app.logger.info(
            "inspection rejected %s: %s", file_id, rejected.code, extra={"file_id": file_id, "outcome": "rejected"}
        )
        return Outcome.REJECTED
    if kept is not None:
        storage.discard([kept], "quarantine copy of a file settled meanwhile")
    return Outcome.SKIPPED


def _held(claim: datetime) -> list:
    return [File.inspection_state == InspectionState.PENDING, File.inspection_claimed_at == claim]


def _release_claim(file_id: str, claim: datetime) -> None:
    try:
        db.session.rollback()
        transition([file_id], FileStatus.COMPLETE, where=_held(claim), inspection_claimed_at=None)
        db.session.commit()
    except Exception:  # the database is away too: the lease lapses and the sweeper queues it again
        db.session.rollback()


# -- queueing again ------------------------------------------------------------------------


def requeue_stale(now: datetime, limit: int) -> int:
    """Queue again the pending inspections nobody holds since a lease ago (a dead worker, a lost message).

    Return how many were looked at. A duplicate delivery is harmless: the claim is conditional.
    """
    if not inspection_queue.enabled():
        return 0
    cutoff = now - lease()
    query = (
        select(File.id)
        .where(
            File.inspection_state == InspectionState.PENDING,
            File.status == FileStatus.COMPLETE,
            or_(
                File.inspection_claimed_at <= cutoff,
                File.inspection_claimed_at.is_(None) & (File.confirmed_at <= cutoff),
            ),
        )
        .order_by(File.inspection_claimed_at)
        .limit(limit)
    )
    ids = list(db.session.scalars(query))
    db.session.commit()
    if ids:
        inspection_queue.send(ids)
    return len(ids)


def reinspect(ids: Sequence[str] | None = None, since: datetime | None = None, limit: int = 10_000) -> list[str]:
    """Mark complete files (by id, or confirmed since a time) for inspection again and queue them.

    For a policy change: what passed under the old limits is checked against the new ones.
    """
    if not inspection_queue.enabled():
        raise InvalidState("Inspection is off (S3DRIVE_INSPECT=false): nothing can be inspected.")
    conditions = [File.status == FileStatus.COMPLETE]
    if ids is not None:
        chosen = [list(chunk) for chunk in chunked(list(dict.fromkeys(ids)))]
    else:
        query = select(File.id).where(*conditions, File.confirmed_at >= since).order_by(File.confirmed_at).limit(limit)
        chosen = [list(db.session.scalars(query))]
    marked: list[str] = []
    for chunk in chosen:
        marked.extend(transition(chunk, FileStatus.COMPLETE, **inspection_queue.PENDING_AFRESH))
    db.session.commit()
    inspection_queue.send(marked)
    return marked


def owned_keys(row: Any) -> list[str]:
    """Return the keys a file's delete removes: its object, and its preview if it has or may get one
    (a pending inspection may be writing one). `row` has s3_key, thumbnail_key and inspection_state."""
    keys = [row.s3_key]
    if row.thumbnail_key or row.inspection_state == InspectionState.PENDING:
        keys.append(row.thumbnail_key or preview_key(row.s3_key))
    return keys


# -- reading the state ---------------------------------------------------------------------


def blocks_download(record: File) -> bool:
    """Tell whether the file may not be downloaded yet: its inspection is pending (S3DRIVE_SERVE_UNINSPECTED)."""
    return record.inspection_state == InspectionState.PENDING and not current_app.config["SERVE_UNINSPECTED"]


def inspection_of(record: File) -> dict[str, Any] | None:
    """Return File.inspection (API.md) of a record, or None if it was never inspected."""
    return inspection_view(record.inspection_state, record.inspection, record.thumbnail_key, record.status)


def inspection_view(
    state: str | None, found: dict[str, Any] | None, thumbnail_key: str | None, status: str
) -> dict[str, Any] | None:
    """Return File.inspection from a record's columns (listings read columns, not records)."""
    if state is None:
        return None
    found = found or {}
    thumbnail_url = None
    if thumbnail_key and status == FileStatus.COMPLETE:
        thumbnail_url = get_storage().presign_get(thumbnail_key, current_app.config["URL_EXPIRES_IN"])
    return {
        "state": state,
        **{name: found.get(name) for name in FINDINGS},
        "thumbnail_url": thumbnail_url,
        "reason": found.get("reason"),
    }


def counts() -> tuple[dict[str, int], dict[str, int], int]:
    """Return inspections by state, rejections by reason code, and pending ones nobody holds past the lease."""
    # Files that are still there: a deleted file keeps the state its inspection ended in.
    live = File.status.in_([FileStatus.COMPLETE, FileStatus.REJECTED])
    by_state = dict(
        db.session.execute(
            select(File.inspection_state, func.count())
            .where(File.inspection_state.is_not(None), live)
            .group_by(File.inspection_state)
        ).all()
    )
    reason = File.inspection["reason"]["code"].as_string()
    by_reason = dict(
        db.session.execute(
            select(reason, func.count()).where(File.inspection_state == InspectionState.REJECTED).group_by(reason)
        ).all()
    )
    now = utcnow()
    stale = db.session.scalar(
        select(func.count()).where(
            File.inspection_state == InspectionState.PENDING,
            File.status == FileStatus.COMPLETE,
            or_(
                File.inspection_claimed_at <= now - lease(),
                File.inspection_claimed_at.is_(None) & (File.confirmed_at <= now - lease()),
            ),
        )
    )
    return by_state, {code or "unknown": n for code, n in by_reason.items()}, int(stale or 0)


# -- what is accepted ---------------------------------------------------------------------


def formats() -> dict[str, Any]:
    """Return GET /api/files/formats: the allowed types of each kind and the limits inspection applies,
    globally (`kinds`) and under each upload profile."""
    inspected = inspection_queue.enabled()
    profiles = {name: {"kinds": _kinds(limits(name), inspected)} for name in get_policy().profiles}
    return {
        "inspect": inspected,
        "thumbnail_size": current_app.config["THUMBNAIL_SIZE"],
        "kinds": profiles[DEFAULT_PROFILE]["kinds"],
        "profiles": profiles,
    }


def _kinds(checks: Limits, inspected: bool) -> dict[str, dict[str, Any]]:
    """Return the allowed types of each kind and their limits under one set of checks."""

    def of_kind(kind: str) -> list[str]:
        return [t for t in checks.allowed_content_types if _kind_of_pattern(t) == kind]

    image = {"types": of_kind("image"), "max_pixels": checks.max_image_pixels, "previews": inspected}
    sides = {"min_side": checks.min_image_side, "max_side": checks.max_image_side}
    image.update((name, value) for name, value in sides.items() if value is not None)
    seconds = {"max_seconds": checks.max_media_seconds}
    if checks.min_media_seconds is not None:
        seconds["min_seconds"] = checks.min_media_seconds
    return {
        "image": image,
        "video": {"types": of_kind("video"), **seconds, "previews": inspected},
        "audio": {"types": of_kind("audio"), **seconds, "previews": False},
        "pdf": {"types": of_kind("pdf"), "reject_active": checks.reject_active_pdf, "previews": inspected},
        "archive": {
            "types": of_kind("archive"),
            "max_entries": checks.archive_max_entries,
            "max_uncompressed": checks.archive_max_uncompressed,
            "max_ratio": checks.archive_max_ratio,
            "previews": False,
        },
        "text": {"types": of_kind("text"), "previews": False},
        "other": {"types": of_kind("other"), "previews": False},
    }


def _kind_of_pattern(pattern: str) -> str:
    """Return the kind of an allowed-type pattern (image/* is an image, application/zip an archive)."""
    return kind_of(pattern.replace("*", "x"), pattern)


# -- quarantine (admin) --------------------------------------------------------------------


def quarantined(limit: int = 1000) -> list[File]:
    """Return the files kept under the quarantine prefix, oldest rejection first."""
    query = select(File).where(File.quarantine_key.is_not(None)).order_by(File.inspected_at, File.id).limit(limit)
    return list(db.session.scalars(query))


def _quarantined_file(file_id: str) -> File:
    record = db.session.get(File, file_id)
    if record is None or record.quarantine_key is None:
        raise NotFound("No such quarantined file.")
    return record


def release(file_id: str) -> File:
    """Put a quarantined object back: the file is complete again, inspection passed, counted against the quota.

    1. The record stops being a purge candidate (expires_at cleared: its key is about to hold the object).
    2. S3 copies the object back (no lock held).
    3. Under the user's lock, the bytes are counted if they fit (else the copy goes, 507).
    4. The quarantine copy is deleted. A crash after 3 leaves a copy an admin may delete.
    """
    record = _quarantined_file(file_id)
    user_id, key, kept, size = record.user_id, record.s3_key, record.quarantine_key, record.size
    transition([file_id], FileStatus.REJECTED, where=[File.quarantine_key == kept], expires_at=None)
    db.session.commit()
    storage = get_storage()
    storage.copy_object(kept, key, size, storage_class="STANDARD")
    ledger = open_ledger(user_id)
    [record] = reread([file_id])
    if record.status != FileStatus.REJECTED or record.quarantine_key != kept:
        db.session.commit()
        raise InvalidState("The file changed meanwhile; look again.")
    try:
        ledger.count_again(record)
    except Exception:
        db.session.rollback()
        storage.discard([key], "object of a release that did not fit")
        raise
    found = dict(record.inspection or {})
    # The reason stays on record as what the release overruled.
    found["released_from"], found["reason"] = found.get("reason"), None
    record.inspection = found
    record.inspection_state = InspectionState.PASSED
    record.quarantine_key = None
    db.session.commit()
    storage.discard([kept], "quarantine copy of a released file")
    return record


def delete_quarantined(file_id: str) -> None:
    """Delete a quarantined object for good; the record stays rejected."""
    record = _quarantined_file(file_id)
    kept = record.quarantine_key
    db.session.commit()
    gone, errors = get_storage().delete_objects([kept])
    if kept not in gone:
        raise StorageUnavailable(f"Object storage did not delete the quarantined object ({errors.get(kept)}).")
    transition([file_id], FileStatus.REJECTED, where=[File.quarantine_key == kept], quarantine_key=None)
    db.session.commit()
