"""The sweeper: settle uploads whose URLs expired, abort stale multipart uploads, purge dead objects,
finish deletes left half done, drop long-dead rows (revocations, share links).

Every step works on a bounded batch and changes a row only under a condition on
its current status (UPDATE ... WHERE status = 'pending'), so two sweepers, or a
sweeper and a user's confirm, never process one upload twice.

Quota needs no release when an upload lapses: a pending or uploading record holds quota
only while its expires_at lies ahead (services.quota), so expiring it only changes its
status. Finishing a delete releases the file's bytes (services.files.finish_deletes).

A rejected or expired record whose expires_at is set may still have an object in
S3 (a delete that failed, or a PUT to a URL that was still valid). The purge step
deletes those keys once the URL is dead and then clears expires_at, which marks
the record as purged, so each dead record costs one entry of one DeleteObjects.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, select

from ..errors import MultipartRefused, QuotaExceeded, StorageUnavailable
from ..extensions import db
from ..models import File, FileStatus, RevokedToken, Share
from ..storage import get_storage
from ..timeutil import utcnow
from .confirm import arrived_size, inspect_objects, judge
from .files import finish_deletes
from .inspection import owned_keys, requeue_stale
from .quota import open_ledger, reread, transition
from .shares import KEEP_DEAD_FOR

BATCH = 1000
# An upload that started just before its URL expired may still be running: S3
# checks the signature when the request starts. 15 minutes lets a 100 MiB PUT
# finish over a 1 Mbit/s link. Settable with S3DRIVE_SWEEP_GRACE_SECONDS.
DEFAULT_GRACE_SECONDS = 900
# Dead records whose keys the purge step clears from S3. Aborted: a copy whose process died after
# marking it aborted and before deleting what S3 had copied (an aborted multipart upload has no
# object: deleting its key is a no-op).
DEAD = (FileStatus.REJECTED, FileStatus.EXPIRED, FileStatus.DELETED, FileStatus.ABORTED)


@dataclass
class SweepCounts:
    """What a sweep did, and whether a batch was full (`more`: run again)."""

    confirmed: int = 0
    expired: int = 0
    rejected: int = 0
    multipart_aborted: int = 0
    keys_purged: int = 0
    revoked_tokens_deleted: int = 0
    shares_deleted: int = 0
    deletes_finished: int = 0
    inspections_queued: int = 0
    errors: int = 0
    more: bool = False

    def add(self, other: SweepCounts) -> None:
        """Add another pass's counts to these; `more` becomes the other pass's."""
        for name in COUNTED:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.more = other.more

    def progress(self) -> int:
        """Return how many records the sweep settled (S3 errors are not progress)."""
        return sum(getattr(self, name) for name in COUNTED if name != "errors")


COUNTED = (
    "confirmed",
    "expired",
    "rejected",
    "multipart_aborted",
    "keys_purged",
    "revoked_tokens_deleted",
    "shares_deleted",
    "deletes_finished",
    "inspections_queued",
    "errors",
)


def grace_period() -> timedelta:
    """Return how long after its URL expired an upload is left alone."""
    return timedelta(seconds=int(current_app.config.get("SWEEP_GRACE_SECONDS", DEFAULT_GRACE_SECONDS)))


def sweep(now: datetime | None = None, limit: int = BATCH, grace: timedelta | None = None) -> SweepCounts:
    """Run one bounded pass of every step; return counts and whether work remains (`more`)."""
    now = now or utcnow()
    cutoff = now - (grace_period() if grace is None else grace)
    counts = SweepCounts()
    steps = (
        settle_expired_uploads,
        abort_stale_multipart,
        reject_overflowing_multipart,
        purge_dead_objects,
        finish_interrupted_deletes,
        delete_expired_revocations,
        delete_dead_shares,
        requeue_stale_inspections,
    )
    for step in steps:
        seen = step(counts, now=now, cutoff=cutoff, limit=limit)
        counts.more = counts.more or seen >= limit
    return counts


def sweep_until_done(
    now: datetime | None = None, limit: int = BATCH, grace: timedelta | None = None, max_passes: int = 1000
) -> SweepCounts:
    """Repeat sweep() while work remains and a pass makes progress; return the summed counts."""
    total = SweepCounts()
    for _ in range(max_passes):
        counts = sweep(now=now, limit=limit, grace=grace)
        total.add(counts)
        # A pass that only met S3 errors would meet them again at once.
        if not counts.more or counts.progress() == 0:
            break
    return total


# -- step 1: pending uploads whose URL expired --------------------------------------------


def settle_expired_uploads(counts: SweepCounts, *, now: datetime, cutoff: datetime, limit: int) -> int:
    """Confirm expired uploads that did arrive (if they fit the quota); expire or reject the rest."""
    columns = [File.id, File.user_id, File.batch_id, File.s3_key, File.size, File.size_declared]
    columns += [File.content_type, File.checksum_sha256, File.created_at]
    candidates = _oldest_first(columns, [File.status == FileStatus.PENDING, File.expires_at < cutoff], limit)
    if not candidates:
        return 0
    observed = inspect_objects(candidates)  # rows carry every attribute it and judge() read
    arrived: dict[str, list] = defaultdict(list)
    to_expire: list[str] = []
    to_reject: list[str] = []
    for row in candidates:
        verdict = judge(row, observed.get(row.s3_key))
        if verdict.status == "success":
            arrived[row.user_id].append((row, verdict.info))
        elif verdict.status == "missing":
            to_expire.append(row.id)
        elif verdict.status == "mismatch":
            to_reject.append(row.id)
        else:
            counts.errors += 1  # S3 did not answer; the next pass tries again
    for user_id in sorted(arrived):
        over_quota = _confirm_arrived(counts, user_id, arrived[user_id], now)
        to_expire.extend(over_quota)
    counts.expired += len(transition(to_expire, FileStatus.PENDING, FileStatus.EXPIRED))
    counts.rejected += len(transition(to_reject, FileStatus.PENDING, FileStatus.REJECTED))
    db.session.commit()
    return len(candidates)


def _confirm_arrived(counts: SweepCounts, user_id: str, arrived: list, now: datetime) -> list[str]:
    """Confirm one user's arrived uploads under the quota lock, oldest first; return the ids that do not fit."""
    ledger = open_ledger(user_id, now)
    over_quota = []
    # Re-read under the lock: a concurrent confirm or sweeper may have settled some first.
    records = {record.id: record for record in reread(row.id for row, _ in arrived)}
    for row, info in sorted(arrived, key=lambda item: item[0].created_at):
        record = records[row.id]
        if record.status != FileStatus.PENDING:
            continue
        try:
            # The lapsed reservations no longer count, so the bytes must fit the quota again.
            ledger.count_arrival(record, arrived_size(record, info), info.etag)
        except QuotaExceeded:
            over_quota.append(record.id)
            continue
        counts.confirmed += 1
    db.session.commit()  # releases this user's lock before the next user's
    return over_quota


def _oldest_first(columns: list, conditions: list, limit: int) -> list:
    """Return up to `limit` rows meeting the conditions, oldest expiry first, and end the transaction
    (no transaction stays open across the S3 calls that follow)."""
    rows = db.session.execute(select(*columns).where(*conditions).order_by(File.expires_at).limit(limit)).all()
    db.session.commit()
    return rows


# -- step 2: multipart uploads past their expiry ------------------------------------------


def abort_stale_multipart(counts: SweepCounts, *, now: datetime, cutoff: datetime, limit: int) -> int:
    """Abort multipart uploads past their expiry in S3 and mark their records expired."""
    candidates = _oldest_first(
        [File.id, File.s3_key, File.upload_id],
        [File.status == FileStatus.UPLOADING, File.expires_at < cutoff, File.upload_id.is_not(None)],
        limit,
    )
    if not candidates:
        return 0
    storage = get_storage()
    # Abort first: if S3 fails, the record stays `uploading` and the next pass retries.
    results = storage.map_concurrently(
        lambda task: storage.abort_multipart(task[1], task[2]),
        [(row.id, row.s3_key, row.upload_id) for row in candidates],
    )
    aborted = [task[0] for task, result in results.items() if not isinstance(result, StorageUnavailable)]
    counts.errors += len(candidates) - len(aborted)
    # The expiry is re-checked: a part-signing call may have extended it meanwhile.
    still_stale = [File.expires_at < cutoff]
    counts.multipart_aborted += len(transition(aborted, FileStatus.UPLOADING, FileStatus.EXPIRED, where=still_stale))
    db.session.commit()
    return len(candidates)


# -- step 2b: open multipart uploads of undeclared size that outgrew the quota ---------------


def reject_overflowing_multipart(counts: SweepCounts, *, now: datetime, cutoff: datetime, limit: int) -> int:
    """Abort open multipart uploads of undeclared size whose stored parts no longer fit the quota.

    Uppy's part URLs sign no length (Uppy picks its part size), so one part may carry up to 5 GiB.
    Complete would refuse such an upload, but its parts would sit in S3 until it expires: each
    sweep reads the parts of these uploads (ListParts) and rejects, oldest first, those whose bytes
    go beyond what the user has left. S3 first, then the record (as in abort_stale_multipart).
    """
    conditions = [File.status == FileStatus.UPLOADING, File.size == 0, File.upload_id.is_not(None)]
    candidates = _oldest_first([File.id, File.user_id, File.s3_key, File.upload_id, File.created_at], conditions, limit)
    if not candidates:
        return 0
    storage = get_storage()
    tasks = [(row.s3_key, row.upload_id) for row in candidates]
    stored = storage.map_concurrently(lambda task: _stored_bytes(storage, task), tasks)
    by_user: dict[str, list] = defaultdict(list)
    for row in candidates:
        size = stored[(row.s3_key, row.upload_id)]
        if isinstance(size, StorageUnavailable):
            counts.errors += 1
        elif size:
            by_user[row.user_id].append((row, size))
    overflowing = [row for user_id in sorted(by_user) for row in _beyond_quota(user_id, by_user[user_id], now)]
    aborted = storage.map_concurrently(
        lambda task: storage.abort_multipart(*task), [(r.s3_key, r.upload_id) for r in overflowing]
    )
    done = [row.id for row in overflowing if not isinstance(aborted[(row.s3_key, row.upload_id)], StorageUnavailable)]
    counts.errors += len(overflowing) - len(done)
    counts.rejected += len(transition(done, FileStatus.UPLOADING, FileStatus.REJECTED, where=[File.size == 0]))
    db.session.commit()
    return len(candidates)


def _stored_bytes(storage, task: tuple[str, str]) -> int:
    """Return the bytes an upload's parts hold in S3 (0 if S3 no longer knows the upload)."""
    try:
        return sum(part.size for part in storage.list_parts(*task))
    except MultipartRefused:
        return 0


def _beyond_quota(user_id: str, uploads: list, now: datetime) -> list:
    """Return the user's uploads (oldest first) whose stored parts go beyond what the quota has left."""
    left = open_ledger(user_id, now).available()
    db.session.commit()  # a decision to read, not to write: no lock is kept across the S3 calls
    beyond = []
    for row, size in sorted(uploads, key=lambda item: item[0].created_at):
        if size > left:
            beyond.append(row)
        else:
            left -= size
    return beyond


# -- step 3: objects left behind by dead records -----------------------------------------


def purge_dead_objects(counts: SweepCounts, *, now: datetime, cutoff: datetime, limit: int) -> int:
    """Delete the keys of dead records (rejected, expired, deleted, aborted) from S3, then mark them purged."""
    candidates = _oldest_first(
        [File.id, *_KEYS], [File.status.in_(DEAD), File.expires_at.is_not(None), File.expires_at < cutoff], limit
    )
    if not candidates:
        return 0
    purged = [row.id for row in _delete_objects_of(candidates, counts)]
    still_dead = [File.expires_at.is_not(None)]
    counts.keys_purged += len(transition(purged, DEAD, where=still_dead, expires_at=None))
    db.session.commit()
    return len(candidates)


# -- step 4: deletes that a dead process, or an S3 failure, left half done ----------------


def finish_interrupted_deletes(counts: SweepCounts, *, now: datetime, cutoff: datetime, limit: int) -> int:
    """Delete the objects of `deleting` records, then finish those records (files.finish_deletes).

    No grace period: deleting an object twice is harmless, and finishing is conditional, so a
    request still finishing its own delete and the sweeper never release a file's bytes twice.
    """
    candidates = _oldest_first([File.id, File.user_id, *_KEYS], [File.status == FileStatus.DELETING], limit)
    if not candidates:
        return 0
    done: dict[str, list[str]] = defaultdict(list)
    for row in _delete_objects_of(candidates, counts):
        done[row.user_id].append(row.id)
    for user_id in sorted(done):
        counts.deletes_finished += len(finish_deletes(user_id, done[user_id]))
    return len(candidates)


# The columns _delete_objects_of reads: the object's key and what says whether a preview goes with it.
_KEYS = (File.s3_key, File.thumbnail_key, File.inspection_state)


def _delete_objects_of(rows: list, counts: SweepCounts) -> list:
    """Delete the rows' objects (and previews) from S3; return the rows whose objects are gone (failures
    are logged and counted)."""
    deleted, errors = get_storage().delete_objects(key for row in rows for key in owned_keys(row))
    for key, error in errors.items():
        current_app.logger.warning("sweeper could not delete %s: %s", key, error)
    counts.errors += len(errors)
    return [row for row in rows if row.s3_key in deleted]


# -- step 5: revocations of tokens that expired anyway ------------------------------------


def delete_expired_revocations(counts: SweepCounts, *, now: datetime, cutoff: datetime, limit: int) -> int:
    """Delete revoked-token rows whose tokens have expired (with the grace, for clock skew)."""
    doomed = select(RevokedToken.jti).where(RevokedToken.expires_at < cutoff).limit(limit).scalar_subquery()
    result = db.session.execute(
        delete(RevokedToken).where(RevokedToken.jti.in_(doomed)).execution_options(synchronize_session=False)
    )
    db.session.commit()
    counts.revoked_tokens_deleted += result.rowcount
    return result.rowcount


def delete_dead_shares(counts: SweepCounts, *, now: datetime, cutoff: datetime, limit: int) -> int:
    """Delete share links expired or revoked more than KEEP_DEAD_FOR ago (until then they answer 410 or 404,
    and their owner still sees them listed)."""
    before = now - KEEP_DEAD_FOR
    dead = (Share.expires_at < before) | (Share.revoked_at < before)
    doomed = select(Share.id).where(dead).limit(limit).scalar_subquery()
    result = db.session.execute(delete(Share).where(Share.id.in_(doomed)).execution_options(synchronize_session=False))
    db.session.commit()
    counts.shares_deleted += result.rowcount
    return result.rowcount


# -- step 6: inspections nobody finished ---------------------------------------------------


def requeue_stale_inspections(counts: SweepCounts, *, now: datetime, cutoff: datetime, limit: int) -> int:
    """Queue again the inspections whose worker died or whose message was lost (services.inspection)."""
    queued = requeue_stale(now, limit)
    counts.inspections_queued += queued
    return queued
