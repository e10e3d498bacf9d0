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
from . import auth_cache
from .auth_cache import Principal
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
    try:
        _persist_revocation(payload)
    finally:
        # After the commit (a request verifying the token meanwhile reads the row), and whatever happened:
        # this process refuses the token at once; the others within AUTH_CACHE_SECONDS (auth_cache).
        auth_cache.get_cache().drop_token(str(payload.get("sub")), payload["jti"])


def _persist_revocation(payload: dict) -> None:
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


def token_principal(user_id: str, jti: str) -> tuple[Principal | None, bool]:
    """Return who the token speaks for (None if the user is gone or disabled) and whether it was revoked;
    from this process's cache when it verified the token within AUTH_CACHE_SECONDS, else by token_user."""
    max_age = auth_cache.max_age()
    cache = auth_cache.get_cache()
    principal, generation = cache.get(user_id, jti, max_age) if max_age > 0 else (None, 0)
    if principal is not None:
        return principal, False
    user, revoked = token_user(user_id, jti)
    principal = Principal(user.id, user.is_admin) if user is not None and user.is_active else None
    # Only good news is kept: a revoked token or a disabled user is asked about again on every request.
    if max_age > 0 and principal is not None and not revoked:
        cache.put(jti, principal, generation)
    return principal, revoked


def get_user(user_id: str) -> User:
    """Return the signed-in user's row as the database holds it now; 401 invalid_token if gone or disabled."""
    user = db.session.get(User, user_id)
    if user is None or not user.is_active:
        raise Unauthorized("The account for this token is disabled or gone.", code="invalid_token")
    return user


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
