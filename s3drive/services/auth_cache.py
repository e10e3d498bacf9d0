"""A per-process cache of verified tokens, so an authenticated request need not query the database.

Checking an access token costs one query (is its user active, is its jti revoked: users.token_user). A
process that verified a token keeps what it learnt, keyed by (user id, jti), for AUTH_CACHE_SECONDS
(config.py; 0 turns the cache off) and answers from memory meanwhile.

How fast a change takes effect:
- in the process that made it, at once: a logout (users.revoke_token) drops its token, an admin disabling
  a user or changing their admin flag (admin.update_user) drops that user's tokens;
- in every other process (gunicorn workers, other hosts), and for changes made straight in the database,
  within AUTH_CACHE_SECONDS: that is the bound on how long a logged-out token, a disabled account or a
  withdrawn admin right can still be used there.

Decoding a token (PyJWT checks its base64 a character at a time, and flask-jwt-extended decodes each
token twice) costs more than the rest of a small request: DecodingJWTManager keeps the claims of
tokens whose signature it verified, keyed by their exact text, until they expire, and the headers
flask-jwt-extended reads again afterwards (unverified_header). That changes no answer: the same
text always verifies (and parses) the same way, and expiry is checked on every use.

Only what authentication needs is cached (an immutable Principal: id and admin flag); views that show the
account (GET /api/auth/me, /api/files/usage) read the user from the database. The cache lives on the app
(app.extensions), so apps in one process (tests) never share it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache

import jwt as pyjwt
from flask import Flask, current_app
from flask_jwt_extended import JWTManager
from flask_jwt_extended import view_decorators as jwt_views
from flask_jwt_extended.config import config as jwt_config

EXTENSION = "s3drive.auth_cache"
DECODED = "s3drive.decoded_tokens"
# Beyond this many tokens the oldest are forgotten: the cache cannot grow without limit, and a forgotten
# token costs one query to learn again.
MAX_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified token speaks for: what `current_user` is on authenticated routes."""

    id: str
    is_admin: bool


class AuthCache:
    """Verified tokens by (user id, jti), oldest first; safe to share between a process's threads."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._entries: OrderedDict[tuple[str, str], tuple[Principal, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._max_entries = max_entries
        # Bumped by every drop. A request that looked a token up in the database stores the answer only if
        # no drop happened meanwhile: else a logout or a disabling committed while it queried could be
        # overwritten by what it read just before, and outlive the "at once" promise.
        self._generation = 0

    def get(self, user_id: str, jti: str, max_age: float) -> tuple[Principal | None, int]:
        """Return the principal verified at most max_age seconds ago (or None) and the generation to store with."""
        with self._lock:
            entry = self._entries.get((user_id, jti))
            if entry is not None and time.monotonic() - entry[1] >= max_age:
                del self._entries[(user_id, jti)]  # expired: ask the database again
                entry = None
            return (entry[0] if entry is not None else None), self._generation

    def put(self, jti: str, principal: Principal, generation: int) -> None:
        """Remember a token verified now, unless a drop happened since `generation` was read."""
        with self._lock:
            if generation != self._generation:
                return
            key = (principal.id, jti)
            self._entries[key] = (principal, time.monotonic())
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def drop_token(self, user_id: str, jti: str) -> None:
        """Forget one token (it was revoked)."""
        with self._lock:
            self._generation += 1
            self._entries.pop((user_id, jti), None)

    def drop_user(self, user_id: str) -> None:
        """Forget every token of a user (disabled, deleted, or their admin flag changed)."""
        with self._lock:
            self._generation += 1
            # A scan: admin changes are rare, and the cache is bounded.
            for key in [key for key in self._entries if key[0] == user_id]:
                del self._entries[key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


class DecodedTokens:
    """Claims of verified tokens by their text, until they expire; bounded; thread-safe."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._claims: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.Lock()
        self._max_entries = max_entries

    def get(self, encoded: str) -> dict | None:
        """Return a copy of the claims of a token verified before, if it has not expired since."""
        with self._lock:
            claims = self._claims.get(encoded)
            if claims is None:
                return None
            if claims["exp"] <= time.time():
                del self._claims[encoded]
                return None
            return dict(claims)

    def put(self, encoded: str, claims: dict) -> None:
        """Remember the claims of a token whose signature was just verified (only tokens that expire)."""
        if not isinstance(claims.get("exp"), int | float):
            return
        with self._lock:
            self._claims[encoded] = dict(claims)
            while len(self._claims) > self._max_entries:
                self._claims.popitem(last=False)


# The previous secret a token is being verified with (JWT_PREVIOUS_SECRET_KEYS), while one is tried.
_trying_key: ContextVar[str | None] = ContextVar("s3drive_jwt_trying_key", default=None)


class DecodingJWTManager(JWTManager):
    """flask-jwt-extended's JWTManager, decoding each token's text once per process (DecodedTokens), and
    accepting tokens signed with a previous secret (S3DRIVE_JWT_PREVIOUS_SECRET_KEYS) while they live."""

    def init_app(self, app: Flask, add_context_processor: bool = False) -> None:
        super().init_app(app, add_context_processor)
        # After verifying a token, flask-jwt-extended parses its header once more, on every request
        # (utils.get_unverified_jwt_headers, imported by name into view_decorators).
        jwt_views.get_unverified_jwt_headers = unverified_header
        self.decode_key_loader(_decode_key)

    def _decode_jwt_from_config(self, encoded_token: str, csrf_value=None, allow_expired: bool = False) -> dict:
        if csrf_value is not None or allow_expired:  # not ours: decode as the library does
            return super()._decode_jwt_from_config(encoded_token, csrf_value, allow_expired)
        decoded = current_app.extensions.setdefault(DECODED, DecodedTokens())
        claims = decoded.get(encoded_token)
        if claims is None:
            claims = self._verify(encoded_token)
            decoded.put(encoded_token, claims)
        return claims

    def _verify(self, encoded_token: str) -> dict:
        """Return a token's claims, verified with the current secret or else with a previous one.

        Rotating the secret then logs nobody out: tokens signed before keep working until they expire,
        and every token issued (a refresh included) is signed with the current secret.
        """
        try:
            return super()._decode_jwt_from_config(encoded_token)
        except pyjwt.InvalidSignatureError:
            for key in current_app.config["JWT_PREVIOUS_SECRET_KEYS"]:
                trying = _trying_key.set(key)
                try:
                    return super()._decode_jwt_from_config(encoded_token)
                except pyjwt.InvalidSignatureError:
                    continue
                finally:
                    _trying_key.reset(trying)
            raise


def _decode_key(header: dict, payload: dict) -> str:
    """Return the secret to verify a token with: a previous one being tried, else the current one."""
    return _trying_key.get() or jwt_config.decode_key


def unverified_header(encoded: str) -> dict:
    """Return a token's header, unverified (as flask-jwt-extended's get_unverified_jwt_headers), parsed
    once per token text: a pure function of the text; a token that does not parse raises each time."""
    return dict(_parsed_header(encoded))


_parsed_header = lru_cache(maxsize=MAX_ENTRIES)(pyjwt.get_unverified_header)


def init_app(app: Flask) -> None:
    """Give the app its own, empty cache."""
    app.extensions[EXTENSION] = AuthCache()


def get_cache() -> AuthCache:
    """Return the current app's cache (created on first use where init_app was not called)."""
    # dict.setdefault is atomic: threads racing here all get the same cache.
    return current_app.extensions.setdefault(EXTENSION, AuthCache())


def max_age() -> float:
    """Return AUTH_CACHE_SECONDS: how long a verified token is trusted (0: not at all)."""
    return float(current_app.config.get("AUTH_CACHE_SECONDS", 0) or 0)
