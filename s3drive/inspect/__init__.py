"""Pure content checks on bytes (sniff, image, media, archive, pdf) and previews; see base.py.

inspect_object is the one entry point a worker calls: it reads the head once, refuses programs and
mismatched types, then hands the object to the check for its kind.
"""

from __future__ import annotations

from dataclasses import dataclass

from .archive import inspect_zip
from .base import Limits, Reader, Rejected, Report
from .image import inspect_image
from .sniff import UNRECOGNISED, canonical, check_executable, compatible, is_zip, sniff

# The head libmagic sniffs: its tests look at the first few KiB (OOXML's search for its parts ends
# near 6 KiB). Less than base.HEAD_BYTES, so that sniffing plus a ZIP's tail stays within 64 KiB; an image
# check reads on from here, the cached head costing nothing twice.
SNIFF_BYTES = 32 * 1024
# Detected types inspect_image opens (Pillow's plugins in image.FORMATS); other images (HEIC, AVIF, SVG)
# are recorded by type only.
INSPECTED_IMAGES = frozenset(
    {"image/jpeg", "image/png", "image/gif", "image/webp", "image/bmp", "image/tiff", "image/x-icon"}
)


@dataclass
class _HeadCachedReader:
    """A Reader that serves reads inside the head from memory, so the checks after sniffing read it free."""

    reader: Reader
    head: bytes

    @property
    def size(self) -> int:
        return self.reader.size

    def read(self, start: int, length: int) -> bytes:
        cached = self.head[start : start + length] if start < len(self.head) else b""
        rest = length - len(cached)
        if rest <= 0 or len(self.head) == self.reader.size:  # asked within the head, or past a whole object
            return cached
        return cached + self.reader.read(start + len(cached), rest)


def kind_of(detected: str, declared: str) -> str:
    """Return the kind of an object (image, video, audio, pdf, archive, text, other)."""
    # When libmagic cannot tell, the declared type (already found compatible) names the kind.
    content_type = canonical(declared) if detected in UNRECOGNISED else detected
    major = content_type.split("/", 1)[0]
    if major in ("image", "video", "audio", "text"):
        return major
    if content_type == "application/pdf":
        return "pdf"
    if is_zip(content_type):
        return "archive"
    return "other"


def inspect_object(reader: Reader, declared_type: str, limits: Limits, media_url: str | None = None) -> Report:
    """Inspect an object against its declared type and the limits; raise Rejected, or return what it is."""
    head = reader.read(0, SNIFF_BYTES)
    detected = sniff(head)
    check_executable(head, detected, declared_type, limits.allowed_content_types)
    if not compatible(declared_type, detected):
        raise Rejected(
            "content_mismatch", f"The file was declared {canonical(declared_type)} but its content is {detected}."
        )
    report = _inspect_kind(
        _HeadCachedReader(reader, head), detected, kind_of(detected, declared_type), limits, media_url
    )
    report.detected_type = detected  # libmagic's name is the one recorded, whatever the check reported
    return report


def _inspect_kind(reader: Reader, detected: str, kind: str, limits: Limits, media_url: str | None) -> Report:
    if detected in INSPECTED_IMAGES:
        return inspect_image(reader, limits)
    if kind == "archive":
        return inspect_zip(reader, limits)
    # PDF and media checks load pypdf/pypdfium2 and PyAV: imported where needed, so a worker that never
    # meets a PDF or a video does not pay for them.
    if kind == "pdf":
        from .pdf import inspect_pdf

        return inspect_pdf(reader, limits)
    if kind in ("audio", "video") and media_url is not None:
        from .media import inspect_media

        return inspect_media(media_url, limits)
    return Report(detected_type=detected, kind=kind)
