"""PDF checks: pages, encryption, active content (JavaScript, launch actions), and a first-page preview.

pypdf parses the structure on ranged reads (RangeFile): the trailer, the xref and the objects the
checks touch — the catalog, the page tree, annotations — never the page contents or embedded files.

Encrypted PDFs: pypdf opens those with an empty user password (owner-password-only files) as
usual. Files that need a password are looked at structurally: in an encrypted PDF only strings
and streams are encrypted, so the page count and action types (/S /JavaScript, /Launch) stay
readable. When even that fails (objects packed in encrypted object streams), pages is None and
details["active_content_scan"] is "unknown": the file passes, since no viewer runs anything in
it before the reader types the password. Such files get no preview.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager

import pypdfium2 as pdfium
from pypdf import PdfReader
from pypdf.generic import ArrayObject, DictionaryObject

from .base import Limits, Reader, Rejected, Report
from .preview import webp_thumbnail
from .rangefile import open_range_file, reader_error

# Objects up to this size are read in one go: a few ranged GETs would cost more round trips.
WHOLE_READ_MAX = 4 * 1024 * 1024
# A structure that needs more than this (a broken xref makes pypdf scan the whole file) is
# treated as unparseable rather than read to the end.
MAX_STRUCTURE_BYTES = 64 * 1024 * 1024
# Pages whose actions and annotations are scanned; the count itself is always exact.
MAX_PAGES_SCANNED = 2000
# Action chains (/Next) deeper than this are malformed or hostile.
MAX_ACTION_DEPTH = 32
ACTIVE_ACTIONS = {"/JavaScript": "javascript", "/Launch": "launch"}


def inspect_pdf(reader: Reader, limits: Limits) -> Report:
    """Return pages, encryption and active content of a PDF; reject active or unparseable ones."""
    stream = _open_stream(reader)
    with _parsing(stream):
        pdf = PdfReader(stream)
        details: dict = {"encrypted": bool(pdf.is_encrypted)}
        if pdf.is_encrypted and not _decrypted(pdf):
            details["decrypted"] = False
            pages, findings = _structure_only(pdf)
        else:
            pages, findings = len(pdf.pages), _active_content(pdf)
    if findings is None:
        details["active_content_scan"] = "unknown"
    elif pages is not None and pages > MAX_PAGES_SCANNED:
        details["active_content_scan"] = f"first {MAX_PAGES_SCANNED} pages"
    elif findings:
        details["active_content"] = findings
    details["bytes_read"] = _bytes_read(stream, reader)
    if findings and limits.reject_active_pdf:
        raise Rejected("active_content", f"The PDF contains active content ({', '.join(findings)}).")
    return Report(detected_type="application/pdf", kind="pdf", pages=pages, details=details)


def _open_stream(reader: Reader) -> io.IOBase:
    """Return a seekable file over the PDF: the bytes when small, ranged blocks when large."""
    if reader.size <= WHOLE_READ_MAX:
        return io.BytesIO(reader.read(0, reader.size))
    return open_range_file(reader, max_bytes=MAX_STRUCTURE_BYTES)


def _bytes_read(stream: io.IOBase, reader: Reader) -> int:
    """Return how many bytes of the object the check fetched."""
    if isinstance(stream, io.BufferedReader):
        return stream.raw.bytes_fetched
    return reader.size


@contextmanager
def _parsing(stream: io.IOBase) -> Iterator[None]:
    """Turn a parse failure into corrupt_file, and a failure of the Reader into itself."""
    try:
        yield
    # Hostile bytes make pypdf fail in many ways (PdfReadError, ValueError, KeyError, recursion,
    # the read budget...): any failure to parse is the file's fault, unless the Reader failed.
    except Exception as error:
        if reader_error(stream) is not None:
            raise reader_error(stream) from error
        raise Rejected("corrupt_file", "The PDF cannot be parsed.") from error
    # pypdf recovers from some read errors by itself; a result built on a failed read is no result.
    if reader_error(stream) is not None:
        raise reader_error(stream)


def _decrypted(pdf: PdfReader) -> bool:
    """Tell whether pypdf could open an encrypted PDF without a password (it tries the empty one)."""
    try:
        pdf.trailer["/Root"]
    except Exception:
        return False
    return True


def _scan(pdf: PdfReader) -> tuple[int, list[str]]:
    """Return the page count and the active content found, or reject the PDF as corrupt."""
    try:
        return len(pdf.pages), _active_content(pdf)
    except Exception as error:
        raise Rejected("corrupt_file", "The PDF structure is broken.") from error


def _structure_only(pdf: PdfReader) -> tuple[int | None, list[str] | None]:
    """Return pages and active content of a password-protected PDF, or None where unreadable."""
    # pypdf refuses every object until decrypted; its own escape hatch (used to read /Encrypt)
    # reads them undecrypted, which is enough for names, numbers and dictionaries. It is private:
    # requirements.txt pins pypdf, and the encrypted-PDF test notices if it goes away.
    pdf._override_encryption = True
    try:
        pages = _page_count(pdf)
        try:
            findings = _active_content(pdf)
        except Exception:
            findings = None
        return pages, findings
    finally:
        pdf._override_encryption = False


def _page_count(pdf: PdfReader) -> int | None:
    """Return the page count of the page tree's root, or None when unreadable."""
    try:
        count = pdf.trailer["/Root"]["/Pages"]["/Count"]
    except Exception:
        return None
    return int(count) if isinstance(count, int) else None


def _active_content(pdf: PdfReader) -> list[str]:
    """Return where the PDF carries JavaScript or launch actions, e.g. "javascript in /OpenAction"."""
    catalog = pdf.trailer["/Root"].get_object()
    findings = []
    names = _dictionary(catalog.get("/Names"))
    if names is not None and "/JavaScript" in names:
        findings.append("javascript in /Names")
    open_action = catalog.get("/OpenAction")
    findings += [f"{kind} in /OpenAction" for kind in _action_kinds(open_action)]
    findings += [f"{kind} in /AA" for kind in _additional_action_kinds(catalog.get("/AA"))]
    for number, page in _pages(pdf):
        findings += [f"{kind} in page {number} /AA" for kind in _additional_action_kinds(page.get("/AA"))]
        for annotation in _array(page.get("/Annots")):
            annotation = _dictionary(annotation)
            if annotation is None:
                continue
            kinds = _action_kinds(annotation.get("/A")) + _additional_action_kinds(annotation.get("/AA"))
            findings += [f"{kind} in page {number} annotation" for kind in kinds]
    return sorted(set(findings))


def _pages(pdf: PdfReader) -> Iterator[tuple[int, DictionaryObject]]:
    """Yield (page number from 1, page dictionary) for the pages scanned."""
    for index, page in enumerate(pdf.pages):
        if index >= MAX_PAGES_SCANNED:
            return
        yield index + 1, page


def _additional_action_kinds(additional) -> list[str]:
    """Return the active kinds among an /AA dictionary's triggered actions."""
    additional = _dictionary(additional)
    if additional is None:
        return []
    return [kind for trigger in additional.values() for kind in _action_kinds(trigger)]


def _action_kinds(action, depth: int = 0) -> list[str]:
    """Return "javascript"/"launch" for an action and the actions chained after it (/Next)."""
    action = action.get_object() if action is not None else None
    if depth > MAX_ACTION_DEPTH:
        return []
    if isinstance(action, ArrayObject):
        return [kind for item in action for kind in _action_kinds(item, depth + 1)]
    if not isinstance(action, DictionaryObject):
        return []  # e.g. an /OpenAction that is a destination (a page to show), not an action
    kinds = []
    kind = ACTIVE_ACTIONS.get(action.get("/S"))
    if kind is None and "/JS" in action:
        kind = "javascript"  # a /JS entry runs whatever /S claims
    if kind is not None:
        kinds.append(kind)
    return kinds + _action_kinds(action.get("/Next"), depth + 1)


def _dictionary(value) -> DictionaryObject | None:
    """Return the dictionary behind a (possibly indirect) value, or None."""
    value = value.get_object() if value is not None else None
    return value if isinstance(value, DictionaryObject) else None


def _array(value) -> ArrayObject:
    """Return the array behind a (possibly indirect) value, or an empty one."""
    value = value.get_object() if value is not None else None
    return value if isinstance(value, ArrayObject) else ArrayObject()


def thumbnail_pdf(data_or_reader: bytes | Reader, size: int) -> bytes | None:
    """Render the first page to a WebP at most `size` px on the long side; None when it needs a password."""
    source = data_or_reader
    if not isinstance(source, bytes | bytearray):
        source = _open_stream(source)
    try:
        document = pdfium.PdfDocument(source)
    except pdfium.PdfiumError:
        if reader_error(source) is not None:
            raise reader_error(source) from None  # S3 failed, not the file: let the task retry
        return None  # a password is needed (or the file is broken): no preview
    try:
        return _render_first_page(document, size)
    finally:
        document.close()


def _render_first_page(document, size: int) -> bytes | None:
    """Return the first page of an open pdfium document as WebP bytes, or None without pages."""
    if len(document) == 0:
        return None
    page = document[0]
    width, height = page.get_size()
    if width <= 0 or height <= 0:
        return None
    # Render straight at the target size: a huge page never becomes a huge bitmap.
    image = page.render(scale=size / max(width, height)).to_pil()
    return webp_thumbnail(image, size)
