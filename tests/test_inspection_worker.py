"""Content inspection by real worker processes (not eager mode): on moto (server mode) and on MiniStack
with AUTH=true, with the embedded broker and with Redis; a worker killed mid-inspection."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests
from helpers import wait_until
from live import Env, served_apps, start_worker, stop_worker, unavailable, worker_settings
from samples import Sample, samples
from sqlalchemy import select
from test_faults import TcpProxy

from s3drive.extensions import db
from s3drive.models import File
from s3drive.policy import preview_key

pytestmark = pytest.mark.e2e

# A Redis database per xdist process (8-15): tests running at once must not share a queue.
REDIS_URL = f"redis://127.0.0.1:6379/{8 + int(os.environ.get('PYTEST_XDIST_WORKER', 'gw0')[2:] or 0) % 8}"
SETTLE_TIMEOUT = 120


@pytest.fixture(scope="module")
def live_apps(database_url, tmp_path_factory) -> Iterator:
    with served_apps(database_url, "s3drive-inspect", tmp_path_factory) as get:
        yield get


@pytest.fixture(scope="module")
def sample_files(tmp_path_factory) -> list[Sample]:
    return samples(tmp_path_factory.mktemp("samples"))


def broker_url(kind: str, tmp_path: Path) -> str:
    if kind == "embedded":
        return f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}"
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).flushdb()
    except redis.RedisError as error:
        unavailable(f"no Redis at {REDIS_URL}: {error}", "task-queue test")
    return REDIS_URL


def upload_all(env: Env, files: list[Sample]) -> list[dict]:
    """Presign the files as one batch, PUT each, confirm them in one call; return the tickets."""
    specs = [{"file_name": s.name, "content_type": s.content_type, "file_size": len(s.data)} for s in files]
    response = env.api.post("/api/files/upload/", json={"files": specs})
    assert response.status_code == 200, response.text
    tickets = response.json()["successful"]
    assert len(tickets) == len(files), response.json()["failed"]
    for ticket, sample in zip(tickets, files, strict=True):
        put = requests.put(ticket["presigned_url"], data=sample.data, headers=ticket["headers"], timeout=30)
        assert put.status_code == 200, put.text
    confirmed = env.api.post("/api/files/confirm_uploads/", json={"ids": [t["id"] for t in tickets]})
    assert confirmed.status_code == 200 and confirmed.json()["total_successful"] == len(files), confirmed.text
    return tickets


def inspections(env: Env, tickets: list[dict]) -> list[dict]:
    return [env.api.get(f"/api/files/{t['id']}").json() for t in tickets]


def settled(env: Env, tickets: list[dict], log: Path) -> list[dict]:
    def done() -> bool:
        return all(f["inspection"]["state"] != "pending" for f in inspections(env, tickets))

    assert wait_until(done, timeout=SETTLE_TIMEOUT, interval=0.5), log.read_text(errors="replace")[-4000:]
    return inspections(env, tickets)


@pytest.mark.parametrize("endpoint", ["moto", "ministack"])
@pytest.mark.parametrize("broker", ["embedded", "redis"])
def test_a_worker_inspects_every_upload(live_apps, database_url, tmp_path, sample_files, endpoint, broker):
    url = broker_url(broker, tmp_path)
    live = live_apps(endpoint, "list" if endpoint == "ministack" else "head", INSPECT=True, BROKER_URL=url)
    env = Env.open(live)
    log = tmp_path / "worker.log"
    worker = start_worker(log, worker_settings(live, database_url, url, INSPECT="true"))
    try:
        tickets = upload_all(env, sample_files)
        files = settled(env, tickets, log)
    finally:
        stop_worker(worker)
    for sample, file in zip(sample_files, files, strict=True):
        inspection = file["inspection"]
        if sample.reason:
            assert (file["status"], inspection["reason"]["code"]) == ("rejected", sample.reason), (sample.name, file)
            assert env.head(file["s3_key"]) is None
            continue
        assert (file["status"], inspection["state"]) == ("complete", "passed"), (sample.name, inspection)
        if sample.kind is not None:
            assert env.head(preview_key(file["s3_key"]))["ContentType"] == "image/webp", sample.name
            assert inspection["thumbnail_url"]
        if sample.kind == "video":
            assert 2.5 <= inspection["duration_seconds"] <= 3.5
            assert (inspection["width"], inspection["height"]) == (64, 48)
    assert env.api.usage()["used_bytes"] == sum(len(s.data) for s in sample_files if not s.reason)


def test_a_prefork_pool_inspects_messages_side_by_side(live_apps, database_url, tmp_path):
    # As the Procfile deploys it: a prefork pool of 2, on Redis, with 4 messages of files in flight at
    # once. The children must not share the database connection or the S3 sockets their parent opened
    # before forking (two processes on one connection corrupt it, and inspections stall).
    url = broker_url("redis", tmp_path)
    live = live_apps("ministack", "list", INSPECT=True, BROKER_URL=url)
    env = Env.open(live)
    files = [Sample(f"note-{i}.txt", "text/plain", f"note {i}\n".encode() * 50) for i in range(100)]
    log = tmp_path / "worker.log"
    worker = start_worker(log, worker_settings(live, database_url, url, INSPECT="true"), processes=2)
    try:
        tickets = upload_all(env, files)
        done = settled(env, tickets, log)
    finally:
        stop_worker(worker)
    assert {f["inspection"]["state"] for f in done} == {"passed"}
    assert "Traceback" not in log.read_text(errors="replace")


class BlackHole:
    """A TCP port that accepts connections and never answers: an S3 that hangs mid-request."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.held.append(connection)

    def close(self) -> None:
        self.listener.close()
        for connection in self.held:
            connection.close()


@pytest.mark.parametrize("broker", ["embedded", "redis"])
def test_a_worker_killed_mid_inspection_leaves_it_to_another_exactly_once(
    live_apps, database_url, tmp_path, sample_files, broker
):
    url = broker_url(broker, tmp_path)
    live = live_apps("ministack", "list", INSPECT=True, BROKER_URL=url, INSPECTION_LEASE=3)
    env = Env.open(live)
    doomed = next(s for s in sample_files if s.reason == "executable_content")
    keeper = next(s for s in sample_files if s.name == "notes.txt")
    hole = BlackHole()
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    # The first worker's S3 hangs: it claims the first file and waits for bytes that never come.
    hanging = worker_settings(live, database_url, url, INSPECT="true", INSPECTION_LEASE="3", S3_TIMEOUT="120")
    hanging["S3DRIVE_S3_ENDPOINT_URL"] = f"http://127.0.0.1:{hole.port}"
    first = start_worker(first_log, hanging)
    second = None
    try:
        tickets = upload_all(env, [doomed, keeper])

        def claimed() -> bool:  # the message holds both files, in the order confirm settled them
            ids = [ticket["id"] for ticket in tickets]
            with live.app.app_context():
                found = db.session.scalars(select(File.inspection_claimed_at).where(File.id.in_(ids))).all()
                db.session.remove()
                return any(found)

        assert wait_until(claimed, timeout=60, interval=0.2), first_log.read_text(errors="replace")[-4000:]
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        assert [f["inspection"]["state"] for f in inspections(env, tickets)] == ["pending", "pending"]

        second = start_worker(
            second_log, worker_settings(live, database_url, url, INSPECT="true", INSPECTION_LEASE="3")
        )
        time.sleep(3.5)  # the dead worker's lease lapses
        # The scheduler's sweep finds the inspection nobody holds and queues it again.
        with live.app.app_context():
            live.app.extensions["celery"].send_task("s3drive.sweep")
        files = settled(env, tickets, second_log)
    finally:
        first.kill()
        if second is not None:
            stop_worker(second)
        hole.close()
    assert files[0]["status"] == "rejected" and files[0]["inspection"]["reason"]["code"] == "executable_content"
    assert files[1]["status"] == "complete" and files[1]["inspection"]["state"] == "passed"
    # Settled once: the bytes of the rejected file were released once, not twice.
    assert env.api.usage()["used_bytes"] == len(keeper.data)
    logs = first_log.read_text(errors="replace") + second_log.read_text(errors="replace")
    assert logs.count(f"inspection rejected {tickets[0]['id']}") == 1


@pytest.mark.parametrize("broker", ["embedded"])
def test_s3_away_mid_inspection_is_retried_until_it_answers(live_apps, database_url, tmp_path, sample_files, broker):
    # The worker's S3 refuses connections: the inspection gives its claim back and the task retries with
    # backoff, never settling on a guess; once S3 answers again the file passes, inspected once.
    url = broker_url(broker, tmp_path)
    live = live_apps("ministack", "list", INSPECT=True, BROKER_URL=url)
    env = Env.open(live)
    sample = next(s for s in sample_files if s.name == "plain.png")
    host, port = live.s3_url.rsplit(":", 1)
    proxy = TcpProxy(host.removeprefix("http://"), int(port))
    log = tmp_path / "worker.log"
    settings = worker_settings(live, database_url, url, INSPECT="true", S3_TIMEOUT="1")
    settings["S3DRIVE_S3_ENDPOINT_URL"] = f"http://127.0.0.1:{proxy.port}"  # not started: refused
    worker = start_worker(log, settings)
    try:
        [ticket] = upload_all(env, [sample])
        assert wait_until(lambda: "Retry in" in log.read_text(errors="replace"), timeout=60, interval=0.5), (
            log.read_text(errors="replace")[-4000:]
        )
        [file] = inspections(env, [ticket])
        assert file["inspection"]["state"] == "pending"
        assert env.api.get(f"/api/files/{ticket['id']}/download").status_code == 409
        proxy.start()
        [file] = settled(env, [ticket], log)
    finally:
        stop_worker(worker)
        proxy.stop(fault=False)
    assert file["status"] == "complete" and file["inspection"]["state"] == "passed"
    assert file["inspection"]["thumbnail_url"]
    assert env.api.get(f"/api/files/{ticket['id']}/download").status_code == 200
    assert env.api.usage()["used_bytes"] == len(sample.data)


def test_media_longer_than_the_limit_is_refused_by_the_worker(live_apps, database_url, tmp_path, sample_files):
    # FFmpeg probes the video through a presigned GET: 3 seconds, over an operator's 2-second limit.
    url = broker_url("embedded", tmp_path)
    live = live_apps("ministack", "list", INSPECT=True, BROKER_URL=url, MAX_MEDIA_SECONDS=2)
    env = Env.open(live)
    video = next(s for s in sample_files if s.kind == "video")
    log = tmp_path / "worker.log"
    worker = start_worker(log, worker_settings(live, database_url, url, INSPECT="true", MAX_MEDIA_SECONDS="2"))
    try:
        [file] = settled(env, upload_all(env, [video]), log)
    finally:
        stop_worker(worker)
    assert file["status"] == "rejected" and file["inspection"]["reason"]["code"] == "media_too_long"
    assert "3.0 s" in file["inspection"]["reason"]["message"]
    assert env.head(file["s3_key"]) is None and env.api.usage()["used_bytes"] == 0
