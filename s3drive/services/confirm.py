"""Confirming uploads: ask S3 what arrived, compare with what was declared, settle quota."""

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
from ..storage import ObjectInfo
from ..timeutil import utcnow
from . import get_storage
from .users import available_bytes, lock_user

# A batch group this large is confirmed with one listing instead of HeadObject each.
LIST_MIN_FILES = 3
IN_CHUNK = 500


@dataclass
class ConfirmOutcome:
    """The result for one requested id or key; `file` is set when the record exists."""

    id: str | None
    s3_key: str | None
    status: str  # success | missing | mismatch | not_found | error
    message: str
    file: File | None = None
    code: str | None = None  # finer reason for the single-file route (e.g. invalid_state)


def load_owned_files(user_id: str, column, values: list[str]) -> dict[str, File]:
    """Return the user's files whose id (or key) is among values, keyed by that value."""
    found: dict[str, File] = {}
    unique = list(dict.fromkeys(values))
    for start in range(0, len(unique), IN_CHUNK):
        chunk = unique[start : start + IN_CHUNK]
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
    column = File.id if by_id else File.s3_key
    requested = ids if by_id else s3_keys
    records = load_owned_files(user_id, column, requested)

    pending = [r for r in records.values() if r.status == FileStatus.PENDING]
    known = observed or {}
    observed = {**inspect_objects([r for r in pending if r.s3_key not in known]), **known}
    verdicts = {record.id: judge(record, observed.get(record.s3_key)) for record in pending}
    settled = settle(user_id, verdicts)

    outcomes = []
    for value in requested:
        record = records.get(value)
        if record is None:
            outcomes.append(
                ConfirmOutcome(value if by_id else None, None if by_id else value, "not_found", "No such file.")
            )
            continue
        status, message, code = settled.get(record.id) or state_outcome(record)
        outcomes.append(ConfirmOutcome(record.id, record.s3_key, status, message, record, code))
    return outcomes


_SINGLE_ERRORS: dict[str, type[AppError]] = {
    "not_found": NotFound,
    "object_missing": ObjectMissing,
    "integrity_mismatch": IntegrityMismatch,
    "quota_exceeded": QuotaExceeded,
    "invalid_state": InvalidState,
    "storage_unavailable": StorageUnavailable,
}


def confirm_one(user_id: str, *, file_id: str | None = None, s3_key: str | None = None) -> ConfirmOutcome:
    """Confirm one upload by id or key; return its success outcome or raise the error it met."""
    if file_id is not None:
        [outcome] = confirm_uploads(user_id, ids=[file_id])
    else:
        [outcome] = confirm_uploads(user_id, s3_keys=[s3_key or ""])
    if outcome.status != "success":
        error = _SINGLE_ERRORS[outcome.code or "not_found"]
        raise error(outcome.message, details={"id": outcome.id} if outcome.id else {})
    return outcome


def state_outcome(record: File) -> tuple[str, str, str | None]:
    """Return the outcome for a record that is not pending (confirming is idempotent)."""
    if record.status == FileStatus.COMPLETE:
        return "success", "Upload confirmed", None
    if record.status == FileStatus.UPLOADING:
        return "error", "This is a multipart upload: complete it with the multipart route.", "invalid_state"
    return "error", f"The upload is {record.status}; request a new upload URL.", "invalid_state"


def inspect_objects(records: list[File]) -> dict[str, ObjectInfo | None | StorageUnavailable]:
    """Ask S3 about each record's object: listings for big batch groups, HeadObject otherwise."""
    storage = get_storage()
    strategy = current_app.config["S3_CONFIRM"]
    heads: list[str] = []
    groups: dict[str, list[File]] = defaultdict(list)
    for record in records:
        # A listing shows only size and ETag. That suffices where the store enforces the
        # signed type and checksum (S3_CONFIRM=list); elsewhere HeadObject shows them all.
        if strategy == "list":
            groups[record.batch_id].append(record)
        else:
            heads.append(record.s3_key)
    prefix = current_app.config["S3_KEY_PREFIX"]
    listings: dict[str, list[File]] = {}
    for batch_id, members in groups.items():
        if len(members) >= LIST_MIN_FILES:
            listings[batch_prefix(prefix, members[0].user_id, batch_id)] = members
        else:
            heads.extend(member.s3_key for member in members)

    observed: dict[str, ObjectInfo | None | StorageUnavailable] = {}
    tasks = [("list", p) for p in listings] + [("head", k) for k in heads]

    def run(task: tuple[str, str]):
        kind, target = task
        return storage.list_prefix(target) if kind == "list" else storage.head_object(target)

    results = storage.map_concurrently(run, tasks)  # type: ignore[arg-type]
    for (kind, target), value in results.items():
        if kind == "head":
            observed[target] = value
            continue
        for member in listings[target]:
            observed[member.s3_key] = value if isinstance(value, StorageUnavailable) else value.get(member.s3_key)
    return observed


def judge(record: File, info: ObjectInfo | None | StorageUnavailable) -> tuple[str, str, ObjectInfo | None]:
    """Compare what S3 holds with what was declared: (status, message, info)."""
    if isinstance(info, StorageUnavailable):
        return "error", info.message, None
    if info is None:
        return "missing", "The object has not been uploaded yet.", None
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
        return "mismatch", "Uploaded object differs from the declaration: " + "; ".join(problems) + ".", info
    return "success", "Upload confirmed", info


def arrived_size(record, info: ObjectInfo) -> int:
    """Return the bytes a confirmed upload counts: its declared size or, for an upload of undeclared
    size (an Uppy form, which reserved only its upper bound), the size S3 reports."""
    return record.size if record.size_declared else info.size


def _base_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def settle(
    user_id: str, verdicts: dict[str, tuple[str, str, ObjectInfo | None]]
) -> dict[str, tuple[str, str, str | None]]:
    """Record the verdicts in one transaction under the user's quota lock."""
    decided = {fid: v for fid, v in verdicts.items() if v[0] in ("success", "mismatch")}
    outcomes: dict[str, tuple[str, str, str | None]] = {
        fid: (status, message, "object_missing" if status == "missing" else "storage_unavailable")
        for fid, (status, message, _) in verdicts.items()
        if fid not in decided
    }
    if not decided:
        return outcomes
    now = utcnow()
    user = lock_user(user_id)
    # Re-read under the lock: a concurrent confirm may have settled some already.
    records = db.session.scalars(
        select(File).where(File.id.in_(list(decided))).execution_options(populate_existing=True)
    ).all()
    available = None
    to_delete = []
    for record in records:
        status, message, info = decided[record.id]
        if record.status != FileStatus.PENDING:
            continue
        code = "integrity_mismatch"
        if status == "success":
            record.size, record.size_declared = arrived_size(record, info), True
        if status == "success" and record.expires_at and record.expires_at <= now:
            # The reservation lapsed with the URL; the bytes must fit the quota again.
            if available is None:
                available = available_bytes(user, now)
            if record.size > available:
                status, message = "mismatch", "The upload came too late and no longer fits your quota."
                code = "quota_exceeded"
            else:
                available -= record.size
        if status == "success":
            record.status = FileStatus.COMPLETE
            record.confirmed_at = now
            record.etag = info.etag if info else None
            user.used_bytes += record.size
        else:
            record.status = FileStatus.REJECTED
            to_delete.append(record.s3_key)
        outcomes[record.id] = (status, message, None if status == "success" else code)
    db.session.commit()
    if to_delete:
        _, errors = get_storage().delete_objects(to_delete)
        for key, error in errors.items():
            # The record is rejected either way; the sweeper removes what is left.
            current_app.logger.warning("could not delete rejected object %s: %s", key, error)
    return outcomes
