"""Admission control: a process never lets every request thread wait on a slow dependency.

gunicorn's threaded worker hands each connection to one of its threads. When S3 or the database
hangs, requests hold their threads until their timeouts (seconds): if every thread waits, even
/healthz queues behind them, and the orchestrator kills a worker that is merely waiting. So at
most MAX_IN_FLIGHT requests run at once (gunicorn.conf.py: threads - 1), which keeps a thread
free for /healthz. A request beyond the bound waits up to SLOT_WAIT for a slot, then answers 503
server_busy with Retry-After: a busy server (every slot held by requests that finish in
milliseconds) serves it a moment later, a stuck one (slots held by requests waiting seconds on a
dependency) turns it away within SLOT_WAIT and lets the queue drain instead of piling up.
"""

from __future__ import annotations

import threading

from flask import Flask, g, request

from ..errors import ServerBusy

# Answered whatever the load: liveness must not depend on the dependencies.
EXEMPT_PATHS = frozenset({"/healthz"})
# How long a request beyond the bound waits for a slot. Under load every slot is taken most of the
# time and frees within milliseconds (turning those requests away cost half the throughput); while
# a dependency hangs none frees for seconds. /healthz waits at most this long for the spare thread.
SLOT_WAIT = 0.1


class Admission:
    """A bound on the requests one process serves at once."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._slots = threading.BoundedSemaphore(capacity)
        self._lock = threading.Lock()
        self.in_flight = 0

    def enter(self) -> bool:
        """Take a slot, waiting up to SLOT_WAIT for one to free."""
        if not self._slots.acquire(timeout=SLOT_WAIT):
            return False
        with self._lock:
            self.in_flight += 1
        return True

    def leave(self) -> None:
        """Give a slot back."""
        with self._lock:
            self.in_flight -= 1
        self._slots.release()


def init_app(app: Flask) -> None:
    """Bound the requests served at once to S3DRIVE_MAX_IN_FLIGHT (0: no bound)."""
    capacity = app.config.get("MAX_IN_FLIGHT") or 0
    if capacity <= 0:
        return
    admission = app.extensions["s3drive.admission"] = Admission(capacity)

    @app.before_request
    def admit() -> None:
        if request.path in EXEMPT_PATHS:
            return
        if not admission.enter():
            raise ServerBusy(retry_after=1, details={"max_in_flight": capacity})
        g.admitted = True

    @app.teardown_request
    def leave(_error: BaseException | None) -> None:
        if g.pop("admitted", False):
            admission.leave()
