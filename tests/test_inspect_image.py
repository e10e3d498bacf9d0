"""Image headers, pixel and side limits, bombs, and WebP previews, on images made here with Pillow and zlib."""

from __future__ import annotations

import io
import struct
import time
import zlib

import pytest
from PIL import Image

from s3drive.inspect import inspect_object
from s3drive.inspect.base import HEAD_BYTES, BytesReader, Limits, Rejected
from s3drive.inspect.image import HEADER_BUDGET, inspect_image, thumbnail_image, webp_size

BOMB_SIDE = 20_000


def image_bytes(format_name: str, size=(64, 48), mode="RGB", **options) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, "orange").save(out, format_name, **options)
    return out.getvalue()


def jpeg_with_orientation(orientation: int, size=(64, 48), **options) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return image_bytes("JPEG", size, exif=exif.tobytes(), **options)


def png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def bomb_png(side: int = BOMB_SIDE) -> bytes:
    """Return a valid 1-bit palette PNG of side × side zeros, written row by row through zlib.

    Pillow would hold side² bytes (400 MB) to write it; zlib streams the 50 MB of rows into ~50 KB.
    """
    row = bytes(1 + (side + 7) // 8)  # filter byte 0, then side bits of palette index 0
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 3, 0, 0, 0)
    chunks = png_chunk(b"IHDR", header) + png_chunk(b"PLTE", bytes(6)) + png_chunk(b"IDAT", idat)
    return b"\x89PNG\r\n\x1a\n" + chunks + png_chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return bomb_png()


def test_png_size_from_the_header():
    report = inspect_image(BytesReader(image_bytes("PNG", (640, 480))), Limits())
    assert (report.detected_type, report.kind, report.width, report.height) == ("image/png", "image", 640, 480)


@pytest.mark.parametrize("options", [{"lossless": True}, {"quality": 70}])
def test_webp_size_from_the_header(options):
    data = image_bytes("WEBP", (300, 200), **options)
    assert webp_size(data[:30]) == (300, 200)
    report = inspect_image(BytesReader(data), Limits())
    assert (report.detected_type, report.width, report.height) == ("image/webp", 300, 200)


def test_extended_webp_size_from_the_header():
    data = image_bytes("WEBP", (300, 200), mode="RGBA", exif=Image.Exif().tobytes())
    assert data[12:16] == b"VP8X" and webp_size(data[:30]) == (300, 200)


def test_jpeg_with_exif_orientation_reports_the_displayed_size():
    report = inspect_image(BytesReader(jpeg_with_orientation(6, (64, 48))), Limits())
    assert (report.width, report.height) == (48, 64)  # orientation 6 turns it a quarter: portrait as shown
    assert report.details == {"format": "JPEG", "orientation": 6}
    upright = inspect_image(BytesReader(jpeg_with_orientation(3, (64, 48))), Limits())
    assert (upright.width, upright.height) == (64, 48)


def test_a_jpeg_whose_header_outgrows_the_head_is_read_in_bounded_steps():
    # EXIF and a 200 KB ICC profile (APP2 segments) push the frame header past the first 64 KiB.
    data = jpeg_with_orientation(1, (80, 60), icc_profile=bytes(200_000))
    reader = BytesReader(data + bytes(10_000_000))  # bytes after the image never get read
    report = inspect_image(reader, Limits())
    assert (report.width, report.height) == (80, 60)
    assert HEAD_BYTES < reader.bytes_read <= 5 * HEAD_BYTES


def test_a_header_beyond_the_budget_is_refused_not_read():
    data = image_bytes("JPEG", (8, 8), icc_profile=bytes(HEADER_BUDGET + 100_000))
    reader = BytesReader(data)
    with pytest.raises(Rejected) as caught:
        inspect_image(reader, Limits())
    assert caught.value.code == "corrupt_file" and reader.bytes_read <= HEADER_BUDGET


def test_the_bomb_png_is_small_and_valid(bomb):
    assert len(bomb) < HEAD_BYTES
    idat = bomb[8 + 25 + 18 :]
    length = struct.unpack(">I", idat[:4])[0]
    assert len(zlib.decompress(idat[8 : 8 + length])) == BOMB_SIDE * (1 + BOMB_SIDE // 8)


def test_a_20000_square_png_is_too_large_before_anything_is_decoded(bomb):
    reader = BytesReader(bomb)
    started = time.perf_counter()
    with pytest.raises(Rejected) as caught:
        inspect_object(reader, "image/png", Limits())
    assert caught.value.code == "image_too_large"
    assert time.perf_counter() - started < 0.5  # decoding 400 M pixels would take seconds and 400 MB
    assert reader.bytes_read <= HEAD_BYTES


def test_a_big_image_passes_when_the_limit_allows_it(bomb):
    # Pillow's own guard (2 × 89 M pixels) would refuse it: the operator's limit decides instead.
    report = inspect_image(BytesReader(bomb), Limits(max_image_pixels=500_000_000))
    assert (report.width, report.height) == (BOMB_SIDE, BOMB_SIDE)


def test_profile_sides():
    data = BytesReader(image_bytes("PNG", (50, 5000)))
    with pytest.raises(Rejected) as small:
        inspect_image(data, Limits(min_image_side=100))
    with pytest.raises(Rejected) as large:
        inspect_image(data, Limits(max_image_side=4096))
    assert (small.value.code, large.value.code) == ("image_too_small", "image_too_large")
    assert inspect_image(data, Limits(min_image_side=50, max_image_side=5000)).height == 5000


def test_an_unparseable_png_is_corrupt():
    data = bytearray(image_bytes("PNG"))
    data[24:26] = b"\x07\x09"  # IHDR's bit depth and colour type: no such PNG (libmagic still sees a PNG)
    with pytest.raises(Rejected) as caught:
        inspect_object(BytesReader(bytes(data)), "image/png", Limits())
    assert caught.value.code == "corrupt_file"


def test_a_truncated_jpeg_passes_inspection_and_its_preview_says_corrupt():
    data = jpeg_with_orientation(1, (400, 300), quality=95)[:2000]
    assert inspect_object(BytesReader(data), "image/jpeg", Limits()).width == 400  # the header is whole
    with pytest.raises(Rejected) as caught:
        thumbnail_image(data, 320, 100_000_000)
    assert caught.value.code == "corrupt_file"


def preview(data: bytes, size: int = 320) -> Image.Image:
    thumbnail = thumbnail_image(data, size, 100_000_000)
    return Image.open(io.BytesIO(thumbnail))


def test_thumbnail_is_a_webp_within_the_size_with_orientation_applied():
    shown = preview(jpeg_with_orientation(6, (1600, 1200)))
    assert shown.format == "WEBP" and shown.size == (240, 320)


@pytest.mark.parametrize(("format_name", "mode"), [("PNG", "RGBA"), ("PNG", "P"), ("GIF", "P"), ("WEBP", "RGB")])
def test_thumbnails_of_other_formats(format_name, mode):
    shown = preview(image_bytes(format_name, (1000, 250), mode=mode), 200)
    assert shown.format == "WEBP" and shown.size == (200, 50)


def test_thumbnail_refuses_more_pixels_than_its_bound(bomb):
    with pytest.raises(Rejected) as caught:
        thumbnail_image(bomb, 320, 100_000_000)
    assert caught.value.code == "image_too_large"
