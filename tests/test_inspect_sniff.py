"""Sniffing, the family table, executables and scripts, and the orchestrator, on bytes made here."""

from __future__ import annotations

import io
import struct
import threading
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from s3drive.inspect import inspect_object, kind_of
from s3drive.inspect.base import HEAD_BYTES, BytesReader, Limits, Rejected
from s3drive.inspect.sniff import check_executable, compatible, native_executable, sniff

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
PDF = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"
SCRIPT = b"#!/bin/sh\necho hello\n"


def png_bytes(size=(32, 24)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, "teal").save(out, "PNG")
    return out.getvalue()


def pe_stub() -> bytes:
    """Return a DOS header whose e_lfanew points at a PE signature: what Windows loads."""
    stub = bytearray(512)
    stub[:2] = b"MZ"
    struct.pack_into("<I", stub, 0x3C, 0x80)
    stub[0x80:0x84] = b"PE\0\0"
    return bytes(stub)


def docx_bytes() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(
            "[Content_Types].xml",
            '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument'
            '.wordprocessingml.document.main+xml"/></Types>',
        )
        archive.writestr("_rels/.rels", "<Relationships/>")
        archive.writestr("word/document.xml", "<w:document/>")
    return out.getvalue()


def inspect(data: bytes, declared: str, **limits) -> object:
    return inspect_object(BytesReader(data), declared, Limits(**limits))


def rejected(data: bytes, declared: str, **limits) -> str:
    with pytest.raises(Rejected) as caught:
        inspect(data, declared, **limits)
    return caught.value.code


def test_sniff_names_what_libmagic_sees():
    assert sniff(png_bytes()) == "image/png"
    assert sniff(PDF) == "application/pdf"
    assert sniff(b"a,b,c\n1,2,3\n4,5,6\n") == "text/csv"
    assert sniff(bytes(1000)) == "application/octet-stream"


def test_one_magic_handle_per_thread_gives_the_same_answers():
    results = []
    threads = [threading.Thread(target=lambda: results.append(sniff(png_bytes()))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["image/png"] * 8


@pytest.mark.parametrize(
    ("declared", "detected"),
    [
        ("text/plain", "text/csv"),
        ("text/csv", "text/plain"),
        ("text/markdown", "text/plain"),
        ("text/plain; charset=utf-8", "text/plain"),
        ("image/jpg", "image/jpeg"),
        ("IMAGE/JPEG", "image/jpeg"),
        ("image/png", "image/jpeg"),  # a mislabelled photo is still a raster image
        (DOCX, "application/zip"),
        (DOCX, DOCX),
        ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", DOCX),
        ("application/vnd.oasis.opendocument.text", "application/zip"),
        ("application/epub+zip", "application/zip"),
        ("application/java-archive", "application/zip"),
        ("application/vnd.ms-excel.sheet.macroenabled.12", "application/zip"),
        ("application/octet-stream", "application/pdf"),
        ("video/x-matroska", "application/octet-stream"),
        ("audio/mp4", "video/mp4"),
        ("application/x-some-custom-format", "application/octet-stream"),
        ("application/json", "text/plain"),
        ("application/javascript", "text/plain"),
    ],
)
def test_compatible_families(declared, detected):
    assert compatible(declared, detected)


@pytest.mark.parametrize(
    ("declared", "detected"),
    [
        ("image/png", "application/pdf"),
        ("image/png", "application/octet-stream"),  # libmagic knows images: unrecognised is no image
        ("image/png", "image/svg+xml"),
        ("application/pdf", "application/octet-stream"),
        ("application/pdf", "application/zip"),
        (DOCX, "application/pdf"),
        ("text/plain", "application/octet-stream"),
        ("video/mp4", "application/pdf"),
        ("application/octet-stream", "application/x-dosexec"),
        ("application/x-some-custom-format", "application/pdf"),
    ],
)
def test_incompatible_families(declared, detected):
    assert not compatible(declared, detected)


def test_native_executables_are_recognised_by_their_magic_numbers():
    assert native_executable(Path("/bin/true").read_bytes()[:HEAD_BYTES]) == "ELF"
    assert native_executable(pe_stub()) == "PE"
    assert native_executable(struct.pack("<I", 0xFEEDFACF) + bytes(60)) == "Mach-O"
    assert native_executable(struct.pack(">II", 0xCAFEBABE, 2) + bytes(60)) == "Mach-O universal"
    # A Java class file shares 0xCAFEBABE; its second word is the class version (major 52 = Java 8).
    assert native_executable(struct.pack(">IHH", 0xCAFEBABE, 0, 52) + bytes(60)) is None
    # MZ without a PE signature where e_lfanew points is not taken for one (text may start with "MZ").
    assert native_executable(b"MZ" + bytes(200)) is None


def test_an_elf_named_photo_jpg_is_executable_content():
    assert rejected(Path("/bin/true").read_bytes(), "image/jpeg") == "executable_content"


def test_a_pe_stub_declared_pdf_is_executable_content():
    assert rejected(pe_stub(), "application/pdf") == "executable_content"


def test_executables_are_refused_even_when_their_type_is_allowed():
    code = rejected(pe_stub(), "application/octet-stream", allowed_content_types=("*/*",))
    assert code == "executable_content"


def test_a_script_declared_text_plain_is_executable_content():
    assert rejected(SCRIPT, "text/plain", allowed_content_types=("text/*",)) == "executable_content"


def test_a_script_declared_as_an_allowed_script_type_passes():
    report = inspect(SCRIPT, "text/x-shellscript", allowed_content_types=("text/x-shellscript",))
    assert report.detected_type == "text/x-shellscript" and report.kind == "text"


def test_a_declared_script_type_that_is_not_allowed_is_refused():
    with pytest.raises(Rejected) as caught:
        check_executable(b"Set shell = CreateObject(1)\n", "text/plain", "text/vbscript", ("text/plain",))
    assert caught.value.code == "executable_content"
    check_executable(b"Set shell = CreateObject(1)\n", "text/plain", "text/vbscript", ("text/*",))


def test_a_pdf_declared_image_png_is_content_mismatch():
    assert rejected(PDF, "image/png") == "content_mismatch"


def test_csv_detected_as_plain_text_passes():
    report = inspect(b"name,count\nalpha,1\nbeta,2\n", "text/csv")
    assert report.kind == "text" and report.detected_type.startswith("text/")


def test_a_docx_passes_as_a_zip_container():
    report = inspect(docx_bytes(), DOCX)
    assert report.detected_type == DOCX and report.kind == "archive" and report.entry_count == 3


def test_an_image_is_inspected_after_sniffing_reading_the_head_once():
    reader = BytesReader(png_bytes((40, 30)))
    report = inspect_object(reader, "image/png", Limits())
    assert (report.kind, report.width, report.height) == ("image", 40, 30)
    assert reader.reads == 1


def test_media_without_a_url_is_recorded_by_type_only():
    report = inspect(b"\x1a\x45\xdf\xa3" + bytes(100), "video/x-matroska")
    assert report.kind == "video" and report.duration_seconds is None


def test_kind_follows_the_declared_type_when_libmagic_cannot_tell():
    assert kind_of("application/octet-stream", "audio/x-custom") == "audio"
    assert kind_of("application/pdf", "application/octet-stream") == "pdf"
    assert kind_of("application/zip", DOCX) == "archive"
