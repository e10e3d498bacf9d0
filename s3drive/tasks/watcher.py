"""The upload watcher as a periodic task (services/watcher.py): each run checks the forms that are due."""

from __future__ import annotations

from celery import shared_task

from ..errors import DatabaseUnavailable
from ..services.watcher import TASK_NAME, check_due


@shared_task(name=TASK_NAME, autoretry_for=(DatabaseUnavailable,), retry_backoff=True, max_retries=3)
def watch_uploads() -> dict[str, int]:
    """Look for the objects of the Uppy forms whose check is due; confirm those that arrived."""
    return check_due().checked
