"""The periodic sweeper as a task (the schedule is in tasks/__init__.py's beat_schedule)."""

from __future__ import annotations

from celery import shared_task
from flask import current_app

from ..errors import DatabaseUnavailable, StorageUnavailable
from ..services.sweeper import COUNTED, sweep_until_done
from .broker import prune_delivered


@shared_task(
    name="s3drive.sweep",
    autoretry_for=(StorageUnavailable, DatabaseUnavailable),
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=5,
)
def sweep() -> dict[str, int]:
    """Run the sweeper until its batches are done, then prune the embedded broker; every step is a
    conditional update, so a second delivery (or a second sweeper) settles nothing twice."""
    counts = sweep_until_done()
    report = {name: getattr(counts, name) for name in COUNTED}
    report["broker_messages_pruned"] = prune_delivered(current_app.extensions["celery"].conf.broker_url)
    current_app.logger.info("sweep: %s", " ".join(f"{name}={value}" for name, value in report.items()))
    return report
