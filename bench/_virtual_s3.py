"""A tiny S3 endpoint serving virtual objects (any size, made on the fly) and counting the bytes it sends.

For bench/inspection.py (`make bench` skips modules named _*): a 5 GiB video or zip needs no 5 GiB on
disk, and the count is taken where it matters, at the S3 endpoint (every byte written to a socket,
FFmpeg's reads included). It answers HeadObject and GetObject (with or without Range, signed or
presigned: signatures are not checked), path-style: /<bucket>/<key>.
"""

from __future__ import annotations

import re
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

CHUNK = 16 * 1024
_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


@dataclass
class VirtualObject:
    """An object of `size` bytes: `head`, then zeros, then `tail`."""

    size: int
    head: bytes
    tail: bytes = b""
    content_type: str = "application/octet-stream"

    def read(self, start: int, length: int) -> bytes:
        """Return the bytes in [start, start + length)."""
        end = min(start + length, self.size)
        tail_start = self.size - len(self.tail)
        out = bytearray()
        position = start
        while position < end:
            if position < len(self.head):
                piece = self.head[position : min(end, len(self.head))]
            elif position >= tail_start:
                piece = self.tail[position - tail_start : end - tail_start]
            else:
                piece = bytes(min(end, tail_start) - position)
            out += piece
            position += len(piece)
        return bytes(out)


@dataclass
class Counter:
    """Bytes of object data sent, and GET requests, per key."""

    bytes_sent: dict[str, int] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, key: str, sent: int, request: bool = False) -> None:
        with self.lock:
            self.bytes_sent[key] = self.bytes_sent.get(key, 0) + sent
            self.requests[key] = self.requests.get(key, 0) + int(request)

    def reset(self) -> None:
        with self.lock:
            self.bytes_sent.clear()
            self.requests.clear()


def serve(objects: dict[str, VirtualObject]) -> tuple[ThreadingHTTPServer, Counter, Callable[[], None]]:
    """Serve `objects` (by key, any bucket) on a free loopback port; return the server, its counter, and stop."""
    counter = Counter()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def _object(self) -> tuple[str, VirtualObject | None]:
            path = unquote(urlsplit(self.path).path).lstrip("/")
            key = path.split("/", 1)[1] if "/" in path else ""
            return key, objects.get(key)

        def do_HEAD(self):
            key, obj = self._object()
            if obj is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(obj.size))
            self.send_header("Content-Type", obj.content_type)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", '"virtual"')
            self.end_headers()

        def do_GET(self):
            key, obj = self._object()
            if obj is None:
                body = b"<Error><Code>NoSuchKey</Code></Error>"
                self.send_response(404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            start, end = 0, obj.size - 1
            match = _RANGE.fullmatch(self.headers.get("Range", ""))
            if match:
                start = int(match.group(1))
                end = min(int(match.group(2)), obj.size - 1) if match.group(2) else obj.size - 1
            counter.add(key, 0, request=True)
            if start >= obj.size:
                self.send_response(416)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206 if match else 200)
            self.send_header("Content-Length", str(end - start + 1))
            self.send_header("Content-Type", obj.content_type)
            self.send_header("Accept-Ranges", "bytes")
            if match:
                self.send_header("Content-Range", f"bytes {start}-{end}/{obj.size}")
            self.end_headers()
            position = start
            try:
                while position <= end:
                    piece = obj.read(position, min(CHUNK, end - position + 1))
                    self.wfile.write(piece)
                    counter.add(key, len(piece))
                    position += len(piece)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the reader had enough: what it was sent is counted

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return server, counter, stop


def zip64_of_zeros(size: int, name: bytes = b"disk.img") -> VirtualObject:
    """Return a ZIP64 archive of `size` bytes holding one stored entry of zeros (what fills the rest)."""
    extra_local = struct.pack("<HHQQ", 1, 16, 0, 0)  # sizes filled below
    head_len = 30 + len(name) + len(extra_local)
    central_len = 46 + len(name) + 20
    tail_len = central_len + 56 + 20 + 22
    data_len = size - head_len - tail_len
    extra = struct.pack("<HHQQ", 1, 16, data_len, data_len)
    head = struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, 0, 0, 0x21, 0, 0xFFFFFFFF, 0xFFFFFFFF, len(name), 20)
    head += name + extra
    central = struct.pack(
        "<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, 0, 0, 0x21, 0, 0xFFFFFFFF, 0xFFFFFFFF, len(name), 20, 0, 0, 0, 0, 0
    )
    central += name + extra
    cd_offset = head_len + data_len
    eocd64 = struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, 1, 1, len(central), cd_offset)
    locator = struct.pack("<IIQI", 0x07064B50, 0, cd_offset + len(central), 1)
    eocd = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    tail = central + eocd64 + locator + eocd
    assert len(head) == head_len and len(tail) == tail_len
    return VirtualObject(size, head, tail, "application/zip")


def padded(data: bytes, size: int, content_type: str) -> VirtualObject:
    """Return a real file followed by zeros up to `size` bytes (a video whose index comes first)."""
    return VirtualObject(size, data, b"", content_type)
