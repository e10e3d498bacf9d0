"""Admission control: a process never lets every request thread wait on a slow dependency.

gunicorn's threaded worker hands each connection to one of its threads. When S3 or the database
hangs, requests hold their threads until their timeouts (seconds): if every thread waits, even
/healthz queues behind them, and the orchestrator kills a worker that is merely waiting. So at
most MAX_IN_FLIGHT requests run at once (gunicorn.conf.py: threads - 1), which keeps a thread
free for /healthz. A request beyond the bound waits for a slot as long as the requests holding
them are busy (each started within STUCK_AFTER: they finish in milliseconds, and gunicorn's queue
holds the rest); once one of them has run longer (stuck on a dependency for seconds), it answers
503 server_busy with Retry-After within SLOT_WAIT, so the spare thread is free for /healthz again
and the queue drains instead of piling up.
"""

from __future__ import annotations

import threading
import time

from flask import Flask, g, request

from ..errors import ServerBusy

# Answered whatever the load: liveness must not depend on the dependencies.
EXEMPT_PATHS = frozenset({"/healthz"})
# Under load every slot is taken most of the time and frees within milliseconds: turning those
# requests away cost half the throughput. A request in a slot for STUCK_AFTER is waiting on
# something (a busy process serves one in tens of milliseconds); a waiting request looks again
# every SLOT_WAIT. /healthz waits at most about STUCK_AFTER + SLOT_WAIT for the spare thread.
SLOT_WAIT = 0.05
STUCK_AFTER = 0.5


class Admission:
    """A bound on the requests one process serves at once."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._slots = threading.BoundedSemaphore(capacity)
        self._lock = threading.Lock()
        self._started: dict[int, float] = {}  # thread -> when its request took its slot
        self.in_flight = 0

    def enter(self) -> bool:
        """Take a slot: wait for one while its holders are busy, refuse once one of them is stuck."""
        while not self._slots.acquire(timeout=SLOT_WAIT):
            if self._stuck():
                return False
        with self._lock:
            self.in_flight += 1
            self._started[threading.get_ident()] = time.monotonic()
        return True

    def leave(self) -> None:
        """Give a slot back."""
        with self._lock:
            self.in_flight -= 1
            self._started.pop(threading.get_ident(), None)
        self._slots.release()

    def _stuck(self) -> bool:
        """Tell whether a request holding a slot has run longer than STUCK_AFTER."""
        with self._lock:
            oldest = min(self._started.values(), default=None)
        return oldest is not None and time.monotonic() - oldest > STUCK_AFTER


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
