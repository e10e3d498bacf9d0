"""Cutting lists into batches: IN lists, DeleteObjects calls, batch API calls (server and client)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")


def chunked(values: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Yield consecutive slices of at most `size` values."""
    for start in range(0, len(values), size):
        yield values[start : start + size]
