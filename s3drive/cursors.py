"""Opaque page cursors: the position a page ended at, signed so that clients cannot forge or swap them.

A cursor is base64url(JSON values + HMAC over them and a scope). The scope binds a cursor to
what it pages through (a user's listing in one sort order, the admin's user list): a cursor
of another user or another listing fails the MAC. Decoding never trusts the values: callers
check each one, so a bad cursor is a 422, never a database error.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

from flask import current_app

from .errors import ValidationFailed

_MAC_BYTES = 16
MAX_CURSOR_CHARS = 2048


def _mac(payload: bytes, scope: str) -> bytes:
    secret = current_app.config["JWT_SECRET_KEY"].encode()
    message = b"s3drive cursor\0" + scope.encode() + b"\0" + payload
    return hmac.new(secret, message, hashlib.sha256).digest()[:_MAC_BYTES]


def encode_cursor(values: list[Any], scope: str) -> str:
    """Return the opaque cursor for these JSON values, valid only within `scope`."""
    payload = json.dumps(values, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(payload + _mac(payload, scope)).rstrip(b"=").decode()


def decode_cursor(cursor: str, scope: str, length: int) -> list[Any]:
    """Return the `length` values of a cursor made for `scope`, or raise validation_error."""
    try:
        if len(cursor) > MAX_CURSOR_CHARS or not cursor.isascii():
            raise ValueError
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if len(raw) <= _MAC_BYTES or not hmac.compare_digest(mac, _mac(payload, scope)):
            raise ValueError
        values = json.loads(payload)
    except (ValueError, TypeError, binascii.Error):
        raise invalid_cursor() from None
    if not isinstance(values, list) or len(values) != length:
        raise invalid_cursor()
    return values


def invalid_cursor(reason: str = "Not a valid cursor.") -> ValidationFailed:
    """Return the validation_error of a cursor that cannot be used."""
    return ValidationFailed("The cursor is not valid.", details={"cursor": [reason]})


def checked_text(value: Any, limit: int) -> str:
    """Return a cursor's string value, or raise validation_error if it is not a short string."""
    if not isinstance(value, str) or len(value) > limit or "\x00" in value:
        raise invalid_cursor()
    return value


def checked_time(value: Any) -> datetime:
    """Return a cursor's timestamp value (aware UTC), or raise validation_error."""
    try:
        moment = datetime.fromisoformat(checked_text(value, 64))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise invalid_cursor("Bad timestamp.")
    return moment.astimezone(UTC)
