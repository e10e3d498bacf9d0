"""ZIP central directories read from the tail: bombs, zip slip, encryption, ZIP64, and what it costs to read."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from dataclasses import dataclass

import pytest
from samples import MIB, zip_bytes
from samples import zeros_zip as make_zeros_zip

from s3drive.inspect import inspect_object
from s3drive.inspect.archive import inspect_zip, unsafe_name
from s3drive.inspect.base import GIB, HEAD_BYTES, BytesReader, Limits, Rejected


def rejected(data: bytes, **limits) -> Rejected:
    with pytest.raises(Rejected) as caught:
        inspect_zip(BytesReader(data), Limits(**limits))
    return caught.value


@pytest.fixture(scope="module")
def zeros_zip() -> bytes:
    return make_zeros_zip()


def test_a_normal_zip_passes_with_its_entry_count():
    data = zip_bytes({"readme.txt": b"hello", "docs/a.md": b"# a\n" * 50, "docs/": b""})
    report = inspect_zip(BytesReader(data), Limits())
    assert (report.kind, report.entry_count) == ("archive", 3)
    assert report.details["uncompressed"] == 5 + 200


def test_200_mib_of_zeros_is_a_bomb_by_ratio(zeros_zip):
    assert len(zeros_zip) < 1 * MIB
    reader = BytesReader(zeros_zip)
    with pytest.raises(Rejected) as caught:
        inspect_object(reader, "application/zip", Limits())
    assert caught.value.code == "archive_bomb" and "times its size" in caught.value.message
    assert reader.bytes_read <= HEAD_BYTES


def test_the_uncompressed_total_is_bounded_too(zeros_zip):
    error = rejected(zeros_zip, archive_max_ratio=10_000, archive_max_uncompressed=100 * MIB)
    assert error.code == "archive_bomb" and "expands to" in error.message


def test_too_many_entries_is_a_bomb_refused_before_reading_the_directory():
    data = zip_bytes({f"f{index}": b"" for index in range(20_000)}, compression=zipfile.ZIP_STORED)
    reader = BytesReader(data)
    with pytest.raises(Rejected) as caught:
        inspect_zip(reader, Limits(archive_max_entries=10_000))
    assert caught.value.code == "archive_bomb"
    assert reader.bytes_read <= 4096  # the end record only, not the ~1 MB directory


@pytest.mark.parametrize("name", ["../../etc/passwd", "/abs", "C:\\x", "C:/x", "a\\..\\..\\b", "ok/../../x"])
def test_zip_slip_names_are_unsafe(name):
    assert unsafe_name(name)
    assert rejected(zip_bytes({"fine.txt": b"1", name: b"2"})).code == "unsafe_archive"


def test_a_name_with_a_nul_byte_is_unsafe():
    # zipfile cuts names at NUL when writing; other tools do not, and extractors disagree on the name.
    assert unsafe_name("evil.txt\0.png")


@pytest.mark.parametrize("name", ["a/b/c.txt", "..hidden", "dir/", "a..b/c", "ünïcode.txt"])
def test_ordinary_names_are_safe(name):
    assert not unsafe_name(name)


def with_encryption_flag(data: bytes) -> bytes:
    """Set general purpose bit 0 (encrypted) on every central directory header, as an encrypting tool would."""
    patched = bytearray(data)
    position = patched.find(b"PK\x01\x02")
    while position >= 0:
        (flags,) = struct.unpack_from("<H", patched, position + 8)
        struct.pack_into("<H", patched, position + 8, flags | 1)
        position = patched.find(b"PK\x01\x02", position + 4)
    return bytes(patched)


def test_encrypted_entries_are_unsafe_when_refused():
    data = with_encryption_flag(zip_bytes({"secret.txt": b"s" * 100}))
    assert zipfile.ZipFile(io.BytesIO(data)).infolist()[0].flag_bits & 1  # zipfile sees it encrypted too
    assert rejected(data).code == "unsafe_archive"
    assert inspect_zip(BytesReader(data), Limits(refuse_encrypted_archives=False)).entry_count == 1


@pytest.mark.parametrize("cut", [10, 100, 1000])
def test_a_truncated_zip_is_corrupt(cut):
    data = zip_bytes({"a.txt": b"a" * 1000, "b.txt": b"b" * 1000})
    assert rejected(data[:-cut]).code == "corrupt_file"


def test_not_a_zip_is_corrupt():
    assert rejected(b"plain text, no archive here\n" * 100).code == "corrupt_file"


def test_a_long_comment_takes_a_second_tail_read():
    data = zip_bytes({"a.txt": b"a"}, comment=b"PK\x05\x06 look-alike " + b"c" * 30_000)
    reader = BytesReader(data)
    assert inspect_zip(reader, Limits()).entry_count == 1
    assert reader.reads == 3  # the first tail, the whole tail, the directory


def test_data_prepended_to_a_zip_is_allowed_as_zipfile_allows_it():
    data = b"#!self-extractor stub\n" * 100 + zip_bytes({"a.txt": b"a", "b.txt": b"b"})
    assert inspect_zip(BytesReader(data), Limits()).entry_count == 2


@dataclass
class VirtualReader:
    """A Reader over a huge object that is zeros except its head and tail: nothing huge is allocated."""

    size: int
    head: bytes
    tail: bytes
    bytes_read: int = 0

    def read(self, start: int, length: int) -> bytes:
        assert length <= 16 * MIB, "inspection asked for a huge read"
        end, tail_start = min(start + length, self.size), self.size - len(self.tail)
        out = bytearray(max(0, end - start))
        out[: max(0, min(end, len(self.head)) - start)] = self.head[start:end]
        if end > tail_start:
            out[max(tail_start, start) - start :] = self.tail[max(start - tail_start, 0) : end - tail_start]
        self.bytes_read += len(out)
        return bytes(out)


def zip64_of_one_stored_entry(name: bytes, size: int, crc: int = 0) -> tuple[bytes, bytes]:
    """Return the head (local header) and tail (central directory, ZIP64 end records) of a stored entry.

    The entry's `size` bytes of data lie between them (a VirtualReader serves them as zeros). Every size
    and offset is in the ZIP64 extra fields, as a zip tool writes an entry over 4 GiB.
    """
    saturated = 0xFFFFFFFF
    head = struct.pack("<4s5H3L2H", b"PK\x03\x04", 45, 0, 0, 0, 0, crc, saturated, saturated, len(name), 20)
    head += name + struct.pack("<HHQQ", 1, 16, size, size)
    central = struct.pack(
        "<4s4B4HL2L5H2L", b"PK\x01\x02", 45, 3, 45, 0, 0, 0, 0, 0, crc, saturated, saturated, len(name), 28, 0, 0, 0, 0,
        saturated,
    )  # fmt: skip
    central += name + struct.pack("<HHQQQ", 1, 24, size, size, 0)
    central_at = len(head) + size
    record = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, 1, 1, len(central), central_at)
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, central_at + len(central), 1)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, saturated, saturated, 0)
    return head, central + record + locator + end


def test_a_5_gib_zip64_costs_its_tail_and_nothing_more():
    size = 5 * GIB
    head, tail = zip64_of_one_stored_entry(b"video.bin", size)
    reader = VirtualReader(size=len(head) + size + len(tail), head=head, tail=tail)
    report = inspect_object(reader, "application/zip", Limits())
    assert report.entry_count == 1 and report.details["uncompressed"] == size
    assert report.details["ratio"] == pytest.approx(1.0, abs=0.01)
    assert reader.bytes_read <= HEAD_BYTES
    direct = VirtualReader(size=reader.size, head=head, tail=tail)
    inspect_zip(direct, Limits())
    assert direct.bytes_read <= 4096 + len(tail)  # the first tail read, then the central directory


def test_zipfile_agrees_with_the_crafted_zip64_records():
    # The same construction, small enough for zipfile to read back whole: the records are what zip tools write.
    head, tail = zip64_of_one_stored_entry(b"tiny.bin", 3, crc=zlib.crc32(b"abc"))
    data = head + b"abc" + tail
    assert zipfile.ZipFile(io.BytesIO(data)).read("tiny.bin") == b"abc"
    report = inspect_zip(BytesReader(data), Limits())
    assert (report.entry_count, report.details["uncompressed"]) == (1, 3)
