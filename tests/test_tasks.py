"""The task queue: real worker processes on the embedded broker and on Redis (not eager mode)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import redis
from conftest import empty_tables, make_test_app
from helpers import wait_until
from live import start_worker, stop_worker, unavailable
from sqlalchemy import create_engine, func, select, text

from s3drive.app import close_app
from s3drive.extensions import db
from s3drive.models import RevokedToken
from s3drive.tasks import broker_url
from s3drive.timeutil import utcnow

pytestmark = pytest.mark.e2e

REDIS_URL = "redis://127.0.0.1:6379/{db}"


def test_the_embedded_broker_is_a_file_in_the_instance_folder(database_url):
    app = make_test_app(database_url, BROKER_URL=None)
    try:
        url = broker_url(app)
        assert url == f"sqla+sqlite:///{Path(app.instance_path) / 'broker.sqlite3'}"
        assert app.extensions["celery"].conf.broker_url == url
        assert app.extensions["celery"].conf.task_acks_late is True
    finally:
        close_app(app)
    configured = make_test_app(database_url, BROKER_URL="redis://127.0.0.1:6379/5")
    try:
        assert configured.extensions["celery"].conf.broker_url == "redis://127.0.0.1:6379/5"
    finally:
        close_app(configured)


def brokers(tmp_path: Path) -> dict[str, str]:
    return {"embedded": f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}", "redis": REDIS_URL.format(db=7)}


@pytest.mark.parametrize("broker", ["embedded", "redis"])
def test_a_worker_process_runs_the_sweep_task(tmp_path, database_url, broker):
    url = brokers(tmp_path)[broker]
    if broker == "redis":
        try:
            redis.Redis.from_url(url, socket_timeout=2).flushdb()
        except redis.RedisError as error:
            unavailable(f"no Redis at {url}: {error}", "task-queue test")
    app = make_test_app(database_url, BROKER_URL=url)
    empty_tables(app)
    with app.app_context():
        # What the sweeper's last step removes: revocations of tokens that expired long ago.
        db.session.add(RevokedToken(jti=uuid.uuid4().hex, token_type="access", expires_at=utcnow() - timedelta(days=2)))
        db.session.commit()
        app.extensions["celery"].send_task("s3drive.sweep")
    if broker == "embedded":  # a message delivered two days ago, to a worker that died: the file keeps it
        broker_db = create_engine(url.removeprefix("sqla+"))
        with broker_db.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO kombu_message (visible, timestamp, payload, version, queue_id)"
                    " SELECT 0, :old, 'x', 1, id FROM kombu_queue LIMIT 1"
                ),
                {"old": datetime.now() - timedelta(days=2)},
            )
    settings = {
        "S3DRIVE_DATABASE_URL": database_url,
        "S3DRIVE_BROKER_URL": url,
        "S3DRIVE_S3_BUCKET": "tasks-test",
        "S3DRIVE_S3_ENDPOINT_URL": "http://127.0.0.1:9",  # never called: nothing to settle in S3
        "S3DRIVE_JWT_SECRET_KEY": "tasks-" + "x" * 40,
        "S3DRIVE_PUBLIC_URL": "http://127.0.0.1:8000",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
    }
    worker = start_worker(tmp_path / "worker.log", settings)
    try:

        def revocations() -> int:
            with app.app_context():
                count = db.session.scalar(select(func.count()).select_from(RevokedToken))
                db.session.remove()
                return count

        assert wait_until(lambda: revocations() == 0, timeout=60, interval=0.5), (tmp_path / "worker.log").read_text()
        if broker == "embedded":

            def stale_messages() -> int:
                with broker_db.begin() as connection:
                    return connection.execute(text("SELECT count(*) FROM kombu_message WHERE payload = 'x'")).scalar()

            assert wait_until(lambda: stale_messages() == 0, timeout=30, interval=0.5)
            broker_db.dispose()
    finally:
        stop_worker(worker)
        close_app(app)
