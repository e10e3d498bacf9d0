"""Byte counts for people (s3drive/sizes.py): the wording of sizes in every message."""

from __future__ import annotations

import pytest

from s3drive.sizes import distinct_sizes, human_size


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1 KiB"),
        (1536, "1.5 KiB"),
        (1024 * 1023.99, "1 MiB"),  # rounds into the next unit rather than read "1024 KiB"
        (5 * 1024**3, "5 GiB"),
        (6442450944, "6 GiB"),
        (int(5.5 * 1024**3), "5.5 GiB"),
        (3 * 1024**5, "3 PiB"),
        (2**63 - 1, "8192 PiB"),
        (2**63, "more than 8 EiB"),
        (10**400, "more than 8 EiB"),  # no float holds it: float() would raise OverflowError
    ],
)
def test_human_size(count, text):
    assert human_size(count) == text


def test_distinct_sizes_adds_the_exact_bytes_only_when_rounding_hides_the_difference():
    assert distinct_sizes(6 * 1024**3, 5 * 1024**3) == ("6 GiB", "5 GiB")
    assert distinct_sizes(5 * 1024**3 + 100, 5 * 1024**3) == (
        "5 GiB (5,368,709,220 bytes)",
        "5 GiB (5,368,709,120 bytes)",
    )
    assert distinct_sizes(10, 10) == ("10 B", "10 B")
