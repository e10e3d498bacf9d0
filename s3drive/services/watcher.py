"""Confirming uploads nobody reports: stock Uppy's POST forms.

Stock `@uppy/aws-s3` makes no call after a form upload, and Uppy 6 refuses a form that would
redirect the browser to us afterwards (success_action_redirect). So each process watches the
forms it signed for Uppy: a background thread asks S3 soon after signing and then less and less
often (one ListObjectsV2 page per user and check, from that user's oldest watched batch on: batch
ids sort by time), until the object arrives and the native confirm settles it (complete, or
rejected), or the form expires (then the sweeper settles it). The thread runs only while there is
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

from ..errors import ObjectMissing, StorageUnavailable
from ..extensions import db
from ..policy import parse_key, user_prefix
from ..storage import ObjectInfo, Storage, get_storage
from ..timeutil import utcnow
from .confirm import confirm_uploads

# Checks at 1, 3, 7, 15, 31 s ... then every minute: an upload that took t seconds is confirmed
# by about 2t, and one that never comes is looked for once a minute until its form expires.
FIRST_CHECK_SECONDS = 1.0
BACKOFF = 2.0
MAX_INTERVAL_SECONDS = 60.0
TICK_SECONDS = 0.5
# Uploads checked at once (one listing per user, the users' listings concurrently).
CHECK_BATCH = 1000
LIST_PAGE = 1000  # keys per listing (S3's maximum)
EXTENSION_KEY = "s3drive.upload_watcher"
# Confirm outcomes that mean "ask again later": not uploaded yet, or S3 did not answer.
_NOT_YET = (ObjectMissing, StorageUnavailable)


@dataclass(order=True)
class _Watch:
    due: float
    order: int
    user_id: str = field(compare=False)
    file_id: str = field(compare=False)
    s3_key: str = field(compare=False)
    user_prefix: str = field(compare=False)  # the user's keys: <prefix>users/<user id>/
    list_from: str = field(compare=False)  # sorts just before the upload's batch: <user prefix><batch id>
    expires_at: datetime = field(compare=False)
    interval: float = field(compare=False)


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
        self.checks = 0  # S3 requests made (listings and HeadObject)

    def watch(self, user_id: str, file_id: str, s3_key: str, expires_at: datetime) -> None:
        """Watch an upload until its form expires; the first check comes after FIRST_CHECK_SECONDS."""
        key = parse_key(s3_key)
        users_keys = user_prefix(key.prefix, key.user_id)
        first = FIRST_CHECK_SECONDS
        item = _Watch(
            time.monotonic() + first,
            next(self._order),
            user_id,
            file_id,
            s3_key,
            users_keys,
            users_keys + key.batch_id,  # sorts just before the batch's keys
            expires_at,
            first,
        )
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
        next_pass = 0.0
        while True:
            with self._lock:
                if not self._queue:
                    self._thread = None
                    return
                now = time.monotonic()
                # A pass also takes what falls due within the next tick, and passes are a tick apart, so
                # one listing covers each user's uploads that fall due close together.
                delay = max(self._queue[0].due - now, next_pass - now)
                if delay > 0:
                    self._wake.wait(delay)
                    continue
                horizon = now + TICK_SECONDS
                due = []
                while self._queue and self._queue[0].due <= horizon and len(due) < CHECK_BATCH:
                    due.append(heapq.heappop(self._queue))
                generation = self._generation
                next_pass = horizon
            try:
                again = self._check(due)
            except Exception:  # a bug must not end the watching: log it, try again later
                self.app.logger.exception("upload watcher: check failed")
                again = self._later(due)
            with self._lock:
                if generation == self._generation:  # else stop() came meanwhile: drop them
                    for item in again:
                        heapq.heappush(self._queue, item)

    def _check(self, due: list[_Watch]) -> list[_Watch]:
        """Look for the due uploads' objects and confirm those that arrived; return the rest.

        One listing per user covers all of that user's due uploads; an object that is not there
        yet costs no database work.
        """
        by_user: dict[str, list[_Watch]] = defaultdict(list)
        for item in due:
            by_user[item.user_id].append(item)
        again: list[_Watch] = []
        with self.app.app_context():
            try:
                storage = get_storage()
                # The store enforces what was signed (S3_CONFIRM=list): a listing's size suffices, as for
                # the native confirm. Otherwise confirm runs HeadObject on what the listing found.
                trust_listing = current_app.config["S3_CONFIRM"] == "list"
                looked = storage.map_concurrently(lambda user_id: self._look(storage, by_user[user_id]), list(by_user))
                for user_id, items in by_user.items():
                    seen = looked[user_id]
                    if isinstance(seen, StorageUnavailable):
                        again.extend(items)
                        continue
                    arrived = [item for item in items if isinstance(seen.get(item.s3_key), ObjectInfo)]
                    again.extend(item for item in items if item not in arrived)
                    if arrived:
                        observed = {
                            item.s3_key: seen[item.s3_key]
                            for item in arrived
                            if trust_listing or seen[item.s3_key].detailed
                        }
                        again.extend(self._confirm(user_id, arrived, observed))
            finally:
                db.session.remove()
        return self._later(again)

    def _look(self, storage: Storage, items: list[_Watch]) -> dict[str, ObjectInfo | None]:
        """List the user's keys from the oldest item's batch on (batch ids sort by time); HeadObject
        the items that listing page did not reach."""
        self.checks += 1
        found, last = storage.list_after(items[0].user_prefix, min(item.list_from for item in items), LIST_PAGE)
        seen: dict[str, ObjectInfo | None] = {}
        for item in items:
            if last is None or item.s3_key <= last:
                seen[item.s3_key] = found.get(item.s3_key)
            else:
                self.checks += 1
                seen[item.s3_key] = storage.head_object(item.s3_key)
        return seen

    @staticmethod
    def _later(items: list[_Watch]) -> list[_Watch]:
        """Schedule the next check of each item whose form has not expired; drop the others."""
        now = utcnow()
        later = [item for item in items if item.expires_at > now]
        for item in later:
            item.interval = min(item.interval * BACKOFF, MAX_INTERVAL_SECONDS)
            item.due = time.monotonic() + item.interval
        return later

    def _confirm(self, user_id: str, items: list[_Watch], observed: dict[str, ObjectInfo]) -> list[_Watch]:
        """Confirm one user's arrived uploads (confirm looks again at those not in `observed`);
        return those to check again."""
        try:
            outcomes = confirm_uploads(user_id, ids=[item.file_id for item in items], observed=observed)
        except Exception:  # the database went away: try again later
            db.session.rollback()
            current_app.logger.warning("upload watcher: confirm failed, will retry", exc_info=True)
            return items
        return [item for item, outcome in zip(items, outcomes, strict=True) if isinstance(outcome.error, _NOT_YET)]


def get_watcher() -> UploadWatcher:
    """Return this app's watcher, creating it on first use."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    watcher = app.extensions.get(EXTENSION_KEY)
    if watcher is None:
        watcher = app.extensions.setdefault(EXTENSION_KEY, UploadWatcher(app))
    return watcher


def stop(app: Flask) -> None:
    """Stop the app's watcher, if it started one (close_app)."""
    watcher = app.extensions.get(EXTENSION_KEY)
    if watcher is not None:
        watcher.stop()
