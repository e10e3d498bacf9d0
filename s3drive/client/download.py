"""Downloads: a presigned GET from the download route, streamed to disk, never outside the target dir."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import requests

from .api import NETWORK_ERRORS, Api, RetryPolicy, describe_network_error, send_with_retries
from .errors import Cancelled, ClientError
from .inspection import inspection_state, inspection_text
from .progress import TransferProgress
from .transport import S3_TIMEOUT, Stop, usable_answer

READ_CHUNK = 256 * 1024
MAX_NAME_BYTES = 255


def safe_file_name(name: str, fallback: str) -> str:
    """Return a plain file name from a record's name: no directories, no control chars, not . or ..

    The name comes from the server (and, before it, from whoever uploaded the file), so it
    is treated as hostile: only its last path component is kept.
    """
    base = name.replace("\\", "/").split("/")[-1]
    base = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C").strip()
    while len(base.encode()) > MAX_NAME_BYTES:
        base = base[:-1]
    if base in ("", ".", ".."):
        base = fallback
    return base


def new_part_file(directory: Path) -> tuple[Path, object]:
    """Create a fresh hidden file to download into, with the mode the user's umask gives new files.

    Not tempfile's: its files are 0600, and the download is renamed into place, so it would
    keep a mode that no other program (cp, curl, a browser) gives a file the user saves.
    """
    while True:
        path = directory / f".s3drive-{secrets.token_hex(8)}.part"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the kernel applies the umask
        except FileExistsError:
            continue
        return path, os.fdopen(fd, "wb")


def free_path(directory: Path, name: str) -> Path:
    """Return directory/name, or directory/"stem (n).ext" if that is taken (never overwrite)."""
    candidate = directory / name
    stem, suffix = os.path.splitext(name)
    number = 1
    while candidate.exists():
        candidate = directory / f"{stem} ({number}){suffix}"
        number += 1
    return candidate


def inside(directory: Path, path: Path) -> bool:
    """Return whether path is directly inside directory (after resolving links)."""
    return path.resolve().parent == directory.resolve()


@dataclass
class Downloaded:
    """A downloaded file."""

    id: str
    path: Path
    size: int


@dataclass
class Downloader:
    """Download file records of the signed-in user into a directory."""

    api: Api
    directory: Path
    progress: TransferProgress
    policy: RetryPolicy
    cancel: Stop = field(default_factory=Stop)  # set by Ctrl-C: stops the transfer in flight
    # Downloads run one at a time, so one session (and its connection) serves them all.
    session: requests.Session = field(default_factory=requests.Session)

    def download(self, file_id: str, record: dict) -> Downloaded:
        """Fetch one file's bytes, check size and checksum, and move it into place."""
        if record.get("status") != "complete":
            refused = inspection_text(record) if inspection_state(record) == "rejected" else ""
            if refused:
                name = record.get("file_name") or file_id
                raise ClientError("invalid_state", f"{name} ({file_id}) cannot be downloaded: {refused}")
            raise ClientError("invalid_state", f"File {file_id} is {record.get('status')}, not complete.")
        name = safe_file_name(str(record.get("file_name") or ""), file_id)
        expected = int(record.get("size") or 0)
        task = self.progress.add_file(name, expected)
        temp, handle = new_part_file(self.directory)
        try:
            with handle:
                digest = self._fetch(file_id, handle, task, expected)
            if temp.stat().st_size != expected:
                raise ClientError(
                    "integrity_mismatch", f"{name}: got {temp.stat().st_size} bytes, the record says {expected}."
                )
            checksum = record.get("checksum_sha256")
            if checksum and base64.b64encode(digest).decode() != checksum:
                raise ClientError("integrity_mismatch", f"{name}: the SHA-256 differs from the record's.")
            target = free_path(self.directory, name)
            if not inside(self.directory, target):
                raise ClientError("unsafe_name", f"Refusing to write {target} outside {self.directory}.")
            os.replace(temp, target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        finally:
            self.progress.finish(task)
        return Downloaded(file_id, target, expected)

    def _fetch(self, file_id: str, handle, task, expected: int) -> bytes:
        """Stream the object into handle, starting over on network errors; return its SHA-256."""
        what = f"download of {file_id}"
        url = self.api.download_url(file_id)["url"]
        resigned = False
        attempt = 0
        while True:
            handle.seek(0)
            handle.truncate()
            digest = hashlib.sha256()
            written = 0
            try:
                response = send_with_retries(
                    lambda url=url: self.session.get(url, stream=True, timeout=S3_TIMEOUT),
                    self.policy,
                    what=what,
                    sleep=self.cancel.pause,
                    cancelled=self.cancel.is_set,
                )
                with response:
                    if not usable_answer(response, url, what, can_resign=not resigned):
                        url, resigned = self.api.download_url(file_id)["url"], True
                        continue
                    for chunk in response.iter_content(READ_CHUNK):
                        if self.cancel.is_set():
                            raise Cancelled()
                        handle.write(chunk)
                        digest.update(chunk)
                        written += len(chunk)
                        self.progress.advance(task, len(chunk))
                return digest.digest()
            except NETWORK_ERRORS as error:
                # The body broke off mid-way: start the file over (bars too).
                self.progress.advance(task, -written)
                if attempt >= self.policy.retries:
                    raise ClientError("network_error", f"{what}: {describe_network_error(error)}") from None
                self.cancel.pause(self.policy.delay(attempt))
                attempt += 1
