"""Real files for the inspection tests, made in the tests (no binary fixtures in the repository).

One place for the uploads the end-to-end inspection tests send: name, declared type, bytes, and
what inspection must decide. The builders come from the unit tests of each check.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

from test_inspect_image import bomb_png, image_bytes, jpeg_with_orientation
from test_inspect_media import write_video
from test_inspect_pdf import JAVASCRIPT_ACTION, make_pdf
from test_inspect_sniff import pe_stub


@dataclass(frozen=True)
class Sample:
    """An upload and the inspection outcome it must get: a reason code, or None for passed."""

    name: str
    content_type: str
    data: bytes
    reason: str | None = None
    kind: str | None = None  # for those that pass: the preview it must get (image, video, pdf) or None
    width: int | None = None
    height: int | None = None
    pages: int | None = None
    entry_count: int | None = None


MIB = 1024**2


def zip_bytes(entries: dict[str, bytes], compression=zipfile.ZIP_DEFLATED, comment: bytes = b"") -> bytes:
    """Return a zip of these entries."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        archive.comment = comment
    return out.getvalue()


def zeros_zip() -> bytes:
    """Return a zip of one 200 MiB entry of zeros, written 1 MiB at a time (about 200 KB)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive, archive.open("zeros.bin", "w") as entry:
        chunk = bytes(MIB)
        for _ in range(200):
            entry.write(chunk)
    return out.getvalue()


def zip_slip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("../../etc/cron.d/evil", b"* * * * * root sh\n")
    return out.getvalue()


def samples(tmp_path: Path) -> list[Sample]:
    """Return one upload of each kind the issue names, with its expected outcome."""
    jpeg = jpeg_with_orientation(6, size=(64, 48))  # stored landscape, shown portrait
    mp4 = Path(write_video(tmp_path / "clip.mp4", seconds=3)).read_bytes()
    return [
        Sample("rotated.jpg", "image/jpeg", jpeg, kind="image", width=48, height=64),
        Sample("plain.png", "image/png", image_bytes("PNG", size=(40, 30)), kind="image", width=40, height=30),
        Sample("small.webp", "image/webp", image_bytes("WEBP", size=(50, 20)), kind="image", width=50, height=20),
        Sample("three-pages.pdf", "application/pdf", make_pdf(pages=3), kind="pdf", pages=3),
        Sample("clip.mp4", "video/mp4", mp4, kind="video"),
        Sample("docs.zip", "application/zip", zip_bytes({"a.txt": b"a", "b/c.txt": b"c" * 100}), entry_count=2),
        Sample("notes.txt", "text/plain", b"just words\n" * 20),
        Sample("bomb.png", "image/png", bomb_png(), reason="image_too_large"),
        Sample("photo.jpg", "image/jpeg", Path("/bin/true").read_bytes(), reason="executable_content"),
        Sample("report.pdf", "application/pdf", pe_stub(), reason="executable_content"),
        Sample("image.png", "image/png", make_pdf(pages=1), reason="content_mismatch"),
        Sample("zeros.zip", "application/zip", zeros_zip(), reason="archive_bomb"),
        Sample("slip.zip", "application/zip", zip_slip(), reason="unsafe_archive"),
        Sample(
            "active.pdf", "application/pdf", make_pdf(pages=1, open_action=JAVASCRIPT_ACTION), reason="active_content"
        ),
        Sample("truncated.jpg", "image/jpeg", jpeg[: len(jpeg) // 2], reason="corrupt_file"),
    ]
