"""Upload engine: presigned PUTs in batches, multipart with resume, retries and re-signing.

Small files (up to the server's multipart_threshold) are presigned in one batch call per
max_batch files, each with its SHA-256 signed into the URL, PUT concurrently with exactly
the ticket's headers, then confirmed with one batch call. Larger files go multipart: parts
are signed in windows and PUT concurrently; a state file in the config dir remembers the
upload so that a rerun after Ctrl-C asks the status route which parts S3 already holds and
sends only the others.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import mimetypes
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from .api import Api, RetryPolicy, send_with_retries
from .config import read_json, uploads_dir, write_private
from .errors import ApiError, Cancelled, ClientError
from .progress import TransferProgress

MIB = 1024 * 1024
MIN_PART_SIZE = 5 * MIB
MAX_PARTS = 10_000
BODY_CHUNK = 256 * 1024
HASH_CHUNK = 1 * MIB
S3_TIMEOUT = 120.0
# Parts signed per call: enough to keep the workers busy, few enough that URLs stay fresh.
SIGN_WINDOW = 64
MAX_RESIGNS = 2
STATE_VERSION = 1


# -- local files ----------------------------------------------------------------------------


@dataclass
class LocalFile:
    """A file on disk to upload, and where it goes."""

    path: Path  # absolute
    shown: str  # the path as the user would recognize it, for messages
    folder: str | None
    size: int
    mtime_ns: int
    content_type: str

    @property
    def name(self) -> str:
        return self.path.name


def join_folder(*parts: str | None) -> str | None:
    """Join virtual folder parts with `/`, skipping empty ones; None when nothing is left."""
    pieces = [piece.strip("/") for piece in parts if piece and piece.strip("/") not in ("", ".")]
    return "/".join(pieces) or None


def guess_content_type(name: str) -> str:
    """Return the MIME type for a file name, application/octet-stream when unknown."""
    return mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"


def _local_file(path: Path, shown: str, folder: str | None) -> LocalFile:
    stat = path.stat()
    return LocalFile(path, shown, folder, stat.st_size, stat.st_mtime_ns, guess_content_type(path.name))


def collect_files(paths: Iterable[str], folder: str | None = None, *, keep_structure: bool = True) -> list[LocalFile]:
    """Expand paths (directories recursively) into files; raise file_not_found for a missing one.

    A directory keeps its own name and inner structure under `folder` (like `cp -r`), unless
    keep_structure is false, when every file goes straight into `folder`.
    """
    found: dict[Path, LocalFile] = {}
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise ClientError("file_not_found", f"No such file or directory: {raw}")
        if path.is_file():
            found.setdefault(path.resolve(), _local_file(path.resolve(), raw, folder))
            continue
        if not path.is_dir():
            raise ClientError("not_a_file", f"Not a regular file or directory: {raw}")
        root = path.resolve()
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            here = Path(dirpath)
            sub = here.relative_to(root.parent).as_posix() if keep_structure else None
            for name in sorted(filenames):
                file = here / name
                if file.is_file():  # skips broken links, sockets, fifos
                    shown = os.path.join(raw, os.path.relpath(file, root))
                    found.setdefault(file, _local_file(file, shown, join_folder(folder, sub)))
    return list(found.values())


def sha256_file(path: Path) -> str:
    """Return the base64 SHA-256 of a file, as S3's x-amz-checksum-sha256 wants it."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return base64.b64encode(digest.digest()).decode()


# -- request bodies -------------------------------------------------------------------------


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
            self._event.wait(min(remaining, 0.1))
        return True


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
        if delay > 0 and stop.wait(delay):
            raise Cancelled()


class FileSlice:
    """A streaming request body: `length` bytes of a file from `offset`, counted as they go."""

    def __init__(
        self,
        path: Path,
        offset: int,
        length: int,
        on_bytes: Callable[[int], Any],
        stop: Stop,
        throttle: Throttle | None = None,
    ):
        self.path, self.offset, self.length = path, offset, length
        self.on_bytes, self.stop, self.throttle = on_bytes, stop, throttle
        self.sent = 0

    def __len__(self) -> int:
        # requests reads this for Content-Length (signed into the URL, so it must be exact).
        return self.length

    def __iter__(self) -> Iterator[bytes]:
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            remaining = self.length
            while remaining:
                if self.stop.is_set():
                    raise Cancelled()
                chunk = handle.read(min(BODY_CHUNK, remaining))
                if not chunk:
                    raise ClientError("file_changed", f"{self.path} got shorter while it was being uploaded")
                if self.throttle:
                    self.throttle.take(len(chunk), self.stop)
                remaining -= len(chunk)
                self.sent += len(chunk)
                self.on_bytes(len(chunk))
                yield chunk


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


# -- results --------------------------------------------------------------------------------


@dataclass
class FileOutcome:
    """What became of one local file."""

    file: LocalFile
    id: str | None = None
    status: str = "failed"  # "complete" or "failed"
    multipart: bool = False
    bytes_sent: int = 0
    resumed_bytes: int = 0
    error: ClientError | None = None

    def to_json(self) -> dict:
        """Return the outcome as the JSON `upload --json` prints."""
        return {
            "path": self.file.shown,
            "id": self.id,
            "file_name": self.file.name,
            "folder": self.file.folder,
            "size": self.file.size,
            "status": self.status,
            "multipart": self.multipart,
            "bytes_sent": self.bytes_sent,
            "resumed_bytes": self.resumed_bytes,
            "error": {"code": self.error.code, "message": self.error.message} if self.error else None,
        }


@dataclass
class UploadOptions:
    """The user's choices for an upload run."""

    tier: str | None = None
    tags: list[str] = field(default_factory=list)
    concurrency: int = 4
    part_size: int | None = None
    limit_rate: float | None = None  # bytes per second, all transfers together
    policy: RetryPolicy = field(default_factory=RetryPolicy)


@dataclass
class _Ticket:
    """Where and how to PUT one body (a whole small file, or one part)."""

    url: str
    headers: dict[str, str]


# -- the engine -----------------------------------------------------------------------------


class Uploader:
    """Upload local files through one s3drive server."""

    def __init__(self, api: Api, limits: dict, options: UploadOptions, progress: TransferProgress):
        self.api = api
        self.limits = limits
        self.options = options
        self.progress = progress
        self.cancel = Stop()
        self.throttle = Throttle(options.limit_rate) if options.limit_rate else None
        self._local = threading.local()
        self._bytes_lock = threading.Lock()

    # Public entry point ----------------------------------------------------------------------

    def run(self, files: list[LocalFile]) -> list[FileOutcome]:
        """Upload the files (small ones in batches, then large ones part by part); return outcomes."""
        threshold = int(self.limits["multipart_threshold"])
        outcomes = {id(f): FileOutcome(f) for f in files}
        small = [f for f in files if f.size <= threshold]
        large = [f for f in files if f.size > threshold]
        try:
            batch = max(1, int(self.limits.get("max_batch") or 1000))
            for start in range(0, len(small), batch):
                self._upload_batch(small[start : start + batch], outcomes)
            for f in large:
                self._run_multipart(f, outcomes[id(f)])
        except BaseException:
            # Ctrl-C (or a bug): stop every transfer in flight before leaving.
            self.cancel.set()
            raise
        return [outcomes[id(f)] for f in files]

    # Small files ---------------------------------------------------------------------------

    def spec(self, f: LocalFile, checksum: str | None = None) -> dict:
        """Return the FileSpec for a local file."""
        spec: dict[str, Any] = {"file_name": f.name, "content_type": f.content_type, "file_size": f.size}
        if checksum:
            spec["checksum_sha256"] = checksum
        if f.folder:
            spec["folder"] = f.folder
        if self.options.tier:
            spec["tier"] = self.options.tier
        if self.options.tags:
            spec["tags"] = self.options.tags
        return spec

    def _upload_batch(self, files: list[LocalFile], outcomes: dict[int, FileOutcome]) -> None:
        """Presign, PUT and confirm one batch of small files."""
        digests: dict[int, str] = {}  # hashing runs on the pool too: hashlib releases the GIL
        self._run_tasks(
            lambda index, stop: sha256_file(files[index].path),
            range(len(files)),
            lambda index, future: digests.__setitem__(index, future.result()),
        )
        checksums = [digests[index] for index in range(len(files))]
        specs = [self.spec(f, checksum) for f, checksum in zip(files, checksums, strict=True)]
        answer = self.api.presign(specs)

        failed_at = set()
        for failure in answer.get("failed", []):
            index = int(failure["index"])
            failed_at.add(index)
            error = failure.get("error") or {}
            self._fail(outcomes[id(files[index])], ApiError(error.get("code", "error"), error.get("message", "")))
        accepted = [f for index, f in enumerate(files) if index not in failed_at]
        tickets = answer.get("successful", [])
        if len(tickets) != len(accepted):
            raise ClientError("bad_response", "The presign answer does not match the files sent.")

        jobs = []
        for f, ticket, checksum in zip(accepted, tickets, _checksums_of(checksums, failed_at), strict=True):
            if ticket.get("multipart"):  # the server chose multipart for this one
                self._run_multipart(f, outcomes[id(f)], created=ticket)
            else:
                jobs.append((f, ticket, checksum))

        uploaded: dict[str, LocalFile] = {}  # record id -> file

        def landed(job: tuple, future: Future) -> None:
            try:
                uploaded[future.result()] = job[0]
            except ClientError as error:  # this file failed; the others go on
                self._fail(outcomes[id(job[0])], error)

        self._run_tasks(lambda job, stop: self._put_small(*job, outcomes[id(job[0])], stop), jobs, landed)
        if uploaded:
            self._confirm(uploaded, outcomes)

    def _put_small(self, f: LocalFile, ticket: dict, checksum: str, outcome: FileOutcome, stop: Stop) -> str:
        """PUT one small file; return the id of the record it landed under (re-signing makes a new one)."""
        if ticket.get("method", "PUT") != "PUT":
            raise ClientError("bad_response", "The server answered a POST form ticket; the client sends PUT.")
        state = {"id": ticket["id"]}

        def resign() -> _Ticket:
            # A single PUT URL cannot be re-signed; a new presign makes a new record (the old
            # pending one expires and releases its reservation).
            fresh = self.api.request("POST", "/api/files/upload/", json=self.spec(f, checksum))
            state["id"] = fresh["id"]
            return _Ticket(fresh["presigned_url"], fresh["headers"])

        task = self.progress.add_file(f.shown, f.size)
        try:
            self._put(f, 0, f.size, _Ticket(ticket["presigned_url"], ticket["headers"]), resign, task, outcome, stop)
        finally:
            self.progress.finish(task, counted=not stop.is_set())
        return state["id"]

    def _confirm(self, uploaded: dict[str, LocalFile], outcomes: dict[int, FileOutcome]) -> None:
        """Confirm a batch's uploads with one call."""
        answer = self.api.confirm(list(uploaded))
        for result in answer.get("results", []):
            f = uploaded.get(result.get("id"))
            if f is None:
                continue
            outcome = outcomes[id(f)]
            outcome.id = result["id"]
            if result.get("status") == "success":
                outcome.status = "complete"
                self.progress.log(f"uploaded {f.shown} -> {outcome.id}")
            else:
                code = {"missing": "object_missing", "mismatch": "integrity_mismatch"}.get(result["status"], "error")
                self._fail(outcome, ApiError(code, result.get("message", "")))

    # Large files ---------------------------------------------------------------------------

    def part_size_for(self, size: int) -> int:
        """Choose a part size: the requested or default one, raised to fit in 10,000 parts."""
        wanted = self.options.part_size or int(self.limits.get("default_part_size") or 16 * MIB)
        needed = math.ceil(size / MAX_PARTS)
        return max(MIN_PART_SIZE, wanted, math.ceil(needed / MIB) * MIB)

    def state_path(self, f: LocalFile) -> Path:
        """Return the resume state file of a local file (same path, size and mtime => same file)."""
        key = f"{self.api.base_url}\0{f.path}\0{f.size}\0{f.mtime_ns}"
        return uploads_dir() / f"{hashlib.sha256(key.encode()).hexdigest()}.json"

    def _run_multipart(self, f: LocalFile, outcome: FileOutcome, created: dict | None = None) -> None:
        outcome.multipart = True
        try:
            self._upload_multipart(f, outcome, created)
        except ClientError as error:
            self._fail(outcome, error)

    def _upload_multipart(self, f: LocalFile, outcome: FileOutcome, created: dict | None) -> None:
        """Upload one large file part by part, resuming a previous attempt when there is one."""
        state_path = self.state_path(f)
        state, done = self._resume(f, state_path, outcome) if created is None else (None, {})
        if outcome.status == "complete":
            return
        if state is None:
            upload = created or self.api.create_multipart({**self.spec(f), "part_size": self.part_size_for(f.size)})
            state = {
                "version": STATE_VERSION,
                "server": self.api.base_url,
                "path": str(f.path),
                "size": f.size,
                "mtime_ns": f.mtime_ns,
                "id": upload["id"],
                "upload_id": upload.get("upload_id"),
                "part_size": int(upload["part_size"]),
                "part_count": int(upload["part_count"]),
                "parts": {},
                "started_at": datetime.now(UTC).isoformat(),
            }
            self._save_state(state_path, state)
        outcome.id = state["id"]
        part_size, part_count = state["part_size"], state["part_count"]
        outcome.resumed_bytes = sum(_part_length(f.size, part_size, n) for n in done)
        remaining = [n for n in range(1, part_count + 1) if n not in done]

        def landed(n: int, future: Future) -> None:
            done[n] = future.result()  # a part that failed for good fails the file
            self.record_part(state_path, state, n, done[n])

        task = self.progress.add_file(f.shown, f.size, completed=outcome.resumed_bytes)
        try:
            for start in range(0, len(remaining), SIGN_WINDOW):
                window = remaining[start : start + SIGN_WINDOW]
                signed = self.api.sign_parts(state["id"], window)
                self._run_tasks(
                    lambda n, stop: self._put_part(f, state, n, _ticket_of(signed[n]), task, outcome, stop),  # noqa: B023
                    window,
                    landed,
                )
        except KeyboardInterrupt:
            self.cancel.set()
            raise
        finally:
            self.progress.finish(task, counted=not self.cancel.is_set())

        parts = [{"part_number": n, "etag": done[n]} for n in sorted(done)]
        record = self.api.complete_multipart(state["id"], parts)
        state_path.unlink(missing_ok=True)
        outcome.id, outcome.status = record.get("id", state["id"]), "complete"
        self.progress.log(f"uploaded {f.shown} -> {outcome.id} ({part_count} parts)")

    def _resume(self, f: LocalFile, state_path: Path, outcome: FileOutcome) -> tuple[dict | None, dict[int, str]]:
        """Return (state, {part_number: etag} already in S3) of an earlier attempt, or (None, {})."""
        state = read_json(state_path)
        if not state or state.get("version") != STATE_VERSION or state.get("server") != self.api.base_url:
            return None, {}
        try:
            status = self.api.multipart_status(state["id"])
        except ApiError as error:
            if error.status in (404, 409, 410):
                state_path.unlink(missing_ok=True)
                return None, {}
            raise
        if status.get("status") == "complete":
            # Interrupted after S3 assembled it but before we heard: nothing left to send.
            state_path.unlink(missing_ok=True)
            outcome.id, outcome.status, outcome.resumed_bytes = state["id"], "complete", f.size
            self.progress.log(f"already uploaded {f.shown} -> {outcome.id}")
            return None, {}
        if status.get("status") != "uploading":
            state_path.unlink(missing_ok=True)
            return None, {}
        state["part_size"] = int(status.get("part_size") or state["part_size"])
        state["part_count"] = int(status.get("part_count") or state["part_count"])
        listed = status.get("parts")
        if listed is None:  # a server without the listing: trust what we wrote down
            listed = [{"part_number": int(n), "etag": etag, "size": None} for n, etag in state["parts"].items()]
        done = {}
        for part in listed:
            n = int(part["part_number"])
            # A part of the wrong size (e.g. cut short) is sent again.
            if part.get("etag") and part.get("size") in (None, _part_length(f.size, state["part_size"], n)):
                done[n] = str(part["etag"])
        state["parts"] = {str(n): etag for n, etag in done.items()}
        self._save_state(state_path, state)
        return state, done

    def record_part(self, state_path: Path, state: dict, part_number: int, etag: str) -> None:
        """Write a finished part into the resume state (main thread only)."""
        state["parts"][str(part_number)] = etag
        self._save_state(state_path, state)

    @staticmethod
    def _save_state(path: Path, state: dict) -> None:
        write_private(path, json.dumps(state, indent=1).encode())

    def _put_part(
        self, f: LocalFile, state: dict, n: int, ticket: _Ticket, task, outcome: FileOutcome, stop: Stop
    ) -> str:
        """PUT one part; return its ETag."""
        offset = (n - 1) * state["part_size"]
        length = _part_length(f.size, state["part_size"], n)

        def resign() -> _Ticket:
            return _ticket_of(self.api.sign_parts(state["id"], [n])[n])

        return self._put(f, offset, length, ticket, resign, task, outcome, stop, what=f"part {n} of {f.shown}")

    # Transfers -----------------------------------------------------------------------------

    def _put(
        self,
        f: LocalFile,
        offset: int,
        length: int,
        ticket: _Ticket,
        resign: Callable[[], _Ticket],
        task,
        outcome: FileOutcome,
        stop: Stop,
        *,
        what: str | None = None,
    ) -> str:
        """PUT a slice of a file with retries and re-signing; return the ETag S3 answered."""
        what = what or f"upload of {f.shown}"
        bodies: list[FileSlice] = []

        def on_bytes(count: int) -> None:
            with self._bytes_lock:  # the parts of one file add to one outcome from several threads
                outcome.bytes_sent += count
            self.progress.advance(task, count)

        def send() -> requests.Response:
            if bodies:  # a retry: take back the bytes of the failed attempt from the bars
                self.progress.advance(task, -bodies[-1].sent)
            body = FileSlice(f.path, offset, length, on_bytes, stop, self.throttle)
            bodies.append(body)
            data = body if length else b""  # an empty iterable would be sent chunked
            return self._s3().put(ticket.url, data=data, headers=ticket.headers, timeout=S3_TIMEOUT)

        for resigns in range(MAX_RESIGNS + 1):
            response = send_with_retries(
                send, self.options.policy, what=what, sleep=lambda seconds: _sleep(stop, seconds), cancelled=stop.is_set
            )
            if response.ok:
                return (response.headers.get("ETag") or "").strip('"')
            if resigns < MAX_RESIGNS and is_expired_answer(response, ticket.url):
                ticket = resign()
                continue
            raise s3_error(response, what)
        raise AssertionError("unreachable")

    def _s3(self) -> requests.Session:
        session = getattr(self._local, "s3", None)
        if session is None:
            session = self._local.s3 = requests.Session()
        return session

    # Thread pool -----------------------------------------------------------------------------

    def _run_tasks(
        self,
        task: Callable[[Any, Stop], Any],
        items: Iterable[Any],
        landed: Callable[[Any, Future], Any],
    ) -> None:
        """Run task(item, stop) for each item, `concurrency` at a time; call landed(item, future)
        in this (main) thread as each finishes.

        If landed raises (a part failed for good), the group's other tasks are stopped and
        awaited before the error goes on; Ctrl-C stops every transfer, in every group.
        """
        stop = Stop(self.cancel)
        workers = max(1, self.options.concurrency)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="s3drive-upload") as pool:
            futures = {pool.submit(task, item, stop): item for item in items}
            pending = set(futures)
            try:
                while pending:
                    # A timeout keeps the main thread responsive to Ctrl-C.
                    finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                    for future in finished:
                        landed(futures[future], future)
            except BaseException as error:
                stop.set()
                if not isinstance(error, Exception):  # KeyboardInterrupt, SystemExit
                    self.cancel.set()
                for future in pending:
                    future.cancel()
                raise

    def _fail(self, outcome: FileOutcome, error: ClientError) -> None:
        outcome.status, outcome.error = "failed", error
        self.progress.log(f"failed {outcome.file.shown}: {error.code}: {error.message}", style="red")


def _part_length(size: int, part_size: int, part_number: int) -> int:
    return max(0, min(part_size, size - (part_number - 1) * part_size))


def _ticket_of(part: dict) -> _Ticket:
    return _Ticket(part["url"], dict(part.get("headers") or {}))


def _checksums_of(checksums: list[str], failed_at: set[int]) -> list[str]:
    return [checksum for index, checksum in enumerate(checksums) if index not in failed_at]


def _sleep(stop: Stop, seconds: float) -> None:
    """Sleep between retries, unless the transfer is stopped meanwhile."""
    if stop.wait(seconds):
        raise Cancelled()
