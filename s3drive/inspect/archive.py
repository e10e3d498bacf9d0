"""ZIP-family archives: entry count, uncompressed total, ratio, unsafe names and encryption, from the tail.

A ZIP ends with its table of contents: the End Of Central Directory record (and, for ZIP64, a locator and
a record of its own) points at the central directory, one header per entry with its name, flags and sizes.
Reading those costs two or three ranged reads of the tail, whatever the size of the archive. zipfile would
do the same parsing but reads the tail through private helpers, so this is a small parser with struct.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from ..sizes import human_size
from .base import Limits, Reader, Rejected, Report

# Layouts from PKWARE's APPNOTE.TXT (4.3.12 central header, 4.3.14-16 ZIP64 records, 4.3.16 EOCD).
_EOCD = struct.Struct("<4s4H2LH")  # signature, disk, cd disk, entries here, entries, cd size, cd offset, comment
_ZIP64_LOCATOR = struct.Struct("<4sLQL")  # signature, disk of the record, record offset, disks
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")  # signature, size, versions, disks, entries here, entries, cd size/offset
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_EOCD_SIG, _LOCATOR_SIG, _ZIP64_SIG, _CENTRAL_SIG = b"PK\x05\x06", b"PK\x06\x07", b"PK\x06\x06", b"PK\x01\x02"
_MAX_COMMENT = 0xFFFF
# Most tails are an EOCD with no comment, after a ZIP64 record and locator: one small read finds them.
_FIRST_TAIL = 4096
# The most central directory inspection reads per allowed entry: the fixed 46 bytes, a long name, extras.
CENTRAL_BYTES_PER_ENTRY = 512
# A ratio matters once the expansion can hurt: small, very repetitive files (logs, CSV) compress 100:1 too.
RATIO_FLOOR = 10 * 1024 * 1024
_ENCRYPTED, _UTF8_NAME = 0x1, 0x800
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class Directory:
    """Where the central directory is and how many entries it claims."""

    offset: int
    size: int
    entries: int


@dataclass(frozen=True)
class Entry:
    """One central directory header: what inspection needs of it."""

    name: str
    flags: int
    compressed: int
    uncompressed: int


def _corrupt(why: str) -> Rejected:
    return Rejected("corrupt_file", f"The archive cannot be parsed: {why}.")


def _read_tail(reader: Reader, length: int) -> tuple[int, bytes]:
    start = max(0, reader.size - length)
    return start, reader.read(start, reader.size - start)


def _find_eocd(tail: bytes) -> int | None:
    # The signature may occur in the comment or in data: the right one's comment ends the file exactly.
    position = tail.rfind(_EOCD_SIG, 0, len(tail) - _EOCD.size + len(_EOCD_SIG))
    while position >= 0:
        comment_length = _EOCD.unpack_from(tail, position)[-1]
        if position + _EOCD.size + comment_length == len(tail):
            return position
        position = tail.rfind(_EOCD_SIG, 0, position + len(_EOCD_SIG) - 1)
    return None


def _zip64_directory(reader: Reader, tail_start: int, tail: bytes, eocd: int) -> tuple[int, Directory]:
    if eocd < _ZIP64_LOCATOR.size:
        raise _corrupt("the ZIP64 locator is missing")
    signature, _, record_offset, _ = _ZIP64_LOCATOR.unpack_from(tail, eocd - _ZIP64_LOCATOR.size)
    if signature != _LOCATOR_SIG:
        raise _corrupt("the ZIP64 locator is missing")
    # The record usually sits right before the locator, inside the tail already read; its recorded offset
    # counts from the archive's start, which data prepended to the archive would shift.
    local = eocd - _ZIP64_LOCATOR.size - _ZIP64_EOCD.size
    record_at, record = tail_start + local, tail[local : local + _ZIP64_EOCD.size] if local >= 0 else b""
    if record[:4] != _ZIP64_SIG:
        record_at, record = record_offset, reader.read(record_offset, _ZIP64_EOCD.size)
    if len(record) < _ZIP64_EOCD.size or record[:4] != _ZIP64_SIG:
        raise _corrupt("the ZIP64 end record is missing")
    fields = _ZIP64_EOCD.unpack(record)
    if fields[4] != 0 or fields[5] != 0:
        raise _corrupt("multi-disk archives are not supported")
    return record_at, Directory(offset=fields[9], size=fields[8], entries=fields[7])


def read_directory(reader: Reader) -> Directory:
    """Find the central directory from the End Of Central Directory record in the tail of a ZIP."""
    tail_start, tail = _read_tail(reader, _FIRST_TAIL)
    eocd = _find_eocd(tail)
    if eocd is None and tail_start > 0:  # a comment longer than the first read: read the most it can be
        tail_start, tail = _read_tail(reader, _EOCD.size + _MAX_COMMENT + _ZIP64_LOCATOR.size + _ZIP64_EOCD.size)
        eocd = _find_eocd(tail)
    if eocd is None:
        raise _corrupt("no End Of Central Directory record (not a ZIP, or truncated)")
    _, disk, cd_disk, _, entries, size, offset, _ = _EOCD.unpack_from(tail, eocd)
    end_at, directory = tail_start + eocd, Directory(offset=offset, size=size, entries=entries)
    if 0xFFFF in (disk, cd_disk, entries) or 0xFFFFFFFF in (size, offset):
        end_at, directory = _zip64_directory(reader, tail_start, tail, eocd)
    elif disk or cd_disk:
        raise _corrupt("multi-disk archives are not supported")
    # The directory ends where the end records begin; data prepended to the archive (a self-extractor)
    # shifts every offset by the same amount, as zipfile allows too.
    start = end_at - directory.size
    if start < 0 or directory.offset > start:
        raise _corrupt("the central directory lies outside the file")
    return Directory(offset=start, size=directory.size, entries=directory.entries)


def _zip64_sizes(extra: bytes, compressed: int, uncompressed: int) -> tuple[int, int]:
    position = 0
    while position + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, position)
        if tag == 0x0001:  # ZIP64 extended information: only the fields whose 32-bit value is saturated
            values = iter(struct.unpack_from(f"<{min(length, 16) // 8}Q", extra, position + 4))
            if uncompressed == 0xFFFFFFFF:
                uncompressed = next(values, uncompressed)
            if compressed == 0xFFFFFFFF:
                compressed = next(values, compressed)
            break
        position += 4 + length
    return compressed, uncompressed


def iter_entries(data: bytes, count: int) -> Iterator[Entry]:
    """Yield the entries of a central directory read whole."""
    position = 0
    for _ in range(count):
        if data[position : position + 4] != _CENTRAL_SIG or position + _CENTRAL.size > len(data):
            raise _corrupt("a central directory header is damaged")
        fields = _CENTRAL.unpack_from(data, position)
        flags, (compressed, uncompressed, name_length, extra_length, comment_length) = fields[5], fields[10:15]
        name_at = position + _CENTRAL.size
        raw_name = data[name_at : name_at + name_length]
        extra = data[name_at + name_length : name_at + name_length + extra_length]
        compressed, uncompressed = _zip64_sizes(extra, compressed, uncompressed)
        name = raw_name.decode("utf-8" if flags & _UTF8_NAME else "cp437", "replace")
        yield Entry(name=name, flags=flags, compressed=compressed, uncompressed=uncompressed)
        position = name_at + name_length + extra_length + comment_length


def unsafe_name(name: str) -> bool:
    """Tell whether an entry name would escape the folder it is extracted into (zip slip)."""
    path = name.replace("\\", "/")
    return "\0" in path or path.startswith("/") or bool(_DRIVE.match(path)) or ".." in path.split("/")


def _check_directory(directory: Directory, limits: Limits) -> None:
    # Refuse on what the end record claims, before reading a directory that could be any size.
    if directory.entries > limits.archive_max_entries:
        raise Rejected(
            "archive_bomb",
            f"The archive has {directory.entries} entries; at most {limits.archive_max_entries} are accepted.",
        )
    if directory.size > limits.archive_max_entries * CENTRAL_BYTES_PER_ENTRY:
        raise Rejected("archive_bomb", f"The archive's table of contents is {directory.size} bytes, too large.")
    if directory.size < directory.entries * _CENTRAL.size:
        raise _corrupt("the central directory is shorter than its entries")


def _check_entry(entry: Entry, limits: Limits) -> None:
    if unsafe_name(entry.name):
        raise Rejected("unsafe_archive", f"The archive entry {entry.name!r} would be extracted outside its folder.")
    if entry.flags & _ENCRYPTED and limits.refuse_encrypted_archives:
        raise Rejected("unsafe_archive", f"The archive entry {entry.name!r} is encrypted; it cannot be inspected.")


def _check_totals(uncompressed: int, archive_size: int, limits: Limits) -> float:
    if uncompressed > limits.archive_max_uncompressed:
        raise Rejected(
            "archive_bomb",
            f"The archive expands to {human_size(uncompressed)}; "
            f"at most {human_size(limits.archive_max_uncompressed)} is accepted.",
        )
    ratio = uncompressed / max(archive_size, 1)
    if uncompressed > RATIO_FLOOR and ratio > limits.archive_max_ratio:
        raise Rejected(
            "archive_bomb",
            f"The archive expands {ratio:.0f} times its size; at most {limits.archive_max_ratio} times is accepted.",
        )
    return ratio


def inspect_zip(reader: Reader, limits: Limits) -> Report:
    """Check a ZIP's entries, names and sizes from its central directory, reading only the tail."""
    directory = read_directory(reader)
    _check_directory(directory, limits)
    data = reader.read(directory.offset, directory.size)
    if len(data) != directory.size:
        raise _corrupt("the central directory is truncated")
    uncompressed = 0
    for entry in iter_entries(data, directory.entries):
        _check_entry(entry, limits)
        uncompressed += entry.uncompressed
    ratio = _check_totals(uncompressed, reader.size, limits)
    return Report(
        detected_type="application/zip",
        kind="archive",
        entry_count=directory.entries,
        details={"uncompressed": uncompressed, "ratio": round(ratio, 2)},
    )
