"""Users, passwords, token revocation, and what a user's account shows (usage)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from ..errors import Conflict, Forbidden, Unauthorized
from ..extensions import db
from ..models import File, FileStatus, RevokedToken, User
from .quota import reserved_bytes

# Compared against when the user does not exist, so a login for an unknown name
# costs the same time as one with a wrong password (no user enumeration by timing).
_DUMMY_HASH = generate_password_hash("not-a-real-password")


def find_user(username: str) -> User | None:
    """Return the user with this name (case-insensitive), or None."""
    return db.session.scalar(select(User).where(func.lower(User.username) == username.lower()))


def create_user(username: str, password: str, *, is_admin: bool = False, quota_bytes: int | None = None) -> User:
    """Create a user with a hashed password; raise username_taken if the name exists."""
    if find_user(username) is not None:
        raise Conflict(f"The username {username!r} is taken.", code="username_taken")
    user = User(
        username=username,
        password_hash=generate_password_hash(password),
        is_admin=is_admin,
        quota_bytes=current_app.config["DEFAULT_QUOTA_BYTES"] if quota_bytes is None else quota_bytes,
    )
    db.session.add(user)
    try:
        db.session.commit()
    except IntegrityError:
        # Lost a race with a concurrent registration of the same name.
        db.session.rollback()
        raise Conflict(f"The username {username!r} is taken.", code="username_taken") from None
    return user


def register_user(username: str, password: str) -> User:
    """Register a new user, unless registration is closed."""
    if not current_app.config["ALLOW_REGISTRATION"]:
        raise Forbidden("Registration is closed on this server.", code="registration_closed")
    return create_user(username, password)


def authenticate(username: str, password: str) -> User:
    """Return the user for a correct name and password, else raise unauthorized."""
    user = find_user(username)
    valid = check_password_hash(user.password_hash if user else _DUMMY_HASH, password)
    if user is None or not valid:
        raise Unauthorized("Wrong username or password.")
    if not user.is_active:
        raise Unauthorized("This account is disabled.")
    return user


def revoke_token(payload: dict) -> None:
    """Persist a token's jti so it is refused from now on, across restarts."""
    if db.session.get(RevokedToken, payload["jti"]) is not None:
        return
    db.session.add(
        RevokedToken(
            jti=payload["jti"],
            user_id=payload.get("sub"),
            token_type=payload.get("type", "access"),
            expires_at=datetime.fromtimestamp(payload["exp"], UTC) if "exp" in payload else None,
        )
    )
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()  # revoked concurrently: the goal is reached


def token_user(user_id: str, jti: str) -> tuple[User | None, bool]:
    """Return the token's user (None if gone) and whether the token was revoked, in one query."""
    revoked = select(RevokedToken.jti).where(RevokedToken.jti == jti).exists().label("revoked")
    row = db.session.execute(select(User, revoked).where(User.id == user_id)).first()
    return (row[0], bool(row[1])) if row is not None else (None, False)


@dataclass
class Usage:
    """What a user's files take of the quota."""

    used_bytes: int
    reserved_bytes: int
    quota_bytes: int
    file_count: int


@dataclass
class Account:
    """The API's User: the account and its live usage."""

    id: str
    username: str
    is_admin: bool
    is_active: bool
    quota_bytes: int
    used_bytes: int
    reserved_bytes: int
    created_at: datetime
    file_count: int | None = None  # admin views only


def usage(user: User) -> Usage:
    """Return the user's used, reserved and quota bytes and file count."""
    file_count = db.session.scalar(
        select(func.count()).select_from(File).where(File.user_id == user.id, File.status == FileStatus.COMPLETE)
    )
    return Usage(user.used_bytes, reserved_bytes(user.id), user.quota_bytes, int(file_count or 0))


def account(user: User, reserved: int | None = None, file_count: int | None = None) -> Account:
    """Return the User shape of a user, with live reserved bytes unless given."""
    reserved = reserved_bytes(user.id) if reserved is None else reserved
    return Account(
        user.id,
        user.username,
        user.is_admin,
        user.is_active,
        user.quota_bytes,
        user.used_bytes,
        reserved,
        user.created_at,
        file_count,
    )
