"""Time helpers: one clock and one timestamp format for the whole API."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache


def utcnow() -> datetime:
    """Return the current time, timezone-aware UTC."""
    return datetime.now(UTC)


@lru_cache(maxsize=1024)  # a batch repeats one expiry a thousand times; strftime is slow
def isoformat_z(value: datetime) -> str:
    """Format a datetime as ISO 8601 UTC with a Z suffix, to the second."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")
