"""Content inspection as a task: one message inspects a few files (services/inspection.py).

Delivered twice (a worker killed mid-task, a message queued again by the sweeper), it settles
nothing twice: each file is claimed and settled by conditional updates.
"""

from __future__ import annotations

from collections import Counter

from celery import shared_task
from flask import current_app

from .. import logs
from ..errors import DatabaseUnavailable, StorageUnavailable
from ..services.inspection import inspect_file
from ..services.inspection_queue import TASK_NAME


@shared_task(
    name=TASK_NAME,
    autoretry_for=(StorageUnavailable, DatabaseUnavailable),
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=8,
)
def inspect(ids: list[str]) -> dict[str, int]:
    """Inspect each file of `ids` that is still waiting for it; return how many ended how."""
    logs.bind(file_ids=ids)  # on every line of this task
    outcomes = Counter(str(inspect_file(file_id)) for file_id in ids)
    current_app.logger.info(
        "inspect: %s",
        " ".join(f"{name}={count}" for name, count in sorted(outcomes.items())),
        extra={"outcome": dict(outcomes)},
    )
    return dict(outcomes)
