"""What every content check shares: ranged reads, the limits, the report, and rejection reasons.

Pure Python: no Flask, no boto3. A worker hands a check a Reader over the object in S3 (ranged
GETs); tests hand it a BytesReader over bytes made in the test. Checks read as little as they can:
the head for magic bytes and image headers, the tail for a ZIP's central directory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

GIB = 1024**3
# Bytes of the head that sniffing and image headers read in one ranged GET.
HEAD_BYTES = 64 * 1024

# Reason codes (API.md, Content inspection): the only codes a check may reject with.
REASONS = frozenset(
    {
        "content_mismatch",
        "executable_content",
        "image_too_large",
        "media_too_long",
        "archive_bomb",
        "unsafe_archive",
        "active_content",
        "image_too_small",
        "media_too_short",
        "corrupt_file",
    }
)


class Reader(Protocol):
    """Random access to an object's bytes."""

    size: int

    def read(self, start: int, length: int) -> bytes:
        """Return up to `length` bytes from `start` (fewer at the end of the object)."""
        ...


@dataclass
class BytesReader:
    """A Reader over bytes in memory that counts what was read (tests, small objects)."""

    data: bytes
    bytes_read: int = 0
    reads: int = 0

    @property
    def size(self) -> int:
        return len(self.data)

    def read(self, start: int, length: int) -> bytes:
        chunk = self.data[max(start, 0) : max(start, 0) + max(length, 0)]
        self.bytes_read += len(chunk)
        self.reads += 1
        return chunk


@dataclass(frozen=True)
class Limits:
    """What inspection accepts (S3DRIVE_* settings; an upload profile may narrow them)."""

    max_image_pixels: int = 100_000_000
    max_media_seconds: int = 21600
    archive_max_ratio: int = 100
    archive_max_entries: int = 10_000
    archive_max_uncompressed: int = 10 * GIB
    reject_active_pdf: bool = True
    refuse_encrypted_archives: bool = True
    # Declared types the policy allows: a script is accepted only when its own type is among them.
    allowed_content_types: tuple[str, ...] = ()
    thumbnail_size: int = 320
    # Profiles (Upload profiles in API.md); None: no bound.
    min_image_side: int | None = None
    max_image_side: int | None = None
    min_media_seconds: float | None = None


class Rejected(Exception):
    """The content breaks policy: a reason code of REASONS and a sentence for the user."""

    def __init__(self, code: str, message: str):
        if code not in REASONS:
            raise ValueError(f"unknown inspection reason {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Report:
    """What inspection found (File.inspection in API.md); fields that do not apply stay None."""

    detected_type: str | None = None
    kind: str | None = None  # image, video, audio, pdf, archive, text, other
    width: int | None = None
    height: int | None = None
    duration_seconds: float | None = None
    pages: int | None = None
    entry_count: int | None = None
    details: dict = field(default_factory=dict)
