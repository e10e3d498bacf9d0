"""Confirming uploads nobody reports: stock Uppy's POST forms.

Stock `@uppy/aws-s3` makes no call after a form upload, and Uppy 6 refuses a form that would
redirect the browser to us afterwards (success_action_redirect). So each form signed for Uppy gets
a watch task on the task queue (tasks/watcher.py): it asks S3 soon after signing and then less
and less often, until the object arrives and the native confirm settles it (complete, or
rejected), or the form expires (then the sweeper settles it, as it does every pending upload).

Each check is a task message of its own, sent with a countdown: nothing lives in a web process,
and a worker that restarts gracefully hands its scheduled checks back to the broker. On Redis a
killed worker's checks come back too (acks_late); on the embedded broker they may be lost, and
the sweeper then confirms the upload once its form expires.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from flask import current_app

from ..errors import ObjectMissing, StorageUnavailable
from ..extensions import db
from ..models import File, FileStatus
from ..timeutil import utcnow
from .confirm import confirm_uploads

TASK_NAME = "s3drive.watch_upload"
# Checks at 1, 3, 7, 15, 31 s ... then every minute: an upload that took t seconds is confirmed
# by about 2t, and one that never comes is looked for once a minute until its form expires.
FIRST_CHECK_SECONDS = 1.0
BACKOFF = 2.0
MAX_INTERVAL_SECONDS = 60.0
# Confirm outcomes that mean "ask again later": not uploaded yet, or S3 did not answer.
_NOT_YET = (ObjectMissing, StorageUnavailable)


class Check(StrEnum):
    """What one check of a watched upload found."""

    SETTLED = "settled"  # confirmed (complete or rejected), or settled by someone else
    WAITING = "waiting"  # not there yet: check again later
    EXPIRED = "expired"  # the form expired: the sweeper settles it


def watch(user_id: str, file_id: str, expires_at: datetime) -> None:
    """Queue the first check of an upload; never raises (the sweeper settles what is never checked)."""
    try:
        current_app.extensions["celery"].send_task(
            TASK_NAME, args=[user_id, file_id, FIRST_CHECK_SECONDS], countdown=FIRST_CHECK_SECONDS
        )
    except Exception:  # the broker is down: the upload is confirmed by the sweeper once its form expires
        current_app.logger.warning("could not queue the watch of upload %s", file_id, exc_info=True)


def check_upload(user_id: str, file_id: str) -> Check:
    """Look for the upload's object once and confirm it if it arrived."""
    record = db.session.get(File, file_id)
    if record is None or record.status != FileStatus.PENDING:
        db.session.commit()
        return Check.SETTLED
    if record.expires_at is None or record.expires_at <= utcnow():
        db.session.commit()
        return Check.EXPIRED
    db.session.commit()
    [outcome] = confirm_uploads(user_id, ids=[file_id])
    return Check.WAITING if isinstance(outcome.error, _NOT_YET) else Check.SETTLED


def next_interval(interval: float) -> float:
    """Return the wait before the check after one that waited `interval`."""
    return min(interval * BACKOFF, MAX_INTERVAL_SECONDS)
