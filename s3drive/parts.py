"""Multipart arithmetic: S3's part limits, part sizes, counts, lengths and byte ranges.

Pure functions, no Flask and no boto3: the server (services, storage, the Uppy routes)
and the command-line client cut files into the same parts with them.
"""

from __future__ import annotations

from .errors import ValidationFailed
from .sizes import human_size

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
TIB = 1024 * GIB

# S3's multipart rules: parts of 5 MiB to 5 GiB (the last may be smaller), at most 10,000 of them.
MIN_PART_SIZE = 5 * MIB
MAX_PART_SIZE = 5 * GIB
MAX_PARTS = 10_000
# The part size of new uploads unless the client or S3DRIVE_DEFAULT_PART_SIZE says otherwise.
DEFAULT_PART_SIZE = 16 * MIB
# S3's largest single PUT (and CopyObject source), and its largest object.
MAX_SINGLE_PUT = 5 * GIB
MAX_OBJECT_SIZE = 5 * TIB
# Part URLs signed in one call of the API (native and Companion routes).
MAX_SIGN_BATCH = 1000
# Longest part ETag accepted from a client (S3's are 32 hex digits, quoted).
MAX_ETAG_LENGTH = 128


def part_count(size: int, part_size: int) -> int:
    """Return how many parts a file of `size` bytes has (an empty file has one, empty, part)."""
    return max(1, -(-size // part_size))


def part_length(size: int, part_size: int, number: int) -> int:
    """Return the exact byte length of part `number` (1-based): part_size, or the rest for the last."""
    return max(0, min(part_size, size - (number - 1) * part_size))


def part_range(size: int, part_size: int, number: int) -> tuple[int, int]:
    """Return the (offset, length) of part `number` (1-based) of a file of `size` bytes."""
    return (number - 1) * part_size, part_length(size, part_size, number)


def smallest_part_size(size: int) -> int:
    """Return the smallest part size that cuts `size` bytes into at most 10,000 parts."""
    return -(-size // MAX_PARTS)


def fitting_part_size(size: int, wanted: int) -> int:
    """Return `wanted` (at least 5 MiB), grown in whole MiB when the file would need more than 10,000 parts."""
    needed = smallest_part_size(size)
    return max(MIN_PART_SIZE, wanted, -(-needed // MIB) * MIB)


def choose_part_size(size: int, requested: object, default: int) -> int:
    """Return the part size of a new upload: the requested one if S3 allows it for this size (else
    validation_error), or the default grown to fit 10,000 parts."""
    if requested is None:
        return fitting_part_size(size, default)
    if type(requested) is not int:
        raise ValidationFailed(field="part_size", details={"part_size": ["Not a valid integer."]})
    if not MIN_PART_SIZE <= requested <= MAX_PART_SIZE:
        raise ValidationFailed(
            f"part_size must be between {human_size(MIN_PART_SIZE)} and {human_size(MAX_PART_SIZE)}.",
            details={"part_size": [f"Must be between {MIN_PART_SIZE} and {MAX_PART_SIZE}."]},
        )
    smallest = smallest_part_size(size)
    if requested < smallest:
        raise ValidationFailed(
            f"A file of {human_size(size)} needs parts of at least {human_size(smallest)} "
            f"(at most {MAX_PARTS:,} parts).",
            details={"part_size": [f"Must be at least {smallest} for this file size."]},
        )
    return requested


def max_part_number(size: int, min_part_size: int = MIN_PART_SIZE) -> int:
    """Return the highest part number a file of `size` bytes can have with parts of at least min_part_size."""
    return min(part_count(size, min_part_size), MAX_PARTS)


def copy_part_ranges(size: int, part_size: int) -> list[tuple[int, int, int]]:
    """Return (part number, first byte, last byte) for a copy in parts of at least part_size."""
    part_size = max(part_size, smallest_part_size(size))
    return [
        (number, first, min(first + part_size, size) - 1)
        for number, first in enumerate(range(0, size, part_size), start=1)
    ]
