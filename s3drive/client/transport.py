"""Transport: the PUT of one body to a presigned S3 URL, with retries, re-signing and a bandwidth cap.

Network errors and 5xx answers are retried with backoff (api.send_with_retries); a URL that
S3 refuses as expired is signed again by the caller's resign() and the body sent afresh.
Stop, the cancel flag every transfer checks, lives here too: Ctrl-C must halt a body
mid-stream, a pause between retries, and a wait for the bandwidth cap alike.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from .api import RetryPolicy, SessionPerThread, send_with_retries
from .errors import Cancelled, ClientError
from .local_files import FileSlice

S3_TIMEOUT = 120.0
MAX_RESIGNS = 2


class Stop:
    """A cancel flag that also trips when its parent does.

    The uploader's root Stop is set by Ctrl-C and halts every transfer; each group of tasks
    (a batch, a window of parts) has a child, set when one of them fails, so that a failed
    file stops its own parts without stopping the files after it.
    """

    def __init__(self, parent: Stop | None = None):
        self.parent = parent
        self._event = threading.Event()

    def set(self) -> None:
        """Trip this flag (and so every child's)."""
        self._event.set()

    def is_set(self) -> bool:
        """Return whether this flag or a parent's is set."""
        return self._event.is_set() or (self.parent is not None and self.parent.is_set())

    def wait(self, seconds: float) -> bool:
        """Sleep up to seconds, waking early (and returning True) once the flag trips."""
        deadline = time.monotonic() + seconds
        while not self.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            # Short naps: a parent's flag trips without waking this flag's event.
            self._event.wait(min(remaining, 0.1))
        return True

    def pause(self, seconds: float) -> None:
        """Sleep up to seconds; raise Cancelled if the flag trips meanwhile."""
        if self.wait(seconds):
            raise Cancelled()


class Throttle:
    """A shared bandwidth cap (bytes per second) across all transfer threads."""

    def __init__(self, rate: float):
        self.rate = rate
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def take(self, count: int, stop: Stop) -> None:
        """Wait until count more bytes fit under the cap."""
        with self._lock:
            now = time.monotonic()
            self._next = max(self._next, now) + count / self.rate
            delay = self._next - now
        if delay > 0:
            stop.pause(delay)


@dataclass
class Ticket:
    """Where and how to PUT one body (a whole small file, or one part)."""

    url: str
    headers: dict[str, str]


@dataclass
class Transfer:
    """A slice of a local file to PUT, named for messages, with callbacks that count its bytes."""

    path: Path
    offset: int
    length: int
    what: str  # "upload of photo.jpg", "part 3 of movie.mp4"
    on_bytes: Callable[[int], Any]  # every byte sent, a failed attempt's too
    on_retry: Callable[[int], Any]  # the bytes a failed attempt had sent, to take back from the bars


def s3_error(response: requests.Response, what: str) -> ClientError:
    """Turn an S3 error answer (XML) into a ClientError."""
    code = re.search(r"<Code>([^<]*)</Code>", response.text or "")
    message = re.search(r"<Message>([^<]*)</Message>", response.text or "")
    reason = code.group(1) if code else response.reason
    detail = f": {message.group(1)}" if message else ""
    return ClientError(
        "storage_error", f"{what}: S3 answered {response.status_code} {reason}{detail}", status=response.status_code
    )


def url_expired(url: str, now: datetime | None = None) -> bool:
    """Return whether a SigV4 presigned URL is past its X-Amz-Date + X-Amz-Expires."""
    query = parse_qs(urlsplit(url).query)
    try:
        signed = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        lifetime = int(query["X-Amz-Expires"][0])
    except (KeyError, ValueError, IndexError):
        return False
    return (now or datetime.now(UTC)).timestamp() >= signed.timestamp() + lifetime


def is_expired_answer(response: requests.Response, url: str) -> bool:
    """Return whether S3 refused the request because its presigned URL expired."""
    return response.status_code == 403 and ("expired" in (response.text or "").lower() or url_expired(url))


def usable_answer(response: requests.Response, url: str, what: str, *, can_resign: bool) -> bool:
    """Return True for an OK answer, False for an expired URL worth signing again; raise S3's error otherwise."""
    if response.ok:
        return True
    if can_resign and is_expired_answer(response, url):
        return False
    raise s3_error(response, what)


class Transport:
    """PUT file slices to presigned URLs: a session per thread, retries, re-signing, a shared bandwidth cap."""

    def __init__(self, policy: RetryPolicy, limit_rate: float | None = None):
        self.policy = policy
        self.throttle = Throttle(limit_rate) if limit_rate else None
        self._sessions = SessionPerThread()

    def session(self) -> requests.Session:
        """Return this thread's session with S3."""
        return self._sessions.get()

    def put(self, transfer: Transfer, ticket: Ticket, resign: Callable[[], Ticket], stop: Stop) -> str:
        """PUT a slice of a file with retries and re-signing; return the ETag S3 answered."""
        bodies: list[FileSlice] = []

        def send() -> requests.Response:
            if bodies:  # a retry: take back the bytes of the failed attempt from the bars
                transfer.on_retry(bodies[-1].sent)
            body = FileSlice(transfer.path, transfer.offset, transfer.length, self._pacer(transfer, stop), stop.is_set)
            bodies.append(body)
            data = body if transfer.length else b""  # an empty iterable would be sent chunked
            return self.session().put(ticket.url, data=data, headers=ticket.headers, timeout=S3_TIMEOUT)

        for resigns in range(MAX_RESIGNS + 1):
            response = send_with_retries(send, self.policy, what=transfer.what, sleep=stop.pause, cancelled=stop.is_set)
            if usable_answer(response, ticket.url, transfer.what, can_resign=resigns < MAX_RESIGNS):
                return (response.headers.get("ETag") or "").strip('"')
            ticket = resign()  # send() reads the new ticket
        raise AssertionError("unreachable")

    def _pacer(self, transfer: Transfer, stop: Stop) -> Callable[[int], None]:
        """Return the on_chunk of a body: wait for the bandwidth cap, then count the chunk."""

        def on_chunk(count: int) -> None:
            if self.throttle:
                self.throttle.take(count, stop)
            transfer.on_bytes(count)

        return on_chunk
