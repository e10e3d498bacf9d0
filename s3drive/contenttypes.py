"""MIME allow-list matching, shared by the upload policy and content inspection (no Flask)."""

from __future__ import annotations

import fnmatch
from functools import lru_cache


@lru_cache(maxsize=64)
def _type_patterns(allowed: tuple[str, ...]) -> tuple[frozenset[str], tuple[str, ...]]:
    exact = frozenset(t for t in allowed if "*" not in t)
    return exact, tuple(t for t in allowed if "*" in t)


@lru_cache(maxsize=1024)  # a batch asks about the same few types a thousand times
def content_type_allowed(content_type: str, allowed: tuple[str, ...]) -> bool:
    """Tell whether a MIME type matches the allow-list (wildcards like image/*)."""
    exact, wildcards = _type_patterns(allowed)
    return content_type in exact or any(fnmatch.fnmatchcase(content_type, p) for p in wildcards)
