"""Administration: server statistics, the user list with usage, and changing users."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select

from ..cursors import checked_text, checked_time, decode_cursor, encode_cursor
from ..errors import Conflict, Forbidden, NotFound
from ..extensions import db
from ..models import RESERVING_STATUSES, File, FileStatus, User
from ..timeutil import utcnow
from . import auth_cache
from .quota import chunked, holds_reservation, is_sqlite, lock_user, reserved_by_user
from .users import Account, account

USERS_CURSOR_SCOPE = "admin users"


@dataclass
class UserCounts:
    """Accounts by state."""

    total: int = 0
    active: int = 0
    disabled: int = 0
    admins: int = 0  # active administrators


@dataclass
class CountBytes:
    """How many file records, and their bytes."""

    count: int = 0
    bytes: int = 0


@dataclass
class Stats:
    """The server at a glance (GET /api/admin/stats, /metrics)."""

    users: UserCounts
    files: dict[str, CountBytes]
    used_bytes: int
    reserved_bytes: int
    quota_bytes: int
    lapsed_reservations: int


@dataclass
class UserPage:
    """A page of the user list and the cursor of the next one (None on the last page)."""

    items: list[Account]
    next_cursor: str | None


def stats(now: datetime | None = None) -> Stats:
    """Return user counts, file counts and bytes by status, and total used/reserved/quota bytes."""
    now = now or utcnow()
    users = UserCounts()
    for is_active, is_admin, count in db.session.execute(
        select(User.is_active, User.is_admin, func.count()).group_by(User.is_active, User.is_admin)
    ):
        users.total += count
        users.active += count if is_active else 0
        users.disabled += 0 if is_active else count
        users.admins += count if is_admin and is_active else 0
    files = {status.value: CountBytes() for status in FileStatus}
    for status, count, size in db.session.execute(
        select(File.status, func.count(), total(File.size)).group_by(File.status)
    ):
        files[status] = CountBytes(int(count), int(size))
    used, quota = db.session.execute(select(total(User.used_bytes), total(User.quota_bytes))).one()
    live, lapsed = _reservations(now)
    return Stats(users, files, int(used), live, int(quota), lapsed)


def total(column):
    """Return a SUM over all users that cannot overflow: SQLite's SUM raises on 64-bit overflow, its
    TOTAL (a float) does not; PostgreSQL sums bigints as numeric."""
    if is_sqlite():
        return func.total(column)
    return func.coalesce(func.sum(column), 0)


def _reservations(now: datetime) -> tuple[int, int]:
    # Bytes still held by live upload URLs, and how many uploads lapsed without confirm (sweeper's work).
    live = db.session.scalar(select(total(File.size)).where(holds_reservation(now)))
    held = File.status.in_(RESERVING_STATUSES)
    lapsed = db.session.scalar(select(func.count()).select_from(File).where(held, File.expires_at <= now))
    return int(live or 0), int(lapsed or 0)


def list_users(limit: int = 50, cursor: str | None = None, q: str | None = None) -> UserPage:
    """Return a page of users, oldest first, with usage, and the cursor of the next page."""
    query = select(User).order_by(User.created_at, User.id).limit(limit + 1)
    if q:
        query = query.where(func.lower(User.username).contains(q.lower(), autoescape=True))
    if cursor:
        created_at, user_id = decode_user_cursor(cursor)
        query = query.where(or_(User.created_at > created_at, and_(User.created_at == created_at, User.id > user_id)))
    page = list(db.session.scalars(query))
    has_more = len(page) > limit
    page = page[:limit]
    return UserPage(with_usage(page), encode_user_cursor(page[-1]) if has_more else None)


def encode_user_cursor(user: User) -> str:
    """Return the opaque cursor that continues after this user."""
    return encode_cursor([user.created_at.isoformat(), user.id], USERS_CURSOR_SCOPE)


def decode_user_cursor(cursor: str) -> tuple[datetime, str]:
    """Return (created_at, id) from a cursor, or raise validation_error."""
    created_at, user_id = decode_cursor(cursor, USERS_CURSOR_SCOPE, 2)
    return checked_time(created_at), checked_text(user_id, 64)


def with_usage(users: list[User], now: datetime | None = None) -> list[Account]:
    """Return the admin view of users, with reserved bytes and file counts read in two queries."""
    now = now or utcnow()
    ids = [user.id for user in users]
    reserved = reserved_by_user(ids, now)
    counts: dict[str, int] = {}
    for chunk in chunked(ids):
        counts.update(
            (uid, count)
            for uid, count in db.session.execute(
                select(File.user_id, func.count())
                .where(File.user_id.in_(chunk), File.status == FileStatus.COMPLETE)
                .group_by(File.user_id)
            )
        )
    return [account(user, reserved.get(user.id, 0), int(counts.get(user.id, 0))) for user in users]


def get_user(user_id: str) -> Account:
    """Return one user's admin view, or not_found."""
    user = db.session.get(User, user_id) if len(user_id) <= 64 else None
    if user is None:
        raise NotFound("No such user.")
    return with_usage([user])[0]


def update_user(acting_id: str, user_id: str, changes: dict[str, Any]) -> Account:
    """Change a user's quota, active or admin flag; an admin may not demote or disable themselves."""
    if len(user_id) > 64 or db.session.get(User, user_id) is None:
        raise NotFound("No such user.")
    if user_id == acting_id and (changes.get("is_admin") is False or changes.get("is_active") is False):
        # Keeps at least one admin: the one making the change.
        raise Conflict("You cannot remove your own admin rights or disable your own account.")
    # Lock both rows in id order: two admins demoting each other at once are serialized,
    # and the second finds it is no longer an admin. The target's lock also orders a quota
    # change against that user's concurrent presigns.
    locked = {uid: lock_user(uid) for uid in sorted({acting_id, user_id})}
    acting, user = locked[acting_id], locked[user_id]
    if not (acting.is_admin and acting.is_active):
        db.session.rollback()
        raise Forbidden("Only administrators may do this.")
    for name in ("quota_bytes", "is_active", "is_admin"):
        if name in changes:
            setattr(user, name, changes[name])
    db.session.commit()
    if "is_active" in changes or "is_admin" in changes:
        # After the commit: this process's cached tokens of the user follow at once, the other processes
        # within AUTH_CACHE_SECONDS (auth_cache).
        auth_cache.get_cache().drop_user(user_id)
    return with_usage([user])[0]
