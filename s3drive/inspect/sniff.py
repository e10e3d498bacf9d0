"""Magic-byte sniffing: what the head of an object is, whether it is a program, whether it fits its declared type.

libmagic (python-magic) names the type; a family table, as data, decides which detected types a
declared type accepts; native executables are recognised from their own magic numbers, so that no
name, declared type or libmagic verdict can let one through.
"""

from __future__ import annotations

import fnmatch
import struct
import threading

import magic

from ..contenttypes import content_type_allowed
from .base import Rejected

# libmagic's answer when it cannot tell (python-magic says application/octet-stream; `file` says "data").
UNRECOGNISED = ("application/octet-stream", "data", "application/x-empty")

# Spellings that mean the same type: a declared or detected type is compared under its canonical name.
ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/x-png": "image/png",
    "image/x-ms-bmp": "image/bmp",
    "image/vnd.microsoft.icon": "image/x-icon",
    "application/x-zip-compressed": "application/zip",
    "application/x-zip": "application/zip",
    "application/x-javascript": "application/javascript",
    "text/x-script.python": "text/x-python",
    "application/x-pdf": "application/pdf",
}

TEXTUAL = ("text/*", "application/json", "application/xml", "application/x-empty")
# ZIP containers: libmagic names the specific OOXML/ODF/EPUB type when it can, else application/zip.
ZIP_TYPES = (
    "application/zip",
    "application/vnd.openxmlformats-officedocument.*",
    "application/vnd.oasis.opendocument.*",
    "application/epub+zip",
    "application/java-archive",
    "application/x-java-archive",
    "application/vnd.ms-xpsdocument",
    "application/oxps",
)
# Raster images: one may carry another's name (browsers sniff them alike), never SVG's (it runs scripts).
RASTER_IMAGES = (
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/webp",
    "image/bmp",
    "image/tiff",
    "image/x-icon",
    "image/avif",
    "image/heic",
    "image/heif",
    "image/jxl",
)
OLE_DOCUMENTS = ("application/msword", "application/vnd.ms-*", "application/x-ole-storage", "application/cdfv2")
# Containers libmagic does not always recognise: an unrecognised head is no evidence against them.
MEDIA = ("audio/*", "video/*", "application/ogg", *UNRECOGNISED)

# Types libmagic gives native executables (a second net behind the magic numbers below).
EXECUTABLE_TYPES = (
    "application/x-dosexec",
    "application/vnd.microsoft.portable-executable",
    "application/x-msdownload",
    "application/x-executable",
    "application/x-sharedlib",
    "application/x-pie-executable",
    "application/x-mach-binary",
    "application/x-elf",
)
# Script types: detected (libmagic, for shebangs and batch files) or declared (Windows script hosts).
SCRIPT_TYPES = (
    "text/x-shellscript",
    "application/x-sh",
    "application/x-shellscript",
    "application/x-csh",
    "text/x-python",
    "text/x-perl",
    "text/x-ruby",
    "text/x-php",
    "application/x-php",
    "text/x-tcl",
    "application/javascript",
    "text/javascript",
    "application/ecmascript",
    "text/vbscript",
    "text/vbs",
    "application/x-vbscript",
    "application/hta",
    "text/x-msdos-batch",
    "application/x-bat",
    "application/x-msdos-program",
    "application/bat",
    "application/x-wsf",
    "text/x-powershell",
    "application/x-powershell",
)

# Declared type (pattern) -> detected types (patterns) that are the same kind of content. First match wins,
# exact keys before wildcards. A declared type absent here accepts itself and UNRECOGNISED only.
FAMILIES: dict[str, tuple[str, ...]] = {
    "image/svg+xml": ("image/svg+xml", *TEXTUAL),
    "image/*": RASTER_IMAGES,
    "application/pdf": ("application/pdf",),
    **dict.fromkeys(ZIP_TYPES, ZIP_TYPES),
    # application/vnd.ms-* names both the old OLE files and the macro-enabled OOXML zips (.docm, .xlsm).
    **dict.fromkeys(OLE_DOCUMENTS, OLE_DOCUMENTS + ZIP_TYPES),
    "text/*": TEXTUAL,
    "application/json": TEXTUAL,
    "application/xml": TEXTUAL,
    "audio/*": MEDIA,
    "video/*": MEDIA,
    "application/ogg": MEDIA,
    # Scripts are text to libmagic unless they start with a shebang.
    **dict.fromkeys(SCRIPT_TYPES, TEXTUAL),
}


_MACHO = {0xFEEDFACE, 0xFEEDFACF, 0xCEFAEDFE, 0xCFFAEDFE}
_FAT = {0xCAFEBABE, 0xCAFEBABF}
# A fat binary's second word is its architecture count (a handful); a Java class file's is its version
# (major 45 and up), which is how `file` tells the two apart.
_MAX_FAT_ARCHS = 30

_local = threading.local()


def _magic() -> magic.Magic:
    # One handle per thread: libmagic handles are not thread-safe, and opening one loads the database.
    handle = getattr(_local, "magic", None)
    if handle is None:
        handle = _local.magic = magic.Magic(mime=True)
    return handle


def canonical(content_type: str) -> str:
    """Return a MIME type lower-cased, without parameters, under its canonical name."""
    bare = content_type.split(";", 1)[0].strip().lower()
    return ALIASES.get(bare, bare)


def sniff(head: bytes) -> str:
    """Return the MIME type libmagic detects in the head of an object."""
    return canonical(_magic().from_buffer(head))


def _matches(content_type: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(content_type, pattern) for pattern in patterns)


def _family(declared: str) -> tuple[str, ...] | None:
    if declared in FAMILIES:
        return FAMILIES[declared]
    return next((detected for pattern, detected in FAMILIES.items() if fnmatch.fnmatchcase(declared, pattern)), None)


def compatible(declared: str, detected: str) -> bool:
    """Tell whether bytes of the detected type may be stored under the declared type."""
    declared, detected = canonical(declared), canonical(detected)
    if declared == detected:
        return True
    if declared == "application/octet-stream":
        return not is_executable_type(detected)
    family = _family(declared)
    return _matches(detected, family if family is not None else UNRECOGNISED)


def is_executable_type(content_type: str) -> bool:
    """Tell whether a MIME type names a native executable."""
    return canonical(content_type) in EXECUTABLE_TYPES


def is_zip(detected: str) -> bool:
    """Tell whether a detected type is a ZIP container (plain, OOXML, ODF, EPUB, JAR)."""
    return _matches(canonical(detected), ZIP_TYPES)


def native_executable(head: bytes) -> str | None:
    """Return the executable format the head starts with (PE, ELF, Mach-O), or None."""
    if head.startswith(b"\x7fELF"):
        return "ELF"
    if head.startswith(b"MZ") and len(head) >= 0x40:
        (pe_offset,) = struct.unpack_from("<I", head, 0x3C)
        if head[pe_offset : pe_offset + 4] == b"PE\0\0":
            return "PE"
    if len(head) >= 8:
        first, second = struct.unpack_from(">II", head)
        if first in _MACHO:
            return "Mach-O"
        if first in _FAT and 0 < second <= _MAX_FAT_ARCHS:
            return "Mach-O universal"
    return None


def check_executable(head: bytes, detected: str, declared: str, allowed: tuple[str, ...]) -> None:
    """Reject native executables always, and scripts unless declared as a script type the policy allows."""
    found = native_executable(head) or ("executable" if is_executable_type(detected) else None)
    if found:
        raise Rejected("executable_content", f"The file is a program ({found}); programs cannot be stored.")
    declared, detected = canonical(declared), canonical(detected)
    script = head.startswith(b"#!") or detected in SCRIPT_TYPES or declared in SCRIPT_TYPES
    if script and not (declared in SCRIPT_TYPES and content_type_allowed(declared, allowed)):
        raise Rejected(
            "executable_content",
            f"The file is a script; scripts are accepted only when declared as an allowed script type, not {declared}.",
        )
