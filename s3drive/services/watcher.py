"""Confirming uploads nobody reports: stock Uppy's POST forms.

Stock `@uppy/aws-s3` makes no call after a form upload, and Uppy 6 refuses a form that would
redirect the browser to us afterwards (success_action_redirect). So each form signed for Uppy is
watched: its record carries `watch_at`, when to look for its object in S3 next. One periodic task
(tasks/watcher.py, every WATCH_INTERVAL seconds) takes the forms that are due, looks for their
objects and confirms those that arrived, as the native confirm does (complete, or rejected); the
others are looked for again later, less and less often, until their form expires (then the sweeper
settles them, as it does every pending upload).

The schedule lives in the database, not in task messages: signing a form writes its record and
nothing else (the Uppy params route is a hot path), and a worker killed mid-check, or a broker that
lost its messages, delays a check by one tick but never forgets it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import bindparam, select, update

from ..errors import ObjectMissing, StorageUnavailable
from ..extensions import db
from ..models import File, FileStatus
from ..timeutil import utcnow
from .confirm import confirm_uploads

TASK_NAME = "s3drive.watch_uploads"
# Seconds between two runs of the watch task (its scheduler entry).
WATCH_INTERVAL = 1.0
# A form is looked for when it is about 1, 2, 4, 8 ... s old, then every minute: an upload that took
# t seconds is confirmed by about 2t, and one that never comes costs a look a minute until it expires.
FIRST_CHECK_SECONDS = 1.0
MAX_INTERVAL_SECONDS = 60.0
# Forms one run takes at most (the next run takes the rest, oldest due first).
BATCH = 500
# Confirm outcomes that mean "ask again later": not uploaded yet, or S3 did not answer.
_NOT_YET = (ObjectMissing, StorageUnavailable)


class Check(StrEnum):
    """What one check of a watched upload found."""

    SETTLED = "settled"  # confirmed (complete or rejected), or settled by someone else
    WAITING = "waiting"  # not there yet: check again later
    EXPIRED = "expired"  # the form expired: the sweeper settles it


def first_check(now: datetime) -> datetime:
    """Return when the watcher first looks for the object of a form signed at `now`."""
    return now + timedelta(seconds=FIRST_CHECK_SECONDS)


def next_check(created_at: datetime, now: datetime) -> datetime:
    """Return when to look again for a form signed at created_at that was not there at `now`."""
    age = (now - created_at).total_seconds()
    return now + timedelta(seconds=min(max(age, FIRST_CHECK_SECONDS), MAX_INTERVAL_SECONDS))


@dataclass
class WatchRun:
    """What one run of the watcher did: forms looked for, and how each ended."""

    checked: dict[str, int] = field(default_factory=lambda: {check.value: 0 for check in Check})

    def count(self, check: Check, number: int = 1) -> None:
        self.checked[check.value] += number


_DUE = (
    select(File.id, File.user_id, File.status, File.created_at, File.expires_at)
    .where(File.watch_at.is_not(None), File.watch_at <= bindparam("now", type_=File.watch_at.type))
    .order_by(File.watch_at)
    .limit(bindparam("limit"))
)


def check_due(now: datetime | None = None, limit: int = BATCH) -> WatchRun:
    """Look for the objects of the forms whose check is due and confirm those that arrived."""
    now = now or utcnow()
    run = WatchRun()
    due = db.session.execute(_DUE, {"now": now, "limit": limit}).all()
    waiting: dict[str, list[str]] = defaultdict(list)
    done: list[str] = []
    later: list[dict] = []
    for row in due:
        if row.status != FileStatus.PENDING:
            done.append(row.id)
            run.count(Check.SETTLED)
        elif row.expires_at is None or row.expires_at <= now:
            done.append(row.id)
            run.count(Check.EXPIRED)
        else:
            waiting[row.user_id].append(row.id)
            later.append({"file_id": row.id, "next": next_check(row.created_at, now)})
    # Scheduled before looking: a run that dies midway leaves the rest due again at their next check.
    _reschedule(later)
    _stop_watching(done)
    db.session.commit()
    for user_id, ids in waiting.items():
        settled = [o.id for o in confirm_uploads(user_id, ids=ids) if not isinstance(o.error, _NOT_YET)]
        _stop_watching(settled)
        db.session.commit()
        run.count(Check.SETTLED, len(settled))
        run.count(Check.WAITING, len(ids) - len(settled))
    return run


def check_upload(user_id: str, file_id: str) -> Check:
    """Look for one watched upload's object now and confirm it if it arrived."""
    record = db.session.get(File, file_id)
    if record is None or record.status != FileStatus.PENDING:
        db.session.commit()
        return Check.SETTLED
    if record.expires_at is None or record.expires_at <= utcnow():
        db.session.commit()
        return Check.EXPIRED
    db.session.commit()
    [outcome] = confirm_uploads(user_id, ids=[file_id])
    if isinstance(outcome.error, _NOT_YET):
        return Check.WAITING
    _stop_watching([file_id])
    db.session.commit()
    return Check.SETTLED


# Core, not ORM: an executemany of one UPDATE per form.
_RESCHEDULE = update(File.__table__).where(File.id == bindparam("file_id")).values(watch_at=bindparam("next"))


def _reschedule(rows: list[dict]) -> None:
    if rows:
        db.session.execute(_RESCHEDULE, rows)


def _stop_watching(ids: list[str]) -> None:
    if ids:
        db.session.execute(
            update(File).where(File.id.in_(ids)).values(watch_at=None).execution_options(synchronize_session=False)
        )
