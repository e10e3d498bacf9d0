"""Presigning batches of uploads: reserve quota, insert the records, sign; start multipart uploads."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

from flask import current_app
from sqlalchemy import delete, update

from ..bulk import bulk_insert, can_insert_streamed, session_in_transaction
from ..errors import QuotaExceeded, StorageUnavailable
from ..extensions import db
from ..models import File, FileStatus, new_ids, new_time_ordered_id
from ..parts import part_count
from ..policy import TIERS, UploadFailure, UploadSpec, object_key
from ..storage import get_storage
from ..timeutil import utcnow
from . import watcher
from .quota import Ledger, insert_then_reserve_within_bound, open_ledger, reserve_within_bound

# (request index, position among the successful tickets, row) of a multipart upload.
MultipartRow = tuple[int, int, dict[str, Any]]
# Batches with this many simple uploads are signed while the database reserves and inserts them.
SIGN_MEANWHILE_MIN_ROWS = 20
# Batches of more files than this go to PostgreSQL in chunks of this many, validated as they go.
STREAM_CHUNK = 200


@dataclass
class PresignResult:
    """Tickets (request order) for the uploads presigned, failures for the others.

    Tickets are plain dicts in UploadTicketSchema's shape: a 1,000-file batch is the hot path,
    and the view encodes them as they are.
    """

    tickets: list[dict[str, Any]] = field(default_factory=list)
    failures: list[UploadFailure] = field(default_factory=list)


def presign_uploads(user_id: str, specs: Iterable[UploadSpec]) -> PresignResult:
    """Presign a batch: one transaction, quota reserved under the user's lock, partial success.

    Multipart uploads (specs with a part_size) get multipart tickets; their CreateMultipartUpload
    calls run concurrently while the rest are signed (unless they were signed while the database
    reserved). An upload of undeclared size (size_declared False) reserves nothing: its bound is cut
    to what the quota has left.
    """
    result = PresignResult()
    rows, multipart_rows, tickets = reserve_uploads(user_id, specs, result.failures)
    if multipart_rows:
        started = start_multipart_uploads([row for _, _, row in multipart_rows])
        if tickets is None:
            tickets = sign_tickets(rows)  # while S3 answers the CreateMultipartUpload calls
        placed = finish_multipart_uploads(multipart_rows, started, result.failures)
        result.tickets = _merge_tickets(tickets, placed)
    else:
        result.tickets = tickets if tickets is not None else sign_tickets(rows)
    result.failures.sort(key=lambda failure: failure.index)
    return result


def reserve_uploads(
    user_id: str, specs: Iterable[UploadSpec], failures: list[UploadFailure]
) -> tuple[list[dict[str, Any]], list[MultipartRow], list[dict[str, Any]] | None]:
    """Insert a record for each upload that fits the quota, in one transaction under the user's lock.

    Return the rows of simple uploads and of multipart ones, and the simple ones' tickets if they
    were signed while the database worked (None: sign them now); add quota failures to `failures`.
    `specs` may be lazy (validated as they are taken): a big batch on PostgreSQL is inserted in
    chunks as they come, the server inserting one while the next is made.
    """
    specs = iter(specs)
    first = list(islice(specs, STREAM_CHUNK + 1))
    if not first:
        return [], [], None
    batch = _Batch(user_id, failures)
    # The usual case, a batch well within the quota, takes one statement (or one transaction of
    # chunks, sent without waiting); else one decision per file.
    if len(first) > STREAM_CHUNK and can_insert_streamed():
        chunks = batch.chunks(first, specs)
        reserved = insert_then_reserve_within_bound(user_id, chunks, batch.sizes, batch.sign_meanwhile)
    else:
        new_rows = batch.add([*first, *specs])
        meanwhile = batch.sign_meanwhile if len(batch.rows) >= SIGN_MEANWHILE_MIN_ROWS else None
        reserved = reserve_within_bound(user_id, *batch.sizes(), new_rows, meanwhile)
    if not reserved:
        bulk_insert(File.__table__, batch.redo_with(open_ledger(user_id, batch.now)))
    # Commit releases the quota lock before the S3 calls and the (CPU-only) signing. (Without a
    # transaction, the one statement of reserve_within_bound committed on its own.)
    if session_in_transaction():
        db.session.commit()
    return batch.rows, batch.multipart_rows, batch.signed


class _Batch:
    """The records of one presign batch as they are made: rows, multipart rows, and the tickets
    signed while the database worked."""

    def __init__(self, user_id: str, failures: list[UploadFailure]):
        self.user_id, self.failures = user_id, failures
        self.now = utcnow()
        self.expires = {
            False: self.now + timedelta(seconds=current_app.config["URL_EXPIRES_IN"]),
            True: multipart_expiry(self.now),
        }
        # Time-ordered, so the keys of newer batches sort after older ones.
        self.batch_id = new_time_ordered_id()
        self.prefix = current_app.config["S3_KEY_PREFIX"]
        self.specs: list[UploadSpec] = []
        self.rows: list[dict[str, Any]] = []
        self.multipart_rows: list[MultipartRow] = []
        self.signed: list[dict[str, Any]] | None = None

    def chunks(self, first: list[UploadSpec], rest: Iterator[UploadSpec]) -> Iterator[list[dict[str, Any]]]:
        """Yield the rows of `first`, then of each STREAM_CHUNK of `rest` as it is taken."""
        part = first
        while part:
            yield self.add(part)
            part = list(islice(rest, STREAM_CHUNK))

    def add(self, specs: list[UploadSpec], ledger: Ledger | None = None) -> list[dict[str, Any]]:
        """Make the rows of `specs` (those the ledger lets in, all of them without one; the others are
        failures); return them."""
        self.specs.extend(specs)
        simple, multipart = len(self.rows), len(self.multipart_rows)
        ids = new_ids(len(specs))
        for spec in specs:
            try:
                if ledger is not None:
                    _reserve(ledger, spec)
            except QuotaExceeded as error:
                self.failures.append(UploadFailure(spec.index, spec.file_name, error))
                continue
            file_id = ids.pop()
            key = object_key(self.prefix, self.user_id, self.batch_id, file_id, spec.file_name)
            expires_at = self.expires[spec.part_size is not None]
            row = upload_row(spec, file_id, self.user_id, self.batch_id, key, self.now, expires_at)
            if spec.part_size is not None:
                self.multipart_rows.append((spec.index, len(self.rows) + len(self.multipart_rows), row))
            else:
                self.rows.append(row)
        return self.rows[simple:] + [row for _, _, row in self.multipart_rows[multipart:]]

    def redo_with(self, ledger: Ledger) -> list[dict[str, Any]]:
        """Make the rows again, each decided by the ledger (the bound had no room for them all); return them."""
        specs, self.specs = self.specs, []
        self.rows, self.multipart_rows, self.signed = [], [], None  # tickets for rows that may now be refused
        return self.add(specs, ledger)

    def sizes(self) -> tuple[int, int]:
        """Return the bytes to reserve and the room the quota must have for them (undeclared bound)."""
        declared = sum(spec.size for spec in self.specs if spec.size_declared)
        undeclared = max((spec.size for spec in self.specs if not spec.size_declared), default=0)
        return declared, declared + undeclared

    def sign_meanwhile(self) -> None:
        """Sign the simple uploads' tickets while the database inserts them (a third of a big batch's
        time each); a few rows are not worth it. They go out only once the rows are committed."""
        if len(self.rows) >= SIGN_MEANWHILE_MIN_ROWS:
            self.signed = sign_tickets(self.rows)


def _reserve(ledger: Ledger, spec: UploadSpec) -> None:
    """Reserve a declared size; cut an undeclared one's bound to what the quota has left.

    An upload of undeclared size reserves nothing (its bytes must fit when they arrive), so that
    several such forms at once do not each hold all that is left.
    """
    if spec.size_declared:
        ledger.reserve(spec.size)
        return
    available = ledger.available()
    if available <= 0:
        raise QuotaExceeded("Your quota is used up: no bytes left to upload.", details={"available_bytes": 0})
    spec.size = min(spec.size, available)


def upload_row(
    spec: UploadSpec, file_id: str, user_id: str, batch_id: str, key: str, now: datetime, expires_at: datetime
) -> dict[str, Any]:
    """Return the files row of a new upload (every row of a batch has the same keys: one bulk insert)."""
    return {
        "id": file_id,
        "user_id": user_id,
        "batch_id": batch_id,
        "file_name": spec.file_name,
        "s3_key": key,
        "content_type": spec.content_type,
        "size": spec.size,
        "size_declared": spec.size_declared,
        "checksum_sha256": spec.checksum_sha256,
        "tier": spec.tier,
        "title": spec.title,
        "description": spec.description,
        "tags": spec.tags,
        "folder": spec.folder,
        "profile": spec.profile,
        "status": FileStatus.PENDING if spec.part_size is None else FileStatus.UPLOADING,
        "method": spec.method,
        "upload_id": None,
        "part_size": spec.part_size,
        "created_at": now,
        "expires_at": expires_at,
        "watch_at": watcher.first_check(now) if spec.watch else None,
    }


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


def multipart_expiry(now: datetime) -> datetime:
    """Return when a multipart upload started now stops holding its quota reservation."""
    return now + timedelta(seconds=current_app.config["MULTIPART_EXPIRES_IN"])


def start_multipart_uploads(rows: list[dict[str, Any]]) -> list[Future]:
    """Start one CreateMultipartUpload per row concurrently; return the futures of the upload ids."""
    return get_storage().start_multipart_uploads(
        [(row["s3_key"], row["content_type"], {"file-id": row["id"]}, TIERS[row["tier"]]) for row in rows]
    )


def finish_multipart_uploads(
    multipart_rows: list[MultipartRow], started: list[Future], failures: list[UploadFailure]
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


# -- signing --------------------------------------------------------------------------------


def sign_tickets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sign an upload URL (or POST form) for every inserted row."""
    storage = get_storage()
    expires_in = current_app.config["URL_EXPIRES_IN"]
    headers = [
        storage.upload_headers(row["content_type"], row["id"], row["checksum_sha256"], TIERS[row["tier"]])
        for row in rows
    ]
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
