"""A worker whose every thread waits on a dead S3 still answers /healthz within a second.

In process (bounded in-flight requests) and in a real gunicorn (the Procfile's gunicorn.conf.py,
gthread with 4 threads), with an S3 that accepts connections and never answers (a real socket).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from conftest import empty_tables, make_test_app, register_and_login
from helpers import spec, wait_until
from live import REPO_ROOT
from test_timeouts import silent_s3

from s3drive.api.admission import SLOT_WAIT, STUCK_AFTER, Admission
from s3drive.app import close_app
from s3drive.dev import ministack

SECRET = "saturation-" + "x" * 40


def test_requests_beyond_the_bound_answer_server_busy_at_once(app_on):
    with silent_s3() as url:
        app = app_on(S3_ENDPOINT_URL=url, S3_ADDRESSING_STYLE="path", S3_TIMEOUT=2, MAX_IN_FLIGHT=2)
        client = app.test_client()
        auth = register_and_login(client, "alice")
        ticket = client.post("/api/files/upload/", json=spec("a.jpg"), headers=auth).get_json()

        def confirm():
            return app.test_client().post("/api/files/confirm_upload/", json={"id": ticket["id"]}, headers=auth)

        with ThreadPoolExecutor(2) as pool:
            hanging = [pool.submit(confirm) for _ in range(2)]
            assert wait_until(lambda: _in_flight(app) == 2, timeout=10)
            started = time.monotonic()
            busy = client.get("/api/files/usage", headers=auth)
            assert time.monotonic() - started < 1
            assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
            assert busy.get_json()["error"] == {
                "code": "server_busy",
                "message": busy.get_json()["error"]["message"],
                "details": {"max_in_flight": 2},
            }
            assert client.get("/healthz").status_code == 200  # never turned away
            answers = [future.result(timeout=30) for future in hanging]
        assert [a.get_json()["error"]["code"] for a in answers] == ["storage_unavailable"] * 2
        # The slots came back.
        assert client.get("/api/files/usage", headers=auth).status_code == 200


def _in_flight(app) -> int:
    return app.extensions["s3drive.admission"].in_flight


@pytest.mark.e2e
def test_healthz_answers_within_a_second_while_every_request_waits_on_a_dead_s3(tmp_path, database_url):
    app = make_test_app(database_url)
    empty_tables(app)
    close_app(app)
    with silent_s3() as s3_url, gunicorn(tmp_path, database_url, s3_url) as base:
        auth = _login(base)
        ticket = requests.post(base + "/api/files/upload/", json=spec("a.jpg"), headers=auth, timeout=10).json()

        def confirm() -> tuple[int, dict, float]:
            started = time.monotonic()
            answer = requests.post(
                base + "/api/files/confirm_upload/", json={"id": ticket["id"]}, headers=auth, timeout=60
            )
            return (
                answer.status_code,
                {**answer.json(), "retry": answer.headers.get("Retry-After")},
                time.monotonic() - started,
            )

        with ThreadPoolExecutor(12) as pool:
            flood = [pool.submit(confirm) for _ in range(12)]
            health = []
            for _ in range(10):
                started = time.monotonic()
                assert requests.get(base + "/healthz", timeout=5).status_code == 200
                health.append(time.monotonic() - started)
                time.sleep(0.2)
            results = [future.result(timeout=60) for future in flood]
    assert max(health) < 1, health
    codes = sorted(body["error"]["code"] for _, body, _ in results)
    assert {status for status, _, _ in results} == {503}, results
    # At most 3 (threads - 1) at once waited on S3; the others were turned away at once.
    assert codes.count("storage_unavailable") >= 3 and codes.count("server_busy") >= 6, codes
    assert set(codes) == {"storage_unavailable", "server_busy"}
    assert all(body["retry"] for _, body, _ in results)
    assert max(took for _, _, took in results) < 10, results


class gunicorn:
    """gunicorn as the Procfile starts it (gunicorn.conf.py), one worker of 4 threads."""

    def __init__(self, tmp_path: Path, database_url: str, s3_url: str):
        self.port = ministack.free_port()
        self.log = tmp_path / "gunicorn.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("S3DRIVE_", "AWS_"))}
        env.update(
            PORT=str(self.port),
            WEB_CONCURRENCY="1",
            GUNICORN_THREADS="4",
            S3DRIVE_DATABASE_URL=database_url,
            S3DRIVE_S3_BUCKET="saturation",
            S3DRIVE_S3_ENDPOINT_URL=s3_url,
            S3DRIVE_S3_ADDRESSING_STYLE="path",
            S3DRIVE_S3_TIMEOUT="2",
            S3DRIVE_JWT_SECRET_KEY=SECRET,
            S3DRIVE_PUBLIC_URL=f"http://127.0.0.1:{self.port}",
            S3DRIVE_INSPECT="false",  # no worker here: nothing would consume what confirm queues
            S3DRIVE_BROKER_URL="memory://",
            AWS_ACCESS_KEY_ID="test",
            AWS_SECRET_ACCESS_KEY="test",
        )
        self.env = env

    def __enter__(self) -> str:
        with open(self.log, "wb") as out:
            command = [sys.executable, "-m", "gunicorn", "wsgi:app", "--bind", f"127.0.0.1:{self.port}"]
            self.proc = subprocess.Popen(command, cwd=REPO_ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{self.port}"
        assert wait_until(lambda: _answers(base + "/healthz"), timeout=60), self.log.read_text()
        return base

    def __exit__(self, *exc_info) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _login(base: str) -> dict:
    body = {"username": "alice", "password": "correct horse battery"}
    assert requests.post(base + "/api/auth/register", json=body, timeout=10).status_code == 201
    tokens = requests.post(base + "/api/auth/login", json=body, timeout=10).json()
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def test_a_busy_process_makes_a_request_wait_for_a_slot_and_a_stuck_one_refuses_it():
    admission = Admission(1)
    assert admission.enter()
    # Busy: the holder leaves after a while (but before it counts as stuck): the next request waits for it.
    threading.Timer(STUCK_AFTER / 2, admission.leave).start()
    started = time.monotonic()
    assert admission.enter()
    assert STUCK_AFTER / 2 - 0.01 < time.monotonic() - started < STUCK_AFTER
    # Stuck: the holder has run longer than STUCK_AFTER: the next request is refused within SLOT_WAIT.
    time.sleep(STUCK_AFTER + 0.05)
    started = time.monotonic()
    assert not admission.enter()
    assert time.monotonic() - started < SLOT_WAIT + 0.05
    admission.leave()
    assert admission.enter() and admission.in_flight == 1
