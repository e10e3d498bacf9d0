"""The upload watcher's checks as tasks (services/watcher.py): each check queues the next one."""

from __future__ import annotations

from celery import shared_task

from ..errors import DatabaseUnavailable
from ..services.watcher import TASK_NAME, Check, check_upload, next_interval


@shared_task(
    name=TASK_NAME,
    autoretry_for=(DatabaseUnavailable,),
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=10,
)
def watch_upload(user_id: str, file_id: str, interval: float) -> str:
    """Check a watched upload; while its object has not arrived, check again later (backing off)."""
    found = check_upload(user_id, file_id)
    if found == Check.WAITING:
        later = next_interval(interval)
        watch_upload.apply_async(args=[user_id, file_id, later], countdown=later)
    return str(found)
