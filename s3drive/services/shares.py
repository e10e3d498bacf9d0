"""Share links: a public link `<base>/s/<token>` to one of a user's files, opened without an account.

Rules of state:
- only a `complete` file whose content inspection `passed` can be shared (not_ready while it is
  pending, invalid_state otherwise, archived tiers included: S3 cannot read them);
- the token (secrets.token_urlsafe) is shown once, in the answer that makes the link: only its
  SHA-256 is stored, and links are looked up by it. A password is hashed as users' passwords are;
- unknown or revoked: not_found. Expired, used up, or its file no longer complete (deleting,
  deleted, rejected): gone. The file's state is read when the link is opened, so whatever ends a
  file (a delete, single or bulk, an inspection that rejects it, the sweeper) ends its links at once;
- a download is counted when a URL to the object is issued, by one conditional UPDATE (the link
  live, its file complete, downloads < max_downloads): concurrent opens never pass max_downloads.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import or_, select, tuple_, update
from werkzeug.security import check_password_hash, generate_password_hash

from ..cursors import checked_text, checked_time, decode_cursor, encode_cursor
from ..errors import Gone, InvalidState, NotFound, NotReady, Unauthorized
from ..extensions import db
from ..models import File, FileStatus, InspectionState, Share, User
from ..timeutil import utcnow
from .files import get_owned_file, require_readable, signed_download
from .inspection import inspection_of

TOKEN_BYTES = 32  # 43 URL-safe characters, 256 random bits
MAX_TOKEN_LENGTH = 128
DEFAULT_EXPIRES_IN = 7 * 24 * 3600
MAX_EXPIRES_IN = 30 * 24 * 3600
# A URL a link issues is a bearer credential the download count no longer sees: short-lived. S3 checks
# its signature when a download starts, so a long download still finishes.
URL_SECONDS = 60
DEFAULT_LIMIT = 50
# How long a link that expired or was revoked is kept (answering 410, or 404, and listed) before the sweeper
# deletes it; from then on its token is unknown (404).
KEEP_DEAD_FOR = timedelta(days=30)


@dataclass
class SharedDownload:
    """What an opened link answers: the file as its visitor sees it, and a URL of its object."""

    file_name: str
    size: int
    content_type: str
    thumbnail_url: str | None
    url: str
    expires_at: datetime


@dataclass
class ShareView:
    """A live link as its public page shows it, before any download: nothing of the file behind a password."""

    expires_at: datetime
    password: bool
    file_name: str | None = None
    size: int | None = None
    content_type: str | None = None
    thumbnail_url: str | None = None


@dataclass
class SharePage:
    """A page of the caller's links, newest first, and the cursor of the next (None on the last page)."""

    items: list[Share]
    next_cursor: str | None


def token_hash(token: str) -> str:
    """Return the stored form of a link's token: its SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


# -- the owner's side ----------------------------------------------------------------------


def create_share(
    user_id: str,
    file_id: str,
    link_base: str,
    *,
    expires_in: int = DEFAULT_EXPIRES_IN,
    max_downloads: int | None = None,
    password: str | None = None,
) -> Share:
    """Make a link to one of the user's complete, inspected files; its `url` is link_base + the token."""
    require_shareable(get_owned_file(user_id, file_id))
    token = secrets.token_urlsafe(TOKEN_BYTES)
    now = utcnow()
    share = Share(
        user_id=user_id,
        file_id=file_id,
        token_hash=token_hash(token),
        password_hash=generate_password_hash(password) if password is not None else None,
        expires_at=now + timedelta(seconds=expires_in),
        max_downloads=max_downloads,
        downloads=0,
        created_at=now,
    )
    db.session.add(share)
    db.session.commit()
    share.url = link_base + token
    return share


def require_shareable(record: File) -> None:
    """Raise not_ready while the file's inspection is pending, invalid_state unless it is complete,
    readable now and passed inspection."""
    if record.status == FileStatus.COMPLETE and record.inspection_state == InspectionState.PENDING:
        raise NotReady("The file's content is still being inspected; it can be shared once that passes.")
    require_readable(record, "be shared")
    # With inspection switched off (S3DRIVE_INSPECT=false) files are never inspected: the operator chose so.
    uninspected_by_choice = record.inspection_state is None and not current_app.config["INSPECT"]
    if record.inspection_state != InspectionState.PASSED and not uninspected_by_choice:
        raise InvalidState("Only files whose content inspection passed can be shared.")


def get_owned_share(user_id: str, share_id: str) -> Share:
    """Return the user's link, or not_found (also for other users' links)."""
    share = db.session.get(Share, share_id) if len(share_id) <= 64 else None
    if share is None or share.user_id != user_id:
        raise NotFound("No such share.")
    return share


def revoke_share(user_id: str, share_id: str) -> Share:
    """Stop a link at once (idempotent: a revoked link stays revoked as it was)."""
    share = get_owned_share(user_id, share_id)
    if share.revoked_at is None:
        share.revoked_at = utcnow()
        db.session.commit()
    return share


def list_shares(user_id: str, file_id: str | None = None, limit: int = DEFAULT_LIMIT, cursor: str | None = None):
    """Return a page of the user's links (one file's, with file_id), newest first, and the next cursor."""
    query = select(Share).where(Share.user_id == user_id)
    if file_id is not None:
        query = query.where(Share.file_id == file_id)
    if cursor:
        query = query.where(tuple_(Share.created_at, Share.id) < decode_share_cursor(cursor, user_id))
    query = query.order_by(Share.created_at.desc(), Share.id.desc()).limit(limit + 1)
    items = list(db.session.scalars(query))
    if len(items) <= limit:
        return SharePage(items, None)
    del items[limit:]
    return SharePage(items, encode_share_cursor(items[-1], user_id))


def encode_share_cursor(share: Share, user_id: str) -> str:
    """Return the opaque cursor that continues the user's list after this link."""
    return encode_cursor([share.created_at.isoformat(), share.id], f"shares\0{user_id}")


def decode_share_cursor(cursor: str, user_id: str) -> tuple[datetime, str]:
    """Return (created_at, id) of a cursor made for this user's list, or raise validation_error."""
    created_at, share_id = decode_cursor(cursor, f"shares\0{user_id}", 2)
    return checked_time(created_at), checked_text(share_id, 64)


# -- the visitor's side --------------------------------------------------------------------


def describe_share(token: str) -> ShareView:
    """Describe a live link for its public page: no URL of the file is issued, no download counted."""
    share, record = live_share(token)
    if share.password_hash is not None:
        return ShareView(share.expires_at, password=True)
    preview = inspection_of(record) or {}
    return ShareView(
        share.expires_at, False, record.file_name, record.size, record.content_type, preview.get("thumbnail_url")
    )


def open_share(token: str, password: str | None = None) -> SharedDownload:
    """Open a link: check it (and its password, if it has one), issue a short-lived URL of its file's
    object, and count that as one download."""
    share, record = live_share(token)
    if share.password_hash is not None:
        if password is None:
            raise Unauthorized(
                'This link is protected by a password: POST it as {"password": …}.', details={"password": True}
            )
        if not check_password_hash(share.password_hash, password):
            raise Unauthorized("Wrong password for this link.")
    link = signed_download(record, "attachment", URL_SECONDS)
    if not count_download(share.id, utcnow()):
        # Used up, expired, revoked or its file deleted since it was read: say which.
        db.session.rollback()
        require_live(db.session.get(Share, share.id), db.session.get(File, share.file_id), utcnow())
        raise Gone("This link has been used up.")
    db.session.commit()
    preview = inspection_of(record) or {}
    return SharedDownload(
        record.file_name, record.size, record.content_type, preview.get("thumbnail_url"), link.url, link.expires_at
    )


def live_share(token: str) -> tuple[Share, File]:
    """Return the link with this token and its file, or not_found / gone."""
    share = find_share(token)
    record = db.session.get(File, share.file_id)
    require_live(share, record, utcnow())
    return share, record


def find_share(token: str) -> Share:
    """Return the link with this token, or not_found (unknown, or revoked by its owner)."""
    share = None
    if 0 < len(token) <= MAX_TOKEN_LENGTH:
        share = db.session.scalars(select(Share).where(Share.token_hash == token_hash(token))).one_or_none()
    if share is None or share.revoked_at is not None:
        raise NotFound("No such link.")
    return share


def require_live(share: Share, record: File, now: datetime) -> None:
    """Raise not_found for a revoked link or one whose owner's account is disabled, gone for one expired,
    used up, or whose file is no longer there."""
    owner = db.session.get(User, share.user_id)
    # An account disabled by an admin (abuse, a leaving employee) stops its links too, as it stops its tokens.
    if share.revoked_at is not None or owner is None or not owner.is_active:
        raise NotFound("No such link.")
    if share.expires_at <= now:
        raise Gone("This link has expired.")
    if share.max_downloads is not None and share.downloads >= share.max_downloads:
        raise Gone("This link has been used up.")
    if record.status != FileStatus.COMPLETE or record.inspection_state == InspectionState.REJECTED:
        raise Gone("The shared file is no longer available.")


def count_download(share_id: str, now: datetime) -> bool:
    """Count one download if the link is still live and its file complete; tell whether it was counted.

    One conditional UPDATE: concurrent opens of the last download wait on the row, and all but one
    then find downloads = max_downloads (PostgreSQL re-reads the row; SQLite serializes writers).
    """
    file_complete = (
        select(File.id).where(File.id == Share.file_id, File.status == FileStatus.COMPLETE).exists().correlate(Share)
    )
    owner_active = select(User.id).where(User.id == Share.user_id, User.is_active.is_(True)).exists().correlate(Share)
    statement = (
        update(Share)
        .where(
            Share.id == share_id,
            Share.revoked_at.is_(None),
            Share.expires_at > now,
            or_(Share.max_downloads.is_(None), Share.downloads < Share.max_downloads),
            file_complete,
            owner_active,
        )
        .values(downloads=Share.downloads + 1)
        .execution_options(synchronize_session=False)
    )
    return db.session.execute(statement).rowcount == 1
