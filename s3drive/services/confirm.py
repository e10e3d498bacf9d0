"""Confirming uploads: ask S3 what arrived, compare it with what was declared, count it in the ledger."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import select

from ..errors import (
    AppError,
    IntegrityMismatch,
    InvalidState,
    NotFound,
    ObjectMissing,
    QuotaExceeded,
    StorageUnavailable,
)
from ..extensions import db
from ..models import File, FileStatus
from ..policy import batch_prefix
from ..storage import ObjectInfo, get_storage
from .quota import chunked, open_ledger, reread, transition

# A batch group this large is confirmed with one listing instead of HeadObject each.
LIST_MIN_FILES = 3


@dataclass
class Verdict:
    """What S3 holds for a record, compared with its declaration."""

    status: str  # success | missing | mismatch | error
    message: str
    info: ObjectInfo | None = None


@dataclass
class ConfirmOutcome:
    """The result for one requested id or key; `file` is set when the record exists, `error` unless success."""

    id: str | None
    s3_key: str | None
    status: str  # success | missing | mismatch | not_found | error
    message: str
    file: File | None = None
    error: AppError | None = None


# The error each verdict that is not a success answers with on the single-file route.
_VERDICT_ERRORS: dict[str, type[AppError]] = {
    "missing": ObjectMissing,
    "mismatch": IntegrityMismatch,
    "error": StorageUnavailable,
}


def load_owned_files(user_id: str, column, values: list[str]) -> dict[str, File]:
    """Return the user's files whose id (or key) is among values, keyed by that value."""
    found: dict[str, File] = {}
    for chunk in chunked(list(dict.fromkeys(values))):
        query = select(File).where(File.user_id == user_id, column.in_(chunk))
        for record in db.session.scalars(query):
            found[getattr(record, column.key)] = record
    return found


def confirm_uploads(
    user_id: str,
    *,
    ids: list[str] | None = None,
    s3_keys: list[str] | None = None,
    observed: dict[str, ObjectInfo] | None = None,
) -> list[ConfirmOutcome]:
    """Confirm uploads by id or key; idempotent; one outcome per requested item, in order.

    `observed` holds HeadObject answers by key that the caller already has (the upload watcher's).
    """
    by_id = ids is not None
    requested = ids if by_id else s3_keys or []
    records = load_owned_files(user_id, File.id if by_id else File.s3_key, requested)

    pending = [r for r in records.values() if r.status == FileStatus.PENDING]
    known = observed or {}
    observed = {**inspect_objects([r for r in pending if r.s3_key not in known]), **known}
    settled = settle(user_id, [(record, judge(record, observed.get(record.s3_key))) for record in pending])

    outcomes = []
    for value in requested:
        record = records.get(value)
        if record is None:
            error = NotFound("No such file.", details={"id": value} if by_id else {})
            outcomes.append(
                ConfirmOutcome(
                    value if by_id else None, None if by_id else value, "not_found", error.message, None, error
                )
            )
        else:
            outcomes.append(settled.get(record.id) or state_outcome(record))
    return outcomes


def confirm_one(user_id: str, *, file_id: str | None = None, s3_key: str | None = None) -> ConfirmOutcome:
    """Confirm one upload by id or key; return its success outcome or raise the error it met."""
    if file_id is not None:
        [outcome] = confirm_uploads(user_id, ids=[file_id])
    else:
        [outcome] = confirm_uploads(user_id, s3_keys=[s3_key or ""])
    if outcome.error is not None:
        raise outcome.error
    return outcome


def outcome(record: File, status: str, message: str, error: AppError | None = None) -> ConfirmOutcome:
    """Return the outcome of a record."""
    return ConfirmOutcome(record.id, record.s3_key, status, message, record, error)


def state_outcome(record: File) -> ConfirmOutcome:
    """Return the outcome for a record that is not pending (confirming is idempotent)."""
    if record.status == FileStatus.COMPLETE:
        return outcome(record, "success", "Upload confirmed")
    if record.status == FileStatus.UPLOADING:
        message = "This is a multipart upload: complete it with the multipart route."
    else:
        message = f"The upload is {record.status}; request a new upload URL."
    return outcome(record, "error", message, InvalidState(message, details={"id": record.id}))


def inspect_objects(records: list) -> dict[str, ObjectInfo | None | StorageUnavailable]:
    """Ask S3 about each record's object: listings for big batch groups, HeadObject otherwise."""
    storage = get_storage()
    heads: list[str] = []
    groups: dict[str, list] = defaultdict(list)
    for record in records:
        # A listing shows only size and ETag. That suffices where the store enforces the
        # signed type and checksum (S3_CONFIRM=list); elsewhere HeadObject shows them all.
        if current_app.config["S3_CONFIRM"] == "list":
            groups[record.batch_id].append(record)
        else:
            heads.append(record.s3_key)
    listings: dict[str, list] = {}
    for batch_id, members in groups.items():
        if len(members) >= LIST_MIN_FILES:
            listings[batch_prefix(current_app.config["S3_KEY_PREFIX"], members[0].user_id, batch_id)] = members
        else:
            heads.extend(member.s3_key for member in members)

    def run(task: tuple[str, str]):
        kind, target = task
        return storage.list_prefix(target) if kind == "list" else storage.head_object(target)

    tasks = [("list", p) for p in listings] + [("head", k) for k in heads]
    observed: dict[str, ObjectInfo | None | StorageUnavailable] = {}
    for (kind, target), value in storage.map_concurrently(run, tasks).items():  # type: ignore[arg-type]
        if kind == "head":
            observed[target] = value
            continue
        for member in listings[target]:
            observed[member.s3_key] = value if isinstance(value, StorageUnavailable) else value.get(member.s3_key)
    return observed


def judge(record, info: ObjectInfo | None | StorageUnavailable) -> Verdict:
    """Compare what S3 holds with what was declared."""
    if isinstance(info, StorageUnavailable):
        return Verdict("error", info.message)
    if info is None:
        return Verdict("missing", "The object has not been uploaded yet.")
    problems = []
    if record.size_declared and info.size != record.size:
        problems.append(f"size is {info.size} bytes, declared {record.size}")
    elif info.size > record.size:
        problems.append(f"size is {info.size} bytes, more than the {record.size} allowed")
    if info.detailed:
        # Only HeadObject shows these; a listing relies on the store enforcing the signature.
        if _base_type(info.content_type or "") != record.content_type:
            problems.append(f"content type is {info.content_type}, declared {record.content_type}")
        if record.checksum_sha256 and info.checksum_sha256 != record.checksum_sha256:
            problems.append("SHA-256 checksum differs from the declared one")
        if (info.metadata or {}).get("file-id") != record.id:
            problems.append("object metadata does not name this upload")
    if problems:
        return Verdict("mismatch", "Uploaded object differs from the declaration: " + "; ".join(problems) + ".", info)
    return Verdict("success", "Upload confirmed", info)


def arrived_size(record, info: ObjectInfo) -> int:
    """Return the bytes a confirmed upload counts: its declared size or, for an upload of undeclared
    size (an Uppy form, which reserved only its upper bound), the size S3 reports."""
    return record.size if record.size_declared else info.size


def _base_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def settle(user_id: str, judged: list[tuple[File, Verdict]]) -> dict[str, ConfirmOutcome]:
    """Record the verdicts in one transaction under the user's quota lock; delete what is rejected."""
    outcomes: dict[str, ConfirmOutcome] = {}
    decided: dict[str, Verdict] = {}
    for record, verdict in judged:
        if verdict.status in ("success", "mismatch"):
            decided[record.id] = verdict
        else:  # not uploaded yet, or S3 did not answer: the record stays pending
            outcomes[record.id] = outcome(record, verdict.status, verdict.message, _error(verdict, record.id))
    if not decided:
        return outcomes
    ledger = open_ledger(user_id)
    rejected: list[File] = []
    # Re-read under the lock: a concurrent confirm may have settled some already.
    for record in reread(decided):
        if record.status == FileStatus.PENDING:
            outcomes[record.id] = _count_or_reject(ledger, record, decided[record.id], rejected)
    transition([record.id for record in rejected], FileStatus.PENDING, FileStatus.REJECTED)
    db.session.commit()
    if rejected:
        get_storage().discard([record.s3_key for record in rejected], "rejected object")
    return outcomes


def _count_or_reject(ledger, record: File, verdict: Verdict, rejected: list[File]) -> ConfirmOutcome:
    """Count an arrived upload as used, or add it to `rejected` (mismatch, or a lapsed one that no longer fits)."""
    if verdict.status == "success":
        try:
            ledger.count_arrival(record, arrived_size(record, verdict.info), verdict.info.etag)
            return outcome(record, "success", verdict.message)
        except QuotaExceeded as error:
            error.details["id"] = record.id
            rejected.append(record)
            return outcome(record, "mismatch", error.message, error)
    rejected.append(record)
    return outcome(record, "mismatch", verdict.message, _error(verdict, record.id))


def _error(verdict: Verdict, file_id: str) -> AppError:
    return _VERDICT_ERRORS[verdict.status](verdict.message, details={"id": file_id})


def settle_arrival(user_id: str, file_id: str, from_status: str, size: int, etag: str | None) -> File:
    """Count one record's completed object (multipart complete, copy) under the quota lock.

    Idempotent: a complete record is returned as it is. A record that moved on meanwhile
    (aborted), an object of another size than declared, or a lapsed reservation that no longer
    fits: the record is rejected (if still in from_status), its object deleted, the error raised.
    """
    ledger = open_ledger(user_id)
    [record] = reread([file_id])
    if record.status == FileStatus.COMPLETE:
        db.session.commit()
        return record
    try:
        if record.status != from_status:
            raise InvalidState(f"The upload was {record.status} meanwhile.", details={"status": record.status})
        if size != record.size:
            raise IntegrityMismatch(
                f"The uploaded object has {size} bytes, not the declared {record.size}; it was rejected.",
                details={"size": size, "declared_size": record.size},
            )
        ledger.count_arrival(record, size, etag)
    except AppError:
        transition([file_id], from_status, FileStatus.REJECTED)
        db.session.commit()
        # The object just made must not outlive its record.
        get_storage().discard([record.s3_key], "object of a rejected upload")
        raise
    db.session.commit()
    return record
