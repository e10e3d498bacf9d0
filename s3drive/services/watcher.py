"""Confirming uploads nobody reports: stock Uppy's POST forms.

Stock `@uppy/aws-s3` makes no call after a form upload, and Uppy 6 refuses a form that would
redirect the browser to us afterwards (success_action_redirect). So each process watches the
forms it signed for Uppy: a background thread asks S3 (HeadObject, through the native confirm)
soon after signing and then less and less often, until the object arrives and is confirmed or
rejected, or the form expires (then the sweeper settles it). The thread runs only while there is
something to watch, and exits when its queue empties.

A process that stops forgets what it watched; the sweeper confirms those uploads once their
forms expire, as it does every pending upload.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from flask import Flask, current_app

from ..extensions import db
from ..timeutil import utcnow
from .confirm import confirm_uploads

FIRST_CHECK_SECONDS = 0.5
BACKOFF = 1.5
MAX_INTERVAL_SECONDS = 15.0
# Ids confirmed per call of the native confirm (HeadObject each, on the storage pool).
CHECK_BATCH = 200
EXTENSION_KEY = "s3drive.upload_watcher"
# Confirm outcomes that mean "ask again later": not uploaded yet, or S3 did not answer.
_NOT_YET = frozenset({"object_missing", "storage_unavailable"})


@dataclass(order=True)
class _Watch:
    due: float
    order: int
    user_id: str = field(compare=False)
    file_id: str = field(compare=False)
    expires_at: datetime = field(compare=False)
    interval: float = field(compare=False, default=FIRST_CHECK_SECONDS)


class UploadWatcher:
    """Watch uploads until S3 holds them, then confirm them; one per app and process."""

    def __init__(self, app: Flask):
        self.app = app
        self._queue: list[_Watch] = []
        self._order = itertools.count()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._generation = 0  # bumped by stop()
        self.checks = 0  # confirm calls made, for tests and metrics

    def watch(self, user_id: str, file_id: str, expires_at: datetime) -> None:
        """Start watching an upload; the first check comes after FIRST_CHECK_SECONDS."""
        item = _Watch(time.monotonic() + FIRST_CHECK_SECONDS, next(self._order), user_id, file_id, expires_at)
        with self._lock:
            heapq.heappush(self._queue, item)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="s3drive-upload-watcher", daemon=True)
                self._thread.start()
            else:
                self._wake.notify()

    def stop(self, timeout: float = 5.0) -> None:
        """Forget every watched upload and end the thread (the sweeper settles them later)."""
        with self._lock:
            self._queue.clear()
            self._generation += 1
            thread = self._thread
            self._wake.notify()
        if thread is not None:
            thread.join(timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is watched (tests); return whether that happened in time."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if self._thread is None:
                    return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._thread = None
                    return
                delay = self._queue[0].due - time.monotonic()
                if delay > 0:
                    self._wake.wait(delay)
                    continue
                now = time.monotonic()
                due = []
                while self._queue and self._queue[0].due <= now and len(due) < CHECK_BATCH:
                    due.append(heapq.heappop(self._queue))
                generation = self._generation
            again = self._check(due)
            with self._lock:
                if generation == self._generation:  # else stop() came meanwhile: drop them
                    for item in again:
                        heapq.heappush(self._queue, item)

    def _check(self, due: list[_Watch]) -> list[_Watch]:
        """Confirm the due uploads; return those to check again later."""
        by_user: dict[str, list[_Watch]] = defaultdict(list)
        for item in due:
            by_user[item.user_id].append(item)
        again = []
        with self.app.app_context():
            try:
                for user_id, items in by_user.items():
                    self.checks += 1
                    try:
                        outcomes = confirm_uploads(user_id, ids=[item.file_id for item in items])
                    except Exception:  # noqa: BLE001 - the database or S3 went away: try again later
                        db.session.rollback()
                        current_app.logger.warning("upload watcher: check failed, will retry", exc_info=True)
                        outcomes = None
                    now = utcnow()
                    for index, item in enumerate(items):
                        if outcomes is not None:
                            outcome = outcomes[index]
                            if outcome.code not in _NOT_YET or outcome.file is None:
                                continue  # settled: confirmed, rejected, or no longer pending
                            item.expires_at = outcome.file.expires_at or now
                        if item.expires_at > now:
                            item.interval = min(item.interval * BACKOFF, MAX_INTERVAL_SECONDS)
                            item.due = time.monotonic() + item.interval
                            again.append(item)
            finally:
                db.session.remove()
        return again


def get_watcher() -> UploadWatcher:
    """Return this app's watcher, creating it on first use."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    watcher = app.extensions.get(EXTENSION_KEY)
    if watcher is None:
        watcher = app.extensions.setdefault(EXTENSION_KEY, UploadWatcher(app))
    return watcher
