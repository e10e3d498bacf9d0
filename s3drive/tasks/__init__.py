"""The task queue: Celery bound to the Flask app (the pattern of Flask's own documentation).

Background work runs here, in worker processes, never in threads of a web process: a restarted
or killed process forgets nothing. Every task is acknowledged late (a worker killed mid-task
leaves it to be delivered again), idempotent (delivered twice, it does its work once), retried
with backoff on S3 and database outages, and time-limited.

The broker is S3DRIVE_BROKER_URL: Redis where several hosts serve, and by default an embedded
broker that needs no server of its own (kombu's SQLAlchemy transport on a SQLite file in the
instance folder), for the dev stack and single hosts.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from celery import Celery, Task
from celery import current_app as current_celery_app
from celery.signals import worker_process_init
from flask import Flask
from sqlalchemy.exc import OperationalError

from .. import logs
from ..errors import DatabaseUnavailable
from ..extensions import db
from ..services import watcher as upload_watcher
from ..storage import get_storage

# Seconds a task may run before the worker stops it (soft: an exception it can clean up after).
SOFT_TIME_LIMIT = 300
TIME_LIMIT = 330


def broker_url(app: Flask) -> str:
    """Return the configured broker, or the embedded one (a SQLite file in the instance folder)."""
    configured = app.config.get("BROKER_URL")
    if configured:
        return configured
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    return f"sqla+sqlite:///{Path(app.instance_path) / 'broker.sqlite3'}"


def _transport_options(url: str) -> dict:
    if url.startswith("redis"):
        # Redis redelivers a task whose worker died once visibility_timeout passes (acks_late); longer
        # than any task. Socket timeouts bound a publish to a Redis that stopped answering.
        return {"visibility_timeout": 3600, "socket_timeout": 2, "socket_connect_timeout": 2}
    # The embedded broker passes its options to SQLAlchemy's create_engine: none needed; it polls each second.
    return {}


def init_app(app: Flask) -> Celery:
    """Create the app's Celery, whose tasks run inside the Flask app context."""

    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            with app.app_context():
                try:
                    return self.run(*args, **kwargs)
                except OperationalError as error:
                    # The database went away or timed out: a DatabaseUnavailable, which tasks retry.
                    db.session.rollback()
                    raise DatabaseUnavailable("The database does not answer.") from error

    celery = Celery(app.name, task_cls=FlaskTask)
    celery.flask_app = app
    url = broker_url(app)
    celery.conf.update(
        broker_url=url,
        broker_connection_retry_on_startup=True,
        broker_transport_options=_transport_options(url),
        # A broker that is down must not hold a request (confirm queues inspections): a short connect
        # timeout and one quick retry, then the caller logs it and the sweeper queues again later.
        broker_connection_timeout=2,
        task_publish_retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.5, "interval_max": 0.5},
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=SOFT_TIME_LIMIT,
        task_time_limit=TIME_LIMIT,
        task_default_queue="s3drive",
        beat_schedule={
            "sweep": {"task": "s3drive.sweep", "schedule": timedelta(seconds=app.config["SWEEP_INTERVAL"])},
            # A run that waited longer than a few ticks in the queue is dropped: a later one does its work.
            "watch": {
                "task": upload_watcher.TASK_NAME,
                "schedule": upload_watcher.WATCH_INTERVAL,
                "options": {"expires": 10},
            },
        },
        beat_schedule_filename=str(Path(app.instance_path) / "celerybeat-schedule"),
        include=["s3drive.tasks.sweeper", "s3drive.tasks.inspection", "s3drive.tasks.watcher"],
    )
    celery.set_default()
    logs.init_celery(celery)
    app.extensions["celery"] = celery

    return celery


@worker_process_init.connect
def _forget_parent_connections(**kwargs) -> None:
    """In a prefork child: drop the database connections and S3 client the parent opened before forking.

    The worker imported the app (the default Celery app) first; two processes on one connection corrupt it.
    """
    app = getattr(current_celery_app, "flask_app", None)
    if app is None:
        return
    with app.app_context():
        db.engine.dispose(close=False)
        get_storage().forget_parent()
