"""Inspection reads objects in S3 (moto) through ranged GETs: a few small reads, whatever the size."""

from __future__ import annotations

import zipfile

import pytest
from conftest import BUCKET
from samples import zip_bytes
from test_inspect_image import bomb_png, image_bytes

from s3drive.errors import ObjectMissing
from s3drive.inspect import inspect_object
from s3drive.inspect.base import Limits, Rejected
from s3drive.storage import get_storage


def put(s3, key: str, data: bytes) -> None:
    s3.put_object(Bucket=BUCKET, Key=key, Body=data)


def reader_of(app, key: str, size: int):
    with app.app_context():
        return get_storage().reader(key, size)


def test_an_image_is_inspected_from_its_head(app, s3):
    data = image_bytes("PNG", size=(640, 480)) + b"\0" * (2 * 1024 * 1024)  # trailing bytes nobody reads
    put(s3, "u/photo.png", data)
    reader = reader_of(app, "u/photo.png", len(data))
    report = inspect_object(reader, "image/png", Limits())
    assert (report.kind, report.width, report.height) == ("image", 640, 480)
    assert reader.bytes_read <= 64 * 1024 and reader.reads <= 3


def test_a_decompression_bomb_in_s3_is_refused_from_its_header(app, s3):
    data = bomb_png()
    put(s3, "u/bomb.png", data)
    reader = reader_of(app, "u/bomb.png", len(data))
    with pytest.raises(Rejected) as refused:
        inspect_object(reader, "image/png", Limits())
    assert refused.value.code == "image_too_large" and reader.bytes_read <= 64 * 1024


def test_a_zip_in_s3_costs_its_head_and_its_tail(app, s3):
    stored = {f"big{i}.bin": bytes([i]) * (1024 * 1024) for i in range(8)}  # stored: the object is 8 MiB
    data = zip_bytes(stored, compression=zipfile.ZIP_STORED)
    put(s3, "u/archive.zip", data)
    reader = reader_of(app, "u/archive.zip", len(data))
    report = inspect_object(reader, "application/zip", Limits())
    assert (report.kind, report.entry_count) == ("archive", 8)
    assert reader.bytes_read <= 64 * 1024 < len(data) // 100


def test_reading_past_the_end_or_a_missing_object(app, s3):
    put(s3, "u/small.txt", b"hello")
    with app.app_context():
        storage = get_storage()
        assert storage.read_range("u/small.txt", 0, 1000) == b"hello"
        assert storage.read_range("u/small.txt", 5, 10) == b""
        with pytest.raises(ObjectMissing):
            storage.read_range("u/gone.txt", 0, 10)
