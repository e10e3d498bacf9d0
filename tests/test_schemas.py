"""The FileSpec fast path must accept only what marshmallow accepts, with the same result."""

from __future__ import annotations

import random

from marshmallow import ValidationError

from s3drive.schemas import FileSpecSchema, load_file_spec_fast

CANDIDATES = {
    "file_name": ["a.jpg", "", "x" * 4096, "x" * 4097, 5, None, ["a"], "ü.txt"],
    "content_type": ["image/jpeg", "", "t" * 256, 3, None],
    "file_size": [0, 10, -1, 1.5, "10", True, False, None, 2**62],
    "checksum_sha256": [None, "abc", "a" * 129, 5],
    "tier": ["standard", "glacier", "platinum", None, 1],
    "title": [None, "t", "t" * 201, 1],
    "description": [None, "d" * 2000, "d" * 2001, []],
    "tags": [None, "a,b", ["a", "b"], ["a", 1], 5, {"a": 1}, []],
    "folder": [None, "a/b", "f" * 4097, 1],
    "method": ["PUT", "POST", "put", None, 1],
    "profile": [None, "avatar", "", "p" * 65, 7],
    "extra": ["ignored"],
}


def random_spec(rng: random.Random) -> dict:
    spec = {}
    for name, values in CANDIDATES.items():
        if name in ("file_name", "content_type", "file_size") or rng.random() < 0.5:
            # Mostly the first (valid) value, so that many specs reach the fast path.
            spec[name] = values[0] if rng.random() < 0.8 else rng.choice(values)
    return spec


def test_fast_path_agrees_with_marshmallow():
    rng = random.Random(1234)
    schema = FileSpecSchema()
    fast_hits = 0
    for _ in range(5000):
        raw = random_spec(rng)
        fast = load_file_spec_fast(raw)
        try:
            slow = schema.load(raw)
        except ValidationError:
            slow = None
        if fast is not None:
            fast_hits += 1
            assert fast == slow, raw
    assert fast_hits > 100  # the generator does reach the fast path


def test_fast_path_declines_errors_so_marshmallow_reports_them():
    assert load_file_spec_fast({"file_name": "a", "content_type": "b", "file_size": -1}) is None
    assert load_file_spec_fast({"file_name": "a", "content_type": "b"}) is None
