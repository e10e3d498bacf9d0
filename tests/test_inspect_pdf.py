"""PDF checks and previews on real PDFs made here with pypdf; ranged reads counted by BytesReader."""

from __future__ import annotations

import io
import os

import pytest
from PIL import Image
from pypdf import PdfWriter
from pypdf.actions import JavaScript
from pypdf.generic import ArrayObject, DictionaryObject, NameObject, TextStringObject

from s3drive.inspect.base import BytesReader, Limits, Rejected
from s3drive.inspect.pdf import WHOLE_READ_MAX, inspect_pdf, thumbnail_pdf
from s3drive.inspect.rangefile import RangeFile, open_range_file

JAVASCRIPT_ACTION = {NameObject("/S"): NameObject("/JavaScript"), NameObject("/JS"): TextStringObject("app.alert(1)")}
LAUNCH_ACTION = {NameObject("/S"): NameObject("/Launch"), NameObject("/F"): TextStringObject("calc.exe")}


def make_pdf(pages=3, open_action=None, encrypt=None, attachment=None, configure=None) -> bytes:
    """Return the bytes of a PDF of blank US-letter pages, with the given extras."""
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(612, 792)
    if open_action is not None:
        writer.root_object[NameObject("/OpenAction")] = writer._add_object(DictionaryObject(open_action))
    if attachment is not None:
        writer.add_attachment("data.bin", attachment)
    if configure is not None:
        configure(writer)
    if encrypt is not None:
        writer.encrypt(encrypt, algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def rejection(data: bytes, **limits) -> Rejected:
    with pytest.raises(Rejected) as caught:
        inspect_pdf(BytesReader(data), Limits(**limits))
    return caught.value


def test_a_plain_pdf_passes_with_its_page_count():
    report = inspect_pdf(BytesReader(make_pdf()), Limits())
    assert (report.detected_type, report.kind, report.pages) == ("application/pdf", "pdf", 3)
    assert report.details["encrypted"] is False and "active_content" not in report.details


def test_the_thumbnail_is_a_webp_of_the_first_page_within_the_size():
    preview = thumbnail_pdf(make_pdf(), 160)
    image = Image.open(io.BytesIO(preview))
    assert image.format == "WEBP"
    # A US-letter page is portrait: the height is the long side.
    assert image.height == 160 and image.width < 160


def test_javascript_in_open_action_is_active_content():
    reason = rejection(make_pdf(open_action=JAVASCRIPT_ACTION))
    assert reason.code == "active_content" and "javascript in /OpenAction" in reason.message


def test_active_content_passes_when_the_policy_allows_it_and_is_noted():
    report = inspect_pdf(BytesReader(make_pdf(open_action=JAVASCRIPT_ACTION)), Limits(reject_active_pdf=False))
    assert report.pages == 3
    assert report.details["active_content"] == ["javascript in /OpenAction"]


def test_a_launch_action_is_active_content():
    reason = rejection(make_pdf(open_action=LAUNCH_ACTION))
    assert reason.code == "active_content" and "launch" in reason.message


def test_document_javascript_in_the_names_tree_is_active_content():
    reason = rejection(make_pdf(configure=lambda writer: writer.add_open_action(JavaScript("app.alert(1)"))))
    assert reason.code == "active_content" and "javascript in /Names" in reason.message


def test_javascript_chained_after_a_link_annotation_is_active_content():
    def add_link(writer):
        chained = DictionaryObject({NameObject("/S"): NameObject("/URI"), NameObject("/Next"): ArrayObject()})
        chained["/Next"].append(DictionaryObject(JAVASCRIPT_ACTION))
        link = DictionaryObject({NameObject("/Subtype"): NameObject("/Link"), NameObject("/A"): chained})
        writer.pages[1][NameObject("/Annots")] = ArrayObject([writer._add_object(link)])

    reason = rejection(make_pdf(configure=add_link))
    assert reason.code == "active_content" and "javascript in page 2 annotation" in reason.message


def test_a_password_protected_pdf_is_inspected_structurally_and_gets_no_preview():
    plain = make_pdf(encrypt="pw")
    report = inspect_pdf(BytesReader(plain), Limits())
    assert report.details["encrypted"] is True and report.details["decrypted"] is False
    assert report.pages == 3
    assert thumbnail_pdf(plain, 160) is None
    # Action types are names, which encryption leaves readable: JavaScript is still found.
    assert rejection(make_pdf(open_action=JAVASCRIPT_ACTION, encrypt="pw")).code == "active_content"


def test_a_pdf_with_an_empty_user_password_is_inspected_in_full():
    report = inspect_pdf(BytesReader(make_pdf(encrypt="")), Limits())
    assert report.details["encrypted"] is True and "decrypted" not in report.details
    assert report.pages == 3


@pytest.mark.parametrize(
    "data",
    [b"%PDF-1.7\n" + os.urandom(5000), b"", b"not a pdf at all", make_pdf()[:300]],
    ids=["random", "empty", "text", "truncated"],
)
def test_garbage_declared_pdf_is_corrupt(data):
    assert rejection(data).code == "corrupt_file"


def test_a_large_pdf_costs_its_structure_not_its_size():
    data = make_pdf(pages=200, attachment=os.urandom(6 * 1024 * 1024))
    assert len(data) > WHOLE_READ_MAX
    reader = BytesReader(data)
    report = inspect_pdf(reader, Limits())
    assert report.pages == 200
    # Measured: 3 blocks, ~150 KiB of 6.3 MB (the trailer, the xref and the page objects).
    assert reader.bytes_read == report.details["bytes_read"]
    assert reader.bytes_read < 0.05 * len(data)
    preview = BytesReader(data)
    assert Image.open(io.BytesIO(thumbnail_pdf(preview, 64))).format == "WEBP"
    assert preview.bytes_read < 0.05 * len(data)


class FailingReader(BytesReader):
    """A Reader whose storage fails past the first block (S3 down mid-inspection)."""

    def read(self, start, length):
        if start > 0:
            raise ConnectionError("S3 went away")
        return super().read(start, length)


# pdfium reports the failed read through its ctypes callback, which Python can only print.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_failing_reader_is_not_a_corrupt_file():
    data = make_pdf(attachment=os.urandom(WHOLE_READ_MAX + 1))
    with pytest.raises(ConnectionError):
        inspect_pdf(FailingReader(data), Limits())
    with pytest.raises(ConnectionError):
        thumbnail_pdf(FailingReader(data), 64)


def test_range_file_reads_whole_blocks_once_and_seeks_anywhere():
    reader = BytesReader(bytes(range(256)) * 1024)
    raw = RangeFile(reader, block_size=4096)
    raw.seek(-10, io.SEEK_END)
    assert raw.read(100) == (bytes(range(256)) * 1024)[-10:]
    raw.seek(4090)
    assert raw.read(12) == (bytes(range(256)) * 1024)[4090:4102]
    raw.seek(4095)
    raw.read(2)
    assert (raw.blocks_read, reader.bytes_read) == (3, 3 * 4096)
    buffered = open_range_file(reader, block_size=4096)
    assert buffered.read(5) == bytes(range(5)) and buffered.seekable()
