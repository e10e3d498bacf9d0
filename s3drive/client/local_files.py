"""Local files: the paths given expanded into files, their SHA-256, and slices of them as request bodies."""

from __future__ import annotations

import base64
import hashlib
import mimetypes
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..parts import KIB, MIB
from .errors import Cancelled, ClientError

BODY_CHUNK = 256 * KIB
HASH_CHUNK = 1 * MIB


@dataclass
class LocalFile:
    """A file on disk to upload, and where it goes."""

    path: Path  # absolute
    shown: str  # the path as the user would recognize it, for messages
    folder: str | None
    size: int
    mtime_ns: int
    content_type: str

    @classmethod
    def from_path(cls, path: Path, shown: str, folder: str | None) -> LocalFile:
        """Return the LocalFile of an existing file, with its size, mtime and guessed type."""
        stat = path.stat()
        return cls(path, shown, folder, stat.st_size, stat.st_mtime_ns, guess_content_type(path.name))

    @property
    def name(self) -> str:
        """Return the file's own name (the last part of its path)."""
        return self.path.name


def join_folder(*parts: str | None) -> str | None:
    """Join virtual folder parts with `/`, skipping empty ones; None when nothing is left."""
    pieces = [piece.strip("/") for piece in parts if piece and piece.strip("/") not in ("", ".")]
    return "/".join(pieces) or None


def guess_content_type(name: str) -> str:
    """Return the MIME type for a file name, application/octet-stream when unknown."""
    return mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"


def collect_files(paths: Iterable[str], folder: str | None = None, *, keep_structure: bool = True) -> list[LocalFile]:
    """Expand paths (directories recursively) into files; raise file_not_found for a missing one.

    A directory keeps its own name and inner structure under `folder` (like `cp -r`), unless
    keep_structure is false, when every file goes straight into `folder`.
    """
    found: dict[Path, LocalFile] = {}
    for raw in paths:
        for file in _files_named_by(raw, folder, keep_structure):
            found.setdefault(file.path, file)  # a file named twice is uploaded once
    return list(found.values())


def _files_named_by(raw: str, folder: str | None, keep_structure: bool) -> Iterator[LocalFile]:
    """Yield the file a path names, or every regular file below the directory it names."""
    path = Path(raw).expanduser()
    if not path.exists():
        raise ClientError("file_not_found", f"No such file or directory: {raw}")
    if path.is_file():
        yield LocalFile.from_path(path.resolve(), raw, folder)
        return
    if not path.is_dir():
        raise ClientError("not_a_file", f"Not a regular file or directory: {raw}")
    root = path.resolve()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()  # a stable order: the same tree uploads in the same order every time
        here = Path(dirpath)
        sub = here.relative_to(root.parent).as_posix() if keep_structure else None
        for name in sorted(filenames):
            file = here / name
            if file.is_file():  # skips broken links, sockets, fifos
                shown = os.path.join(raw, os.path.relpath(file, root))
                yield LocalFile.from_path(file, shown, join_folder(folder, sub))


def sha256_file(path: Path) -> str:
    """Return the base64 SHA-256 of a file, as S3's x-amz-checksum-sha256 wants it."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return base64.b64encode(digest.digest()).decode()


class FileSlice:
    """A streaming request body: `length` bytes of a file from `offset`, read a chunk at a time.

    on_chunk(count) hears of each chunk before it goes out (it may wait, to cap the bandwidth,
    or raise Cancelled); `sent` counts what this body has handed out so far.
    """

    def __init__(
        self,
        path: Path,
        offset: int,
        length: int,
        on_chunk: Callable[[int], Any],
        cancelled: Callable[[], bool],
    ):
        self.path, self.offset, self.length = path, offset, length
        self.on_chunk, self.cancelled = on_chunk, cancelled
        self.sent = 0

    def __len__(self) -> int:
        # requests reads this for Content-Length (signed into the URL, so it must be exact).
        return self.length

    def __iter__(self) -> Iterator[bytes]:
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            remaining = self.length
            while remaining:
                if self.cancelled():
                    raise Cancelled()
                chunk = handle.read(min(BODY_CHUNK, remaining))
                if not chunk:
                    raise ClientError("file_changed", f"{self.path} got shorter while it was being uploaded")
                self.on_chunk(len(chunk))
                remaining -= len(chunk)
                self.sent += len(chunk)
                yield chunk
