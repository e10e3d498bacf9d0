"""Byte counts for people: the one wording of sizes in messages of the server and the client.

Pure, no Flask: error messages say "File is 6 GiB; the limit is 5 GiB", while the exact
byte counts go into the error's details for programs.
"""

from __future__ import annotations

import re

UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
BEYOND_ANY_OBJECT = 2**63  # 8 EiB
# Sizes people write: "10 MiB", "16M", "1.5G", "512k", "1048576" (binary units whatever the spelling).
_WRITTEN_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*", re.IGNORECASE)
_UNIT_BYTES = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}


def human_size(count: int | float) -> str:
    """Return a byte count in binary units, one decimal at most: 512 B, 1.5 KiB, 6 GiB."""
    if count >= BEYOND_ANY_OBJECT:
        # A request may declare any integer (10**400 does not even fit a float); no S3 object is this big.
        return "more than 8 EiB"
    value = float(count)
    for unit in UNITS:
        # Compared as it will print: 1023.99 KiB reads "1 MiB", not "1024 KiB".
        if round(abs(value), 1) < 1024 or unit == UNITS[-1]:
            break
        value /= 1024
    if unit == "B":
        return f"{int(value)} B"
    text = f"{value:.1f}"
    return f"{text.removesuffix('.0')} {unit}"


def distinct_sizes(first: int, second: int) -> tuple[str, str]:
    """Return both counts for people, with the exact bytes when rounding would make different counts read the same."""
    words = human_size(first), human_size(second)
    if first != second and words[0] == words[1]:
        # "File is 5 GiB; the limit is 5 GiB" would read as no reason at all.
        return f"{words[0]} ({first:,} bytes)", f"{words[1]} ({second:,} bytes)"
    return words


def parse_size(text: str) -> int:
    """Return the bytes of a written size: "10 MiB", "16M", "1.5G", "512k" or "1048576" (binary units)."""
    match = _WRITTEN_SIZE.fullmatch(text)
    if not match:
        raise ValueError(f"not a size: {text!r} (write bytes, or a number with K, M, G or T, e.g. 10 MiB)")
    return int(float(match.group(1)) * _UNIT_BYTES[match.group(2).lower()])
