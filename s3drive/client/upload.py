"""Uploader: small files in presigned batches, large ones multipart with resume, an outcome per file.

Small files (up to the server's multipart_threshold) are presigned in one batch call per
max_batch files, each with its SHA-256 signed into the URL, PUT concurrently with exactly
the ticket's headers, then confirmed with one batch call. Larger files go multipart: parts
are signed in windows and PUT concurrently; a state file in the config dir remembers the
upload so that a rerun after Ctrl-C asks the status route which parts S3 already holds and
sends only the others. Reading the files is local_files' part, each PUT is transport's.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from ..chunks import chunked
from ..parts import DEFAULT_PART_SIZE, fitting_part_size, part_length, part_range
from .api import Api, RetryPolicy, batch_size
from .config import read_json, uploads_dir, write_private
from .errors import ApiError, ClientError
from .limits import policy_problem, profile_limits
from .local_files import LocalFile, sha256_file
from .progress import TransferProgress
from .transport import Stop, Ticket, Transfer, Transport

# Parts signed per call: enough to keep the workers busy, few enough that URLs stay fresh.
SIGN_WINDOW = 64
# Used when neither the user nor the server's limits name a part size.
STATE_VERSION = 1


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
    profile: str | None = None  # the server's upload profile (None: its default)


class Uploader:
    """Upload local files through one s3drive server."""

    def __init__(self, api: Api, limits: dict, options: UploadOptions, progress: TransferProgress):
        self.api = api
        self.limits = limits
        self.options = options
        self.progress = progress
        self.cancel = Stop()
        self.transport = Transport(options.policy, options.limit_rate)
        self._bytes_lock = threading.Lock()

    # Public entry point ----------------------------------------------------------------------

    def run(self, files: list[LocalFile]) -> list[FileOutcome]:
        """Upload the files (small ones in batches, then large ones part by part); return outcomes.

        Files the limits already refuse (too big, a refused type) fail first, without being hashed.
        """
        threshold = int(self.limits["multipart_threshold"])
        outcomes = {id(f): FileOutcome(f) for f in files}
        allowed = self._allowed(files, outcomes)
        small = [f for f in allowed if f.size <= threshold]
        large = [f for f in allowed if f.size > threshold]
        try:
            for batch in chunked(small, batch_size(self.limits)):
                self._upload_batch(batch, outcomes)
            for f in large:
                self._run_multipart(f, outcomes[id(f)])
        except BaseException:
            # Ctrl-C (or a bug): stop every transfer in flight before leaving.
            self.cancel.set()
            raise
        return [outcomes[id(f)] for f in files]

    def _allowed(self, files: list[LocalFile], outcomes: dict[int, FileOutcome]) -> list[LocalFile]:
        """Fail the files the limits (the profile's, with one) refuse; return the others."""
        limits = profile_limits(self.limits, self.options.profile)
        allowed = []
        for f in files:
            problem = policy_problem(f, limits, self.options.profile)
            if problem:
                self._fail(outcomes[id(f)], problem)
            else:
                allowed.append(f)
        return allowed

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
        if self.options.profile:
            spec["profile"] = self.options.profile
        return spec

    def _upload_batch(self, files: list[LocalFile], outcomes: dict[int, FileOutcome]) -> None:
        """Presign, PUT and confirm one batch of small files."""
        checksums = self._hash_all(files)
        answer = self.api.presign([self.spec(f, checksum) for f, checksum in zip(files, checksums, strict=True)])
        jobs = []
        for f, ticket, checksum in self._accepted(files, checksums, answer, outcomes):
            if ticket.get("multipart"):  # the server chose multipart for this one
                self._run_multipart(f, outcomes[id(f)], created=ticket)
            else:
                jobs.append((f, ticket, checksum))
        uploaded = self._put_batch(jobs, outcomes)
        if uploaded:
            self._confirm(uploaded, outcomes)

    def _hash_all(self, files: list[LocalFile]) -> list[str]:
        """Return the SHA-256 of each file, in order."""
        digests: dict[int, str] = {}  # hashing runs on the pool too: hashlib releases the GIL
        self._run_tasks(
            lambda index, stop: sha256_file(files[index].path),
            range(len(files)),
            lambda index, future: digests.__setitem__(index, future.result()),
        )
        return [digests[index] for index in range(len(files))]

    def _accepted(
        self, files: list[LocalFile], checksums: list[str], answer: dict, outcomes: dict[int, FileOutcome]
    ) -> list[tuple[LocalFile, dict, str]]:
        """Fail the files the presign answer refused; return (file, ticket, checksum) of the others."""
        failed_at = set()
        for failure in answer.get("failed", []):
            index = int(failure["index"])
            failed_at.add(index)
            error = failure.get("error") or {}
            self._fail(outcomes[id(files[index])], ApiError(error.get("code", "error"), error.get("message", "")))
        accepted = [index for index in range(len(files)) if index not in failed_at]
        tickets = answer.get("successful", [])
        if len(tickets) != len(accepted):
            raise ClientError("bad_response", "The presign answer does not match the files sent.")
        return [(files[index], ticket, checksums[index]) for index, ticket in zip(accepted, tickets, strict=True)]

    def _put_batch(self, jobs: list[tuple[LocalFile, dict, str]], outcomes: dict[int, FileOutcome]) -> dict:
        """PUT small files concurrently; return {record id: file} of those that landed."""
        uploaded: dict[str, LocalFile] = {}

        def landed(job: tuple, future: Future) -> None:
            try:
                uploaded[future.result()] = job[0]
            except ClientError as error:  # this file failed; the others go on
                self._fail(outcomes[id(job[0])], error)

        self._run_tasks(lambda job, stop: self._put_small(*job, outcomes[id(job[0])], stop), jobs, landed)
        return uploaded

    def _put_small(self, f: LocalFile, ticket: dict, checksum: str, outcome: FileOutcome, stop: Stop) -> str:
        """PUT one small file; return the id of the record it landed under (re-signing makes a new one)."""
        if ticket.get("method", "PUT") != "PUT":
            raise ClientError("bad_response", "The server answered a POST form ticket; the client sends PUT.")
        state = {"id": ticket["id"]}

        def resign() -> Ticket:
            # A single PUT URL cannot be re-signed; a new presign makes a new record (the old
            # pending one expires and releases its reservation).
            fresh = self.api.presign_file(self.spec(f, checksum))
            state["id"] = fresh["id"]
            return _file_ticket(fresh)

        task = self.progress.add_file(f.shown, f.size)
        try:
            transfer = self._transfer(f, 0, f.size, f"upload of {f.shown}", task, outcome)
            self.transport.put(transfer, _file_ticket(ticket), resign, stop)
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
        wanted = self.options.part_size or int(self.limits.get("default_part_size") or DEFAULT_PART_SIZE)
        return fitting_part_size(size, wanted)

    def state_path(self, f: LocalFile) -> Path:
        """Return the resume state file of a local file (same path, size and mtime => same file).

        An upload under a profile is another upload of the file: its record carries the profile.
        """
        key = f"{self.api.base_url}\0{f.path}\0{f.size}\0{f.mtime_ns}"
        if self.options.profile:
            key += f"\0{self.options.profile}"
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
            state = self._start_multipart(f, state_path, created)
        outcome.id = state["id"]
        outcome.resumed_bytes = sum(part_length(f.size, state["part_size"], n) for n in done)
        self._send_parts(f, state_path, state, done, outcome)

        parts = [{"part_number": n, "etag": done[n]} for n in sorted(done)]
        record = self.api.complete_multipart(state["id"], parts)
        state_path.unlink(missing_ok=True)
        outcome.id, outcome.status = record.get("id", state["id"]), "complete"
        self.progress.log(f"uploaded {f.shown} -> {outcome.id} ({state['part_count']} parts)")

    def _start_multipart(self, f: LocalFile, state_path: Path, created: dict | None) -> dict:
        """Start the upload (unless the presign answer already did) and write down its resume state."""
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
        return state

    def _send_parts(
        self, f: LocalFile, state_path: Path, state: dict, done: dict[int, str], outcome: FileOutcome
    ) -> None:
        """PUT the parts not yet done, a signed window at a time, writing each down as it lands."""
        remaining = [n for n in range(1, state["part_count"] + 1) if n not in done]

        def landed(n: int, future: Future) -> None:
            done[n] = future.result()  # a part that failed for good fails the file
            self.record_part(state_path, state, n, done[n])

        task = self.progress.add_file(f.shown, f.size, completed=outcome.resumed_bytes)
        try:
            for window in chunked(remaining, SIGN_WINDOW):
                signed = self.api.sign_parts(state["id"], window)
                self._run_tasks(partial(self._put_part, f, state, signed, task, outcome), window, landed)
        except KeyboardInterrupt:
            self.cancel.set()
            raise
        finally:
            self.progress.finish(task, counted=not self.cancel.is_set())

    def _resume(self, f: LocalFile, state_path: Path, outcome: FileOutcome) -> tuple[dict | None, dict[int, str]]:
        """Return (state, {part_number: etag} already in S3) of an earlier attempt, or (None, {})."""
        state = read_json(state_path)
        if not state or state.get("version") != STATE_VERSION or state.get("server") != self.api.base_url:
            return None, {}
        status = self._earlier_status(state["id"])
        if status.get("status") != "uploading":
            state_path.unlink(missing_ok=True)
            if status.get("status") == "complete":
                # Interrupted after S3 assembled it but before we heard: nothing left to send.
                outcome.id, outcome.status, outcome.resumed_bytes = state["id"], "complete", f.size
                self.progress.log(f"already uploaded {f.shown} -> {outcome.id}")
            return None, {}
        state["part_size"] = int(status.get("part_size") or state["part_size"])
        state["part_count"] = int(status.get("part_count") or state["part_count"])
        done = _parts_held(f.size, state, status.get("parts"))
        state["parts"] = {str(n): etag for n, etag in done.items()}
        self._save_state(state_path, state)
        return state, done

    def _earlier_status(self, file_id: str) -> dict:
        """Return the server's view of an earlier upload; {} when it is gone (so it starts afresh)."""
        try:
            return self.api.multipart_status(file_id)
        except ApiError as error:
            if error.status in (404, 409, 410):
                return {}
            raise

    def record_part(self, state_path: Path, state: dict, part_number: int, etag: str) -> None:
        """Write a finished part into the resume state (main thread only)."""
        state["parts"][str(part_number)] = etag
        self._save_state(state_path, state)

    @staticmethod
    def _save_state(path: Path, state: dict) -> None:
        write_private(path, json.dumps(state, indent=1).encode())

    def _put_part(
        self, f: LocalFile, state: dict, signed: dict[int, dict], task, outcome: FileOutcome, n: int, stop: Stop
    ) -> str:
        """PUT one part with the URL signed for it; return its ETag."""
        offset, length = part_range(f.size, state["part_size"], n)

        def resign() -> Ticket:
            return _part_ticket(self.api.sign_parts(state["id"], [n])[n])

        transfer = self._transfer(f, offset, length, f"part {n} of {f.shown}", task, outcome)
        return self.transport.put(transfer, _part_ticket(signed[n]), resign, stop)

    # Transfers -----------------------------------------------------------------------------

    def _transfer(self, f: LocalFile, offset: int, length: int, what: str, task, outcome: FileOutcome) -> Transfer:
        """Describe a slice of f to PUT, its bytes counted into the outcome and the progress bars."""

        def on_bytes(count: int) -> None:
            with self._bytes_lock:  # the parts of one file add to one outcome from several threads
                outcome.bytes_sent += count
            self.progress.advance(task, count)

        return Transfer(f.path, offset, length, what, on_bytes, lambda sent: self.progress.advance(task, -sent))

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
        # A one-file run reports its failure once, as the command's error line (cli.report_uploads).
        if self.progress.total_files > 1:
            self.progress.log(f"failed {outcome.file.shown}: {error.code}: {error.message}", style="red")


def _parts_held(size: int, state: dict, listed: list[dict] | None) -> dict[int, str]:
    """Return {part_number: etag} of the listed parts S3 holds whole; what state wrote down if none are listed."""
    if listed is None:  # a server without the listing: trust what we wrote down
        listed = [{"part_number": int(n), "etag": etag, "size": None} for n, etag in state["parts"].items()]
    done = {}
    for part in listed:
        n = int(part["part_number"])
        # A part of the wrong size (e.g. cut short) is sent again.
        if part.get("etag") and part.get("size") in (None, part_length(size, state["part_size"], n)):
            done[n] = str(part["etag"])
    return done


def _file_ticket(answer: dict) -> Ticket:
    """Return the ticket of a presign answer for one file."""
    return Ticket(answer["presigned_url"], answer["headers"])


def _part_ticket(part: dict) -> Ticket:
    """Return the ticket of one signed part."""
    return Ticket(part["url"], dict(part.get("headers") or {}))
