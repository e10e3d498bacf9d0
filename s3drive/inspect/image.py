"""Images: size from the header with Pillow, no pixel decoded; WebP previews with EXIF orientation applied.

inspect_image reads through a buffered file over ranged reads, so Pillow pulls only the bytes its header
parser asks for (the head for PNG, GIF, BMP and most JPEGs; a few more for a JPEG with a big EXIF block or
a TIFF whose directory sits at the end), never more than HEADER_BUDGET.
"""

from __future__ import annotations

import io
import struct

from PIL import Image, ImageOps

from .base import HEAD_BYTES, Limits, Reader, Rejected, Report

# Pillow plugins inspection lets open: the common raster formats. Naming them keeps the others out (EPS
# would run Ghostscript) and keeps Image.open from guessing through every plugin.
FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "ICO")
# The most an image header may cost: JPEG APP segments are at most 64 KiB each, and a few of them
# (EXIF, ICC, XMP) precede the frame header. A header beyond this is refused rather than read on.
HEADER_BUDGET = 4 * 1024 * 1024
# EXIF orientations that rotate by 90 degrees: the displayed width is the stored height.
_QUARTER_TURNS = {5, 6, 7, 8}
_ORIENTATION_TAG = 0x0112
_PARSE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)

# Pillow's own bomb guard (Image.MAX_IMAGE_PIXELS) refuses by a fixed number of its own; this module
# checks every image against the operator's limit before anything is decoded, and Pillow's guard would
# otherwise refuse images a profile allows. DecompressionBombError is still caught below, as a net.
Image.MAX_IMAGE_PIXELS = None


class HeaderTooLarge(Exception):
    """The header asked for more than HEADER_BUDGET bytes."""


class _RangeFile(io.RawIOBase):
    """A read-only file over a Reader: each read is a ranged read, their total bounded by a budget."""

    def __init__(self, reader: Reader, budget: int):
        self._reader, self._budget, self._pos = reader, budget, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._reader.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer) -> int:
        length = max(0, min(len(buffer), self._reader.size - self._pos))
        if length > self._budget:
            raise HeaderTooLarge(f"the image header needs more than {HEADER_BUDGET} bytes")
        chunk = self._reader.read(self._pos, length)
        self._budget -= len(chunk)
        buffer[: len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)


def webp_size(head: bytes) -> tuple[int, int] | None:
    """Return (width, height) from a WebP header, or None if the head is not one."""
    # Pillow reads a whole WebP and allocates its canvas to open it, so its size is read here first.
    if len(head) < 30 or head[:4] != b"RIFF" or head[8:12] != b"WEBP":
        return None
    chunk = head[12:16]
    if chunk == b"VP8X":  # extended: 24-bit canvas width-1, height-1
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    if chunk == b"VP8L" and head[20] == 0x2F:  # lossless: 14-bit width-1, height-1
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":  # lossy key frame: 14-bit width, height
        width, height = struct.unpack_from("<HH", head, 26)
        return width & 0x3FFF, height & 0x3FFF
    raise Rejected("corrupt_file", "The WebP header cannot be parsed.")


def check_size(width: int, height: int, limits: Limits) -> None:
    """Reject an image whose pixels or sides are outside the limits."""
    if width <= 0 or height <= 0:
        raise Rejected("corrupt_file", "The image has no pixels.")
    if width * height > limits.max_image_pixels:
        raise Rejected(
            "image_too_large",
            f"The image is {width} × {height} pixels; at most {limits.max_image_pixels} pixels are accepted.",
        )
    if limits.max_image_side is not None and max(width, height) > limits.max_image_side:
        raise Rejected("image_too_large", f"The image is {width} × {height}; at most {limits.max_image_side} a side.")
    if limits.min_image_side is not None and min(width, height) < limits.min_image_side:
        raise Rejected("image_too_small", f"The image is {width} × {height}; at least {limits.min_image_side} a side.")


def _open(fp) -> Image.Image:
    try:
        return Image.open(fp, formats=FORMATS)
    except Image.DecompressionBombError as error:
        raise Rejected("image_too_large", "The image has too many pixels.") from error
    except HeaderTooLarge as error:
        raise Rejected("corrupt_file", f"The image cannot be parsed: {error}.") from error
    except _PARSE_ERRORS as error:
        raise Rejected("corrupt_file", "The image cannot be parsed.") from error


def _orientation(image: Image.Image) -> int:
    # Only EXIF that the header already carries: Image.getexif() would decode a PNG to find a late eXIf.
    raw = image.info.get("exif")
    if not raw:
        return 1
    try:
        exif = Image.Exif()
        exif.load(raw)
        value = int(exif.get(_ORIENTATION_TAG, 1))
    except _PARSE_ERRORS:
        return 1  # broken EXIF is bad metadata, not a bad image
    return value if 1 <= value <= 8 else 1


def _report(format_name: str, size: tuple[int, int], orientation: int) -> Report:
    # width and height are as displayed: EXIF orientations 5-8 turn the stored image by a quarter.
    width, height = size[::-1] if orientation in _QUARTER_TURNS else size
    return Report(
        detected_type=Image.MIME.get(format_name, f"image/{format_name.lower()}"),
        kind="image",
        width=width,
        height=height,
        details={"format": format_name, "orientation": orientation},
    )


def inspect_image(reader: Reader, limits: Limits) -> Report:
    """Read an image's size from its header and check it against the limits, decoding no pixel."""
    fp = io.BufferedReader(_RangeFile(reader, HEADER_BUDGET), buffer_size=HEAD_BYTES)
    webp = webp_size(fp.peek(30)[:30])
    if webp is not None:
        check_size(*webp, limits)
        if reader.size > HEADER_BUDGET:
            # Pillow would read the whole file to open it; the header has said what inspection needs.
            return _report("WEBP", webp, 1)
    with _open(fp) as image:
        size, format_name, orientation = image.size, image.format or "", _orientation(image)
    check_size(*size, limits)
    return _report(format_name, size, orientation)


def thumbnail_image(data: bytes, size: int, max_pixels: int) -> bytes:
    """Return a WebP preview at most `size` pixels on the long side, EXIF orientation applied."""
    webp = webp_size(data[:30])
    if webp is not None and webp[0] * webp[1] > max_pixels:
        raise Rejected("image_too_large", f"The image has more than {max_pixels} pixels.")
    with _open(io.BytesIO(data)) as image:
        if image.width * image.height > max_pixels:
            raise Rejected("image_too_large", f"The image has more than {max_pixels} pixels.")
        # JPEG only (a no-op elsewhere): decode at 1/2, 1/4 or 1/8 scale, still at least `size`.
        image.draft("RGB", (size, size))
        try:
            preview = ImageOps.exif_transpose(image)
            preview.thumbnail((size, size))
            return _encode_webp(preview)
        except _PARSE_ERRORS as error:  # a header that parses over data that does not: truncated, damaged
            raise Rejected("corrupt_file", "The image data cannot be decoded.") from error


def _encode_webp(image: Image.Image) -> bytes:
    if image.mode not in ("RGB", "RGBA"):
        transparent = "A" in image.getbands() or "transparency" in image.info
        image = image.convert("RGBA" if transparent else "RGB")
    out = io.BytesIO()
    image.save(out, "WEBP", quality=80, method=4)
    return out.getvalue()
