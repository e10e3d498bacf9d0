"""The one quota ledger and the one way to change a record's state.

Accounting rules (DESIGN.md, invariant 1):
- `users.used_bytes` is the sum of the sizes of the user's `complete` files;
- a `pending` or `uploading` record reserves its size while its `expires_at` lies ahead, but for
  an upload of undeclared size (an Uppy form): it reserves nothing, and its bytes must fit the
  quota when they arrive (count_arrival), else the upload is rejected and its object deleted;
- used + reserved never exceeds the quota: every decision that adds bytes is taken under the
  user's row lock (Ledger), which serializes it with every other decision for that user.

The fast path (reserve_within_bound): `users.reserved_bound` is never less than what the live
reservations hold. Whatever reserves adds to it (Ledger.reserve, reserve_within_bound); a
reservation that becomes used bytes takes its size off (count_arrival); bytes released from used
are added to it (a deleted file's URL may still be live), and reservations that end otherwise
(expiry, abort, rejection) leave it high. So a reservation that fits under the bound fits for sure,
and takes one statement; one that does not is decided exactly by a Ledger, which sums the live
reservations and sets the bound to that sum.

State changes of records are conditional UPDATEs (transition): a record moves only if it is
still in the status the caller saw, so two processes never settle one upload twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Executable, bindparam, func, select, update

from .. import bulk, chunks
from ..errors import QuotaExceeded, Unauthorized
from ..extensions import db
from ..models import RESERVING_STATUSES, File, FileStatus, User
from ..sizes import distinct_sizes
from ..timeutil import utcnow
from . import inspection_queue as inspection

# Ids per IN (...) list: well below every database's bound-parameter limit.
IN_CHUNK = 500


def chunked(values: Sequence[Any], size: int = IN_CHUNK) -> Iterator[Sequence[Any]]:
    """Yield consecutive slices of at most IN_CHUNK values, for IN lists."""
    return chunks.chunked(values, size)


# -- locks -------------------------------------------------------------------------------


def is_sqlite() -> bool:
    """Tell whether the session's database is SQLite (no row locks)."""
    return db.session.get_bind().dialect.name == "sqlite"


def locking(columns: Sequence[Any], *conditions: ColumnElement, touch: Any, order_by: Sequence[Any] = ()) -> Executable:
    """Return a statement that reads rows and locks them until the transaction ends.

    PostgreSQL: SELECT ... FOR UPDATE (in `order_by`, one lock order for everyone). SQLite has
    no row locks: a no-op UPDATE of the `touch` column, RETURNING the rows, takes the database
    write lock, which serializes the writers.
    """
    if is_sqlite():
        statement = update(touch.class_).where(*conditions).values({touch.key: touch}).returning(*columns)
        return statement.execution_options(populate_existing=True, synchronize_session=False)
    statement = select(*columns).where(*conditions).order_by(*order_by).with_for_update()
    return statement.execution_options(populate_existing=True)


def lock_user(user_id: str) -> User:
    """Lock the user's row for a quota decision and return it fresh; 401 if the account is gone."""
    user = db.session.scalars(locking([User], User.id == user_id, touch=User.used_bytes)).one_or_none()
    if user is None:
        raise Unauthorized("This account no longer exists.", code="invalid_token")
    return user


# -- reservations ------------------------------------------------------------------------


# A single-request upload's URL (PUT or POST form) stays usable until it expires, whatever became of
# its record: a deleted file's old URL could store the bytes again. So a deleted record keeps its
# reservation while its URL lives (the sweeper's purge then deletes whatever arrived), and nobody
# stores more than the quota through old URLs. While a confirmed file is `deleting` its bytes still
# count as used: nothing to reserve besides. Multipart part URLs die with the upload; a copy has no URL.
# An upload of undeclared size reserves nothing: its `size` is only the bound its form allows, and
# concurrent forms of unknown size must not starve each other by each holding what is left.
def holds_reservation(now: Any) -> ColumnElement:
    """Return the condition of records that reserve their size at `now` (a time or a bound parameter)."""
    deleted = (File.status == FileStatus.DELETED) | ((File.status == FileStatus.DELETING) & File.confirmed_at.is_(None))
    old_url = deleted & File.part_size.is_(None) & (File.method != "COPY")
    live = (File.expires_at > now) & File.size_declared.is_(True)
    return live & (File.status.in_(RESERVING_STATUSES) | old_url)


# Built once: building the statement costs more than running it (the presign hot path).
_RESERVED_BYTES = select(func.coalesce(func.sum(File.size), 0)).where(
    File.user_id == bindparam("user_id"), holds_reservation(bindparam("now", type_=File.expires_at.type))
)


def reserved_bytes(user_id: str, now: datetime | None = None) -> int:
    """Return the bytes held by the user's uploads whose URLs have not expired."""
    return int(db.session.scalar(_RESERVED_BYTES, {"user_id": user_id, "now": now or utcnow()}) or 0)


def reserved_by_user(user_ids: Sequence[str], now: datetime) -> dict[str, int]:
    """Return user id -> reserved bytes for the users that hold any."""
    reserved: dict[str, int] = {}
    for chunk in chunked(user_ids):
        query = (
            select(File.user_id, func.sum(File.size))
            .where(File.user_id.in_(chunk), holds_reservation(now))
            .group_by(File.user_id)
        )
        reserved.update((user_id, int(total)) for user_id, total in db.session.execute(query))
    return reserved


def available_bytes(user: User, now: datetime | None = None) -> int:
    """Return what the user may still reserve: quota - used - live reservations."""
    return user.quota_bytes - user.used_bytes - reserved_bytes(user.id, now)


def lapsed(expires_at: datetime | None, now: datetime) -> bool:
    """Tell whether a reservation that ran until expires_at no longer holds at `now`."""
    return expires_at is not None and expires_at <= now


# Built once (the presign hot path). Under the bound, with `room` bytes to spare: add `size` to it,
# taking the user's row lock (PostgreSQL) or the write lock (SQLite) until the transaction ends.
_RESERVE_WITHIN_BOUND = (
    update(User.__table__)
    .where(
        User.id == bindparam("user_id"),
        User.quota_bytes - User.used_bytes - User.reserved_bound >= bindparam("room"),
    )
    .values(reserved_bound=User.reserved_bound + bindparam("size"))
    .returning(User.id)
)
_ROOM_WITHIN_BOUND = select(User.id).where(
    User.id == bindparam("user_id"), User.quota_bytes - User.used_bytes - User.reserved_bound >= bindparam("room")
)


def reserve_within_bound(
    user_id: str, size: int, room: int, rows: list[dict[str, Any]], meanwhile: Callable[[], Any] | None = None
) -> bool:
    """Reserve `size` bytes if the quota has `room` (>= size) bytes under the bound, and insert the
    files `rows` that hold them: one statement on PostgreSQL, else two.

    False, and nothing written: the bound says nothing for sure (or the user is gone): decide
    with open_ledger. Nothing to reserve (forms of undeclared size) takes no lock: they only need
    the room for their bound. `meanwhile` is called while the one statement runs, if it can be
    (bulk.insert_guarded); the caller tells by its having run.
    """
    statement = _RESERVE_WITHIN_BOUND if size else _ROOM_WITHIN_BOUND
    parameters = {"user_id": user_id, "size": size, "room": room}
    if bulk.can_insert_guarded(rows):
        return bulk.insert_guarded(File.__table__, rows, statement, parameters, meanwhile)
    # On the session's connection, in its transaction: Core, without the ORM's per-statement work.
    if db.session.connection().execute(statement, parameters).first() is None:
        return False
    bulk.bulk_insert(File.__table__, rows)
    return True


def insert_then_reserve_within_bound(
    user_id: str,
    row_chunks: Iterable[list[dict[str, Any]]],
    sizes: Callable[[], tuple[int, int]],
    meanwhile: Callable[[], Any] | None = None,
) -> bool:
    """reserve_within_bound for rows that come in chunks (a big batch, validated as it is inserted):
    insert them, then reserve `size` bytes if the quota has `room` under the bound, where
    (size, room) = sizes() once the chunks are done; one transaction, kept only if it did.

    PostgreSQL only (bulk.can_insert_streamed). False, and nothing written: decide with open_ledger.
    """

    def guard() -> tuple[Executable, dict[str, Any]]:
        size, room = sizes()
        statement = _RESERVE_WITHIN_BOUND if size else _ROOM_WITHIN_BOUND
        return statement, {"user_id": user_id, "size": size, "room": room}

    return bulk.insert_then_guard(File.__table__, row_chunks, guard, meanwhile)


@dataclass
class Ledger:
    """One user's quota, locked until the transaction ends: reserve, count arrivals, release."""

    user: User
    now: datetime
    _available: int | None = field(default=None, repr=False)

    def available(self) -> int:
        """Return the bytes the user may still reserve (read once per ledger, then kept up to date)."""
        if self._available is None:
            reserved = reserved_bytes(self.user.id, self.now)
            self.user.reserved_bound = reserved  # exact now: the fast path's bound starts afresh
            self._available = self.user.quota_bytes - self.user.used_bytes - reserved
        return self._available

    def reserve(self, size: int, action: str = "Uploading", consequence: str = "") -> None:
        """Hold `size` more bytes for a record about to be written, or raise quota_exceeded."""
        self._take(size, action, consequence)
        self.user.reserved_bound += size

    def _take(self, size: int, action: str = "Uploading", consequence: str = "") -> None:
        """Take `size` bytes of what is available, or raise quota_exceeded."""
        available = self.available()
        if size > available:
            left = max(available, 0)
            size_text, left_text = distinct_sizes(size, left)
            raise QuotaExceeded(
                f"{action} {size_text} would exceed your quota ({left_text} left){consequence}.",
                details={"available_bytes": left, "file_size": size},
            )
        self._available = available - size

    def count_arrival(self, record: File, size: int, etag: str | None) -> None:
        """Mark a record complete with `size` bytes and count them as used.

        A record whose reservation lapsed (its URL expired), or one of undeclared size (which never
        reserved), holds nothing: its bytes must fit the quota now, else quota_exceeded and the
        record is left as it was (the caller rejects it).
        """
        if lapsed(record.expires_at, self.now) or not record.size_declared:
            try:
                self._take(size)
            except QuotaExceeded:
                late = "came too late and" if record.size_declared else "arrived but"
                raise QuotaExceeded(
                    f"The upload {late} no longer fits your quota.", details={"file_size": size}
                ) from None
        elif record.status in RESERVING_STATUSES:
            # Its live reservation becomes used bytes (it was counted in the bound when it was made).
            self.user.reserved_bound = max(self.user.reserved_bound - record.size, 0)
        record.status = FileStatus.COMPLETE
        record.size, record.size_declared = size, True
        record.confirmed_at = self.now
        record.etag = etag
        self.user.used_bytes += size
        # Every arrival is inspected (services/inspection.py queues it once this transaction commits).
        inspection.mark_pending(record)

    def count_again(self, record: File) -> None:
        """Count a rejected record's bytes as used again (an admin released it), or raise quota_exceeded."""
        self._take(record.size, "Releasing", "; free some space first")
        record.status = FileStatus.COMPLETE
        self.user.used_bytes += record.size

    def release(self, size: int) -> None:
        """Stop counting `size` bytes of deleted complete files as used.

        A deleted file whose upload URL still lives reserves its size again (holds_reservation):
        the bound takes what used gives up, and stays an upper bound.
        """
        self.user.used_bytes = max(self.user.used_bytes - size, 0)
        self.user.reserved_bound += size


def open_ledger(user_id: str, now: datetime | None = None) -> Ledger:
    """Lock the user's row and return the ledger for one quota decision (until commit)."""
    return Ledger(lock_user(user_id), now or utcnow())


def reread(ids: Iterable[str]) -> list[File]:
    """Return the records with these ids as the database holds them now (call under the user's lock)."""
    query = select(File).where(File.id.in_(list(ids))).execution_options(populate_existing=True)
    return list(db.session.scalars(query))


# -- state transitions -------------------------------------------------------------------


def transition(
    ids: Sequence[str],
    from_: str | Iterable[str],
    to: str | None = None,
    *,
    where: Sequence[ColumnElement] = (),
    **values: Any,
) -> list[str]:
    """Move the records among ids that are still in `from_` (and meet `where`) to `to`, setting values.

    Return the ids that moved: the others changed meanwhile (a concurrent confirm, abort,
    sweeper or part-signing call). Does not commit: the caller's transaction decides.
    """
    statuses = (from_,) if isinstance(from_, str) else tuple(from_)
    if to is not None:
        values["status"] = to
    moved: list[str] = []
    for chunk in chunked(list(ids)):
        statement = (
            update(File)
            .where(File.id.in_(chunk), File.status.in_(statuses), *where)
            .values(**values)
            .returning(File.id)
            .execution_options(synchronize_session=False)
        )
        moved.extend(db.session.scalars(statement))
    return moved
