"""SQLAlchemy models: users, files (one row per upload), folders the users made, share links and revoked tokens."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    cast,
    func,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from .extensions import db
from .timeutil import utcnow


def new_id() -> str:
    """Return a new random UUID string."""
    return str(uuid.uuid4())


def new_time_ordered_id() -> str:
    """Return a UUIDv7: its first 48 bits are the Unix time in ms, so these ids sort by creation time."""
    return new_ids(1)[0]


def new_ids(count: int) -> list[str]:
    """Return `count` UUIDv7 strings (RFC 9562) from one read of the clock and of the OS random source.

    Time-ordered: a file's id goes into the primary key's last pages, where a random id touched a
    page of its own (a 1,000-file batch: PostgreSQL's insert 10.7 -> 7 ms, its WAL 3.6 -> 0.45 MB).
    74 random bits each; formatted from hex digits (uuid.UUID costs ~6 µs an id, a batch 6 ms).
    """
    millis = f"{time.time_ns() // 1_000_000 & (1 << 48) - 1:012x}"
    prefix = f"{millis[:8]}-{millis[8:]}-7"  # then rand_a (12 bits), the variant, rand_b (62 bits)
    digits = os.urandom(10 * count).hex()
    ids = []
    for i in range(0, 20 * count, 20):
        h = digits[i : i + 20]
        ids.append(f"{prefix}{h[:3]}-{_VARIANT[h[3]]}{h[4:7]}-{h[7:19]}")
    return ids


_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


class UTCDateTime(TypeDecorator):
    """Store naive UTC, return aware UTC: SQLite keeps no zone, Postgres does."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return value
        if value.tzinfo is None:
            # Naive means UTC here: PostgreSQL would read it in the session's time zone.
            return value if dialect.name == "sqlite" else value.replace(tzinfo=UTC)
        if value.tzinfo is not UTC:
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class FileStatus(StrEnum):
    """The states of a file record (API.md: File.status)."""

    PENDING = "pending"
    UPLOADING = "uploading"
    COMPLETE = "complete"
    REJECTED = "rejected"
    EXPIRED = "expired"
    ABORTED = "aborted"
    # A delete in progress: its object may still be in S3, so a confirmed file's bytes still count as
    # used. Whoever started it, or the sweeper if that process died, finishes it (then `deleted`).
    DELETING = "deleting"
    DELETED = "deleted"


class InspectionState(StrEnum):
    """Where content inspection of a complete file stands (API.md: File.inspection.state).

    A file that completed while inspection was off (S3DRIVE_INSPECT=false) has no state at all.
    """

    PENDING = "pending"
    PASSED = "passed"
    REJECTED = "rejected"


# Statuses whose size is held against the quota until the URL expires.
RESERVING_STATUSES = (FileStatus.PENDING, FileStatus.UPLOADING)


class User(db.Model):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    username: Mapped[str] = mapped_column(String(64), nullable=False)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    is_admin: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    quota_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    used_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    # Never less than the bytes the user's live reservations hold (services/quota.py): a reservation
    # that fits under it needs no sum over the user's records.
    reserved_bound: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)

    __table_args__ = (Index("uq_users_username_lower", func.lower(username), unique=True),)


# The WHERE of the listing's partial indexes (see File.__table_args__).
_COMPLETE_ONLY = {
    "postgresql_where": text("status = 'complete'"),
    "sqlite_where": text("status = 'complete'"),
}


class File(db.Model):
    __tablename__ = "files"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_time_ordered_id)
    user_id: Mapped[str] = mapped_column(String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    # Files presigned in one request share a key prefix, so one listing confirms them.
    batch_id: Mapped[str] = mapped_column(String(36), nullable=False)
    file_name: Mapped[str] = mapped_column(String(255), nullable=False)
    s3_key: Mapped[str] = mapped_column(String(1024), nullable=False, unique=True)
    content_type: Mapped[str] = mapped_column(String(255), nullable=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # False while an upload of unknown size (an Uppy form) is pending: `size` is then the most
    # it may be (it reserves nothing), and confirm sets it to the size S3 reports if it fits.
    size_declared: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True, server_default=true())
    checksum_sha256: Mapped[str | None] = mapped_column(String(64))
    tier: Mapped[str] = mapped_column(String(32), nullable=False, default="standard")
    title: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    folder: Mapped[str] = mapped_column(String(1024), nullable=False, default="")
    # The upload profile whose limits it was checked against (policy.Profile); inspection reads it too.
    profile: Mapped[str] = mapped_column(String(64), nullable=False, default="default", server_default="default")
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=FileStatus.PENDING)
    method: Mapped[str] = mapped_column(String(8), nullable=False, default="PUT")
    upload_id: Mapped[str | None] = mapped_column(String(1024))
    part_size: Mapped[int | None] = mapped_column(BigInteger)
    etag: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set while a tier change copies the object in S3 (no lock held): until then, another waits.
    tier_changing_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Content inspection (services/inspection.py): its state, when a worker last claimed it (a claim
    # older than the lease is taken over: the worker died), what it found (detected type, sizes,
    # reason), the WebP preview's key, and where a rejected object is kept for review.
    inspection_state: Mapped[str | None] = mapped_column(String(16))
    inspection_claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    inspected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    inspection: Mapped[dict | None] = mapped_column(JSON)
    thumbnail_key: Mapped[str | None] = mapped_column(String(1024))
    quarantine_key: Mapped[str | None] = mapped_column(String(1024))
    # When the upload watcher next looks for this Uppy form's object in S3 (None: not watched).
    watch_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_files_user_status_created", "user_id", "status", "created_at"),
        Index("ix_files_status_expires", "status", "expires_at"),
        # The sweeper's look for inspections nobody finished, and the admin's quarantine list: few rows each.
        Index(
            "ix_files_inspection_pending",
            "inspection_claimed_at",
            postgresql_where=text("inspection_state = 'pending'"),
            sqlite_where=text("inspection_state = 'pending'"),
        ),
        Index(
            "ix_files_watch",
            "watch_at",
            postgresql_where=text("watch_at IS NOT NULL"),
            sqlite_where=text("watch_at IS NOT NULL"),
        ),
        Index(
            "ix_files_quarantine",
            "inspected_at",
            postgresql_where=text("quarantine_key IS NOT NULL"),
            sqlite_where=text("quarantine_key IS NOT NULL"),
        ),
        # Listing (services/listing.py): one index per sort, each ending in id, the cursor's tie-break,
        # so every page is a range scan that starts where the previous one stopped. Partial: rows
        # enter them when confirmed, so presigning a batch writes none of them; listings of other
        # statuses (few rows, short-lived) use ix_files_user_status_created.
        Index("ix_files_listing_created", "user_id", "created_at", "id", **_COMPLETE_ONLY),
        Index("ix_files_listing_name", "user_id", "file_name", "id", **_COMPLETE_ONLY),
        Index("ix_files_listing_size", "user_id", "size", "id", **_COMPLETE_ONLY),
        # Listing by profile (?profile=): only files of a named profile, most uploads having none.
        Index(
            "ix_files_listing_profile",
            "user_id",
            "profile",
            "created_at",
            "id",
            postgresql_where=text("status = 'complete' AND profile <> 'default'"),
            sqlite_where=text("status = 'complete' AND profile <> 'default'"),
        ),
        # Folder pages and the subfolder tree; pattern ops (byte order) let PostgreSQL serve the
        # tree's byte-order ranges (~<~) from the index whatever the database's collation.
        Index(
            "ix_files_listing_folder",
            "user_id",
            "folder",
            "created_at",
            "id",
            postgresql_ops={"folder": "varchar_pattern_ops"},
            **_COMPLETE_ONLY,
        ),
        # `q` searches on PostgreSQL (created by migration 0002 when pg_trgm can be installed;
        # the migration also creates statistics on the two lower(...) expressions).
        Index(
            "ix_files_name_trgm",
            func.lower(file_name).label("name_lower"),
            postgresql_using="gin",
            postgresql_ops={"name_lower": "gin_trgm_ops"},
            **_COMPLETE_ONLY,
        ).ddl_if(dialect="postgresql"),
        Index(
            "ix_files_title_trgm",
            func.lower(title).label("title_lower"),
            postgresql_using="gin",
            postgresql_ops={"title_lower": "gin_trgm_ops"},
            **_COMPLETE_ONLY,
        ).ddl_if(dialect="postgresql"),
        # `tag` pages on PostgreSQL (migration 0010, which also creates statistics on the expression):
        # a rare tag is found from the index instead of a walk over all the user's rows.
        Index(
            "ix_files_tags_gin",
            cast(tags, JSONB).label("tags_jsonb"),
            postgresql_using="gin",
            postgresql_ops={"tags_jsonb": "jsonb_path_ops"},
            **_COMPLETE_ONLY,
        ).ddl_if(dialect="postgresql"),
    )


class Share(db.Model):
    """A public link to one complete file (services/shares.py): GET /s/<token>, no account needed."""

    __tablename__ = "shares"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_time_ordered_id)
    user_id: Mapped[str] = mapped_column(String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    file_id: Mapped[str] = mapped_column(String(36), ForeignKey("files.id", ondelete="CASCADE"), nullable=False)
    # SHA-256 (hex) of the link's token: the token itself is shown once, when the link is made, and a
    # copy of this table opens no file.
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    max_downloads: Mapped[int | None] = mapped_column(Integer)
    downloads: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)

    # The link itself, known only to the answer that made it (never stored): None otherwise.
    url = None

    __table_args__ = (
        # The caller's links, newest first, and one file's links (keyset pages end in id).
        Index("ix_shares_user_created", "user_id", "created_at", "id"),
        Index("ix_shares_file_created", "file_id", "created_at", "id"),
    )

    @property
    def has_password(self) -> bool:
        """Tell whether the link asks for a password."""
        return self.password_hash is not None

    @property
    def revoked(self) -> bool:
        """Tell whether the owner revoked the link."""
        return self.revoked_at is not None


class RevokedToken(db.Model):
    __tablename__ = "revoked_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str | None] = mapped_column(String(36))
    token_type: Mapped[str] = mapped_column(String(16), nullable=False)
    # Kept until the token would have expired anyway; a sweeper may drop older rows.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


class Folder(db.Model):
    """A folder the user made, kept while it is empty; a folder that holds files needs no row."""

    __tablename__ = "folders"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    path: Mapped[str] = mapped_column(String(1024), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)

    __table_args__ = (UniqueConstraint("user_id", "path", name="uq_folders_user_path"),)
