"""A seekable file object over a Reader's ranged reads, for parsers that want a file (pypdf, pypdfium2, Pillow).

Parsers seek around an object (a PDF's trailer, then its xref, then a few objects); each seek
would be a ranged GET. RangeFile reads fixed-size blocks and keeps the recent ones, so the bytes
a check costs are the blocks the parser touched, not the object's size.
"""

from __future__ import annotations

import io
from collections import OrderedDict

from .base import Reader

BLOCK_SIZE = 64 * 1024
# Blocks kept in memory (16 MiB at the default size): enough for a parser's working set,
# bounded whatever the object's size.
MAX_CACHED_BLOCKS = 256


class ReadBudgetExceeded(OSError):
    """A parser wanted more of the object than the check allows itself to read."""


class RangeFile(io.RawIOBase):
    """Read-only, seekable raw IO over a Reader, fetching and caching whole blocks."""

    def __init__(self, reader: Reader, block_size: int = BLOCK_SIZE, max_bytes: int | None = None):
        super().__init__()
        self.reader = reader
        self.block_size = block_size
        # A parser that falls back to scanning the whole object (a broken xref) stops here.
        self.max_bytes = max_bytes
        self.position = 0
        self.blocks_read = 0
        self.bytes_fetched = 0
        # The Reader's own failure (S3 down, an expired URL): parsers catch errors broadly and
        # would call the file corrupt; callers check this to tell their trouble from the file's.
        self.error: Exception | None = None
        self._cache: OrderedDict[int, bytes] = OrderedDict()

    @property
    def size(self) -> int:
        return self.reader.size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move to `offset` from the start, the current position or the end."""
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self.position = base + offset
        return self.position

    def readinto(self, buffer) -> int:
        """Fill `buffer` from the current position out of cached blocks; return the count."""
        view = memoryview(buffer).cast("B")
        wanted = min(len(view), max(self.size - self.position, 0))
        done = 0
        while done < wanted:
            index, skip = divmod(self.position + done, self.block_size)
            chunk = self._block(index)[skip : skip + wanted - done]
            if not chunk:
                break
            view[done : done + len(chunk)] = chunk
            done += len(chunk)
        self.position += done
        return done

    def _block(self, index: int) -> bytes:
        """Return block `index`, from the cache or one ranged read."""
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        if self.max_bytes is not None and self.bytes_fetched + self.block_size > self.max_bytes:
            raise ReadBudgetExceeded(f"reading more than {self.max_bytes} bytes of the object")
        try:
            block = self.reader.read(index * self.block_size, self.block_size)
        except Exception as error:
            self.error = error
            raise
        self.blocks_read += 1
        self.bytes_fetched += len(block)
        self._cache[index] = block
        if len(self._cache) > MAX_CACHED_BLOCKS:
            self._cache.popitem(last=False)
        return block


def reader_error(stream: io.IOBase) -> Exception | None:
    """Return the Reader's failure behind a (buffered) RangeFile, or None for any other stream."""
    raw = getattr(stream, "raw", stream)
    return raw.error if isinstance(raw, RangeFile) else None


def open_range_file(reader: Reader, block_size: int = BLOCK_SIZE, max_bytes: int | None = None) -> io.BufferedReader:
    """Return a buffered, seekable binary file over `reader` (what most parsers expect)."""
    # The buffer turns a parser's many one-byte reads (pypdf's tokenizer) into block copies.
    return io.BufferedReader(RangeFile(reader, block_size, max_bytes), buffer_size=block_size)
