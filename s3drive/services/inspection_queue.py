"""Queueing inspections: a record that becomes complete is marked pending, and once the transaction
that completed it commits, its id goes to the task queue (never before: a worker must find it).

A message the broker loses, or that cannot be sent (the broker is down), delays an inspection but
never loses it: the record stays pending, and the sweeper queues again what nobody claimed within
the lease (services/inspection.py, requeue_stale).
"""

from __future__ import annotations

from collections.abc import Iterable

from flask import current_app, has_app_context
from sqlalchemy import event
from sqlalchemy.orm import Session

from ..models import File, InspectionState

TASK_NAME = "s3drive.inspect"
# Files per task message: few enough that two workers share a 1,000-file confirm evenly and the
# first files pass early; many enough that queueing them costs a confirm little (one message each).
TASK_CHUNK = 25
_SESSION_KEY = "s3drive.inspect_ids"
# What a record waiting for inspection holds: pending, unclaimed, nothing found yet (a re-inspection
# starts afresh; its preview is replaced or removed when it settles).
PENDING_AFRESH = {
    "inspection_state": InspectionState.PENDING,
    "inspection_claimed_at": None,
    "inspected_at": None,
    "inspection": None,
}


def enabled() -> bool:
    """Tell whether completed uploads are inspected (S3DRIVE_INSPECT)."""
    return bool(current_app.config["INSPECT"])


def mark_pending(record: File) -> None:
    """Mark a record that just became complete as waiting for inspection, to be queued on commit."""
    if not enabled():
        return
    for name, value in PENDING_AFRESH.items():
        setattr(record, name, value)
    session = Session.object_session(record)
    if session is not None:
        session.info.setdefault(_SESSION_KEY, []).append(record.id)


def send(ids: Iterable[str]) -> bool:
    """Queue inspections of these ids, TASK_CHUNK a message; return False when the broker refused.

    Never raises: the sweeper queues again what did not go (the records are pending).
    """
    ids = list(ids)
    celery = current_app.extensions["celery"]
    try:
        for start in range(0, len(ids), TASK_CHUNK):
            celery.send_task(TASK_NAME, args=[ids[start : start + TASK_CHUNK]])
    except Exception:  # any broker failure (connection, timeout, full disk): the sweeper retries
        current_app.logger.warning("could not queue inspection of %d files; the sweeper will", len(ids), exc_info=True)
        return False
    return True


@event.listens_for(Session, "after_commit")
def _send_committed(session: Session) -> None:
    ids = session.info.pop(_SESSION_KEY, None)
    if ids and has_app_context():
        send(dict.fromkeys(ids))


@event.listens_for(Session, "after_rollback")
def _forget_rolled_back(session: Session) -> None:
    session.info.pop(_SESSION_KEY, None)
