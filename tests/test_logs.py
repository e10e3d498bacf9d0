"""Structured logs (s3drive/logs.py): the formats, the context, the redaction net, and the real processes.

The end-to-end test runs gunicorn (2 workers), a task-queue worker and the scheduler (`celery beat`)
with S3DRIVE_LOG_FORMAT=json against MiniStack with AUTH=true, drives a whole flow through them, and
reads what they wrote: every line a JSON object, a line per request with its route, the request id
carried into the inspection it queued, and none of the run's secrets anywhere.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests
from conftest import empty_tables, make_test_app
from flask import g
from helpers import wait_until
from live import REPO_ROOT, start_worker, stop_worker
from s3servers import _start_ready, install_ministack

from s3drive import logs
from s3drive.app import close_app
from s3drive.config import ConfigError
from s3drive.dev import ministack

SECRET_JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c2VyLTEifQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
SESSION = "WyJ1c2VyLTEiLCJqdGkiLDE3MDAwMDAwMDBd.AbCdEfGhIjKlMnOpQrStUv"


# -- the redaction net -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"Authorization: Bearer {SECRET_JWT}", SECRET_JWT),
        (f"token {SECRET_JWT} refused", SECRET_JWT),
        ("GET https://s3/b/k?X-Amz-Credential=AKIAX%2F20260101%2Fus-east-1&X-Amz-Signature=0123abcd", "0123abcd"),
        ("GET https://s3/b/k?X-Amz-Credential=AKIAX%2F20260101%2Fus-east-1&X-Amz-Signature=0123abcd", "AKIAX"),
        ("https://s3/b/k?x-amz-security-token=FQoGZXIvYXdzE&X-Amz-Expires=60", "FQoGZXIvYXdzE"),
        ("{'policy': 'eyJleHBpcmF0aW9uIjoiMjAyNiJ9', 'x-amz-signature': 'feedbeef'}", "feedbeef"),
        ("{'policy': 'eyJleHBpcmF0aW9uIjoiMjAyNiJ9', 'x-amz-signature': 'feedbeef'}", "eyJleHBpcmF0aW9uIjoiMjAyNiJ9"),
        ('{"username": "alice", "password": "open sesame"}', "open sesame"),
        ("password=hunter2&user=alice", "hunter2"),
        ('{"access_token": "abc.def.ghi", "refresh_token": "jkl.mno.pqr"}', "jkl.mno.pqr"),
        ("signature=deadbeef01&policy=cG9saWN5", "deadbeef01"),
        (f"GET /uppy/{SESSION}/s3/params", SESSION),
        (f"session {SESSION} expired", SESSION),
        ("GET /s/AbC123_-xyz?download=1", "AbC123_-xyz"),
        ("opening http://h/s/AbC123_-xyz", "AbC123_-xyz"),
    ],
)
def test_redact_takes_the_secret_out(text, secret):
    assert secret not in logs.redact(text)


@pytest.mark.parametrize(
    "text",
    [
        "GET /api/files/<file_id> 200",
        "route /s/<string:token> and /uppy/<string:token>/s3/params",
        "GET /uppy/s3/multipart/abc/batch",
        "inspect: passed=3 rejected=1",
        "the token is invalid: Signature verification failed",
        "sweep: expired=0 confirmed=2",
    ],
)
def test_redact_keeps_what_is_not_secret(text):
    assert logs.redact(text) == text


def test_redact_target_hides_session_and_share_tokens_only():
    assert logs.redact_target(f"/uppy/{SESSION}/s3/params?x=1") == "/uppy/[session]/s3/params?x=1"
    assert logs.redact_target("/uppy/s3/params") == "/uppy/s3/params"
    assert logs.redact_target("/s/tok?download=1") == "/s/[token]?download=1"
    assert logs.redact_target("/api/files/") == "/api/files/"


@contextmanager
def captured(log_format: str = "json", name: str = "test.logs") -> Iterator[list[str]]:
    """Yield the lines a handler prepared as the app's (format, context, redaction) writes for `name`."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            lines.append(self.format(record))

    handler = logs.prepare_handler(Collect(), log_format)
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    previous, logger.level = logger.level, logging.INFO
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def test_the_net_is_on_the_handler_whoever_logs():
    # A child logger's record propagates to the handler: a logger's own filter would not see it.
    with captured() as lines:
        child = logging.getLogger("test.logs.library")
        child.info("calling %s", f"https://s3/b/k?X-Amz-Signature=cafe0001&X-Amz-Credential=AKIAQ%2F1 {SECRET_JWT}")
        child.warning("form", extra={"fields": {"policy": "eyJwb2xpY3kiOjF9", "signature": "cafe0002"}})
        try:
            raise RuntimeError(f"upload to /uppy/{SESSION}/s3/params failed with password=cafe0003")
        except RuntimeError:
            child.exception("failed")
        child.info("stack", stack_info=True, extra={"note": "Bearer cafe0004"})
    text = "\n".join(lines)
    for secret in ("cafe0001", "AKIAQ", SECRET_JWT, "eyJwb2xpY3kiOjF9", "cafe0002", SESSION, "cafe0003", "cafe0004"):
        assert secret not in text
    records = [json.loads(line) for line in lines]
    assert records[1]["fields"] == {"policy": "[redacted]", "signature": "[redacted]"}
    assert "Traceback" in records[2]["exc_info"] and "RuntimeError" in records[2]["exc_info"]


def test_json_lines_have_time_level_logger_message_and_extras():
    with captured() as lines:
        logging.getLogger("test.logs").info("hello %s", "world", extra={"file_ids": ["a", "b"], "attempt": 2})
        logging.getLogger("test.logs").error('line\nbreak "quoted" ünïcode')
    first, second = (json.loads(line) for line in lines)
    assert list(first)[:4] == ["time", "level", "logger", "message"]
    assert first["level"] == "INFO" and first["logger"] == "test.logs" and first["message"] == "hello world"
    assert first["file_ids"] == ["a", "b"] and first["attempt"] == 2
    assert first["time"].endswith("Z") and datetime.fromisoformat(first["time"]).utcoffset().total_seconds() == 0
    assert second["message"] == 'line\nbreak "quoted" ünïcode' and "\n" not in lines[1]


def test_text_lines_put_the_context_in_brackets():
    with captured("text") as lines:
        logging.getLogger("test.logs").info("queued", extra={"request_id": "r-1", "user_id": "u-1"})
        logging.getLogger("test.logs").info("plain")
    assert lines[0].endswith("INFO test.logs: queued [request_id=r-1 user_id=u-1]")
    assert lines[1].endswith("INFO test.logs: plain")


def test_a_request_line_has_route_status_duration_request_and_user(app, client, auth):
    with captured(name=logs.REQUEST_LOGGER) as lines:
        # buffered: the test client closes the answer at once, as a server does once it is sent
        answer = client.get("/api/files/usage", headers={**auth, "X-Request-ID": "req-usage-1"}, buffered=True)
        missing = client.get("/api/files/0123456789abcdef0123456789abcdef", headers=auth, buffered=True)
        client.get("/healthz", buffered=True)
    assert answer.status_code == 200 and missing.status_code == 404
    usage, file, health = (json.loads(line) for line in lines)
    user_id = client.get("/api/auth/me", headers=auth).json["id"]
    assert usage["message"] == "GET /api/files/usage 200"
    assert {k: usage[k] for k in ("method", "route", "path", "status", "request_id", "user_id")} == {
        "method": "GET",
        "route": "/api/files/usage",
        "path": "/api/files/usage",
        "status": 200,
        "request_id": "req-usage-1",
        "user_id": user_id,
    }
    assert isinstance(usage["duration_ms"], float) and usage["duration_ms"] >= 0
    assert file["route"] == "/api/files/<string:file_id>" and file["status"] == 404
    assert file["request_id"] == missing.headers["X-Request-ID"]
    assert health["user_id"] is None and health["route"] == "/healthz"


def test_lines_logged_in_a_request_carry_its_id_and_user(app):
    with captured() as lines, app.test_request_context("/"):
        g.request_id = "req-42"
        logging.getLogger("test.logs").info("before sign-in")
        logs.note_user("user-7")
        logging.getLogger("test.logs").info("after", extra={"request_id": "explicit"})
    before, after = (json.loads(line) for line in lines)
    assert before["request_id"] == "req-42" and "user_id" not in before
    assert after["request_id"] == "explicit" and after["user_id"] == "user-7"


class FakeTask:
    name = "s3drive.inspect"

    class request:
        retries = 2
        s3drive_request_id = "req-from-confirm"

        @classmethod
        def get(cls, name, default=None):
            return getattr(cls, name, default)


def test_the_request_id_goes_into_the_message_headers_and_onto_the_tasks_lines(app):
    headers: dict = {}
    with app.test_request_context("/"):
        g.request_id = "req-confirm"
        logs._carry_request_id(headers=headers)
    assert headers == {logs.REQUEST_ID_HEADER: "req-confirm"}

    with captured() as lines:
        logs._task_started(task_id="t-1", task=FakeTask)
        logs.bind(file_ids=["f-1"])
        logging.getLogger("test.logs").info("inspect: passed=1")
        queued: dict = {}
        logs._carry_request_id(headers=queued)  # a task that queues another passes the id on
        logs._task_ended()
        logging.getLogger("test.logs").info("idle")
    during, after = (json.loads(line) for line in lines)
    assert {k: during[k] for k in ("task", "task_id", "attempt", "request_id", "file_ids")} == {
        "task": "s3drive.inspect",
        "task_id": "t-1",
        "attempt": 3,
        "request_id": "req-from-confirm",
        "file_ids": ["f-1"],
    }
    assert queued == {logs.REQUEST_ID_HEADER: "req-from-confirm"}
    assert "task" not in after and "request_id" not in after


def test_an_unknown_log_format_stops_start_up_with_one_line(tmp_path):
    with pytest.raises(ConfigError, match="S3DRIVE_LOG_FORMAT must be json or text"):
        make_test_app(f"sqlite:///{tmp_path}/x.sqlite3", LOG_FORMAT="yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("S3DRIVE_")}
    env.update(S3DRIVE_LOG_FORMAT="yaml", S3DRIVE_DEV_STACK="true", S3DRIVE_DATABASE_URL=f"sqlite:///{tmp_path}/y")
    done = subprocess.run([sys.executable, "-c", "import wsgi"], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 3
    assert done.stderr.strip().splitlines() == [
        "s3drive: configuration error: S3DRIVE_LOG_FORMAT must be json or text, got 'yaml'"
    ]


def test_the_format_defaults_to_json_and_the_dev_stack_to_text(tmp_path):
    app = make_test_app(f"sqlite:///{tmp_path}/x.sqlite3")
    try:
        assert app.config["LOG_FORMAT"] == "json"
    finally:
        close_app(app)
    from s3drive.dev import server

    args = server.parse_args(["--data-dir", str(tmp_path)])
    config, _ = server.app_config(args)
    assert config["LOG_FORMAT"] == "text" and "LOG_FORMAT" in server.WORKER_SETTINGS


# -- the real processes ------------------------------------------------------------------------------

PASSWORD = f"pw-{uuid.uuid4().hex}"
SHARE_PASSWORD = f"share-{uuid.uuid4().hex}"
SECRET_KEY = "logs-suite-" + uuid.uuid4().hex + "x" * 8


def json_lines(path: Path) -> list[dict]:
    """Parse every line of a process's output; fail naming the first line that is not a JSON object."""
    records = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"{path.name} line {number} is not JSON: {line[:300]!r}")
        assert isinstance(record, dict) and {"time", "level", "logger", "message"} <= set(record), line
        records.append(record)
    return records


@contextmanager
def processes(tmp_path: Path, database_url: str) -> Iterator[tuple[str, dict[str, Path]]]:
    """gunicorn (2 workers), a worker and `celery beat`, JSON logs, on MiniStack (AUTH=true) and an
    embedded broker; yield the API's URL and each process's log file."""
    app = make_test_app(database_url)
    empty_tables(app)
    close_app(app)
    s3_proc, s3_url = _start_ready(install_ministack(), tmp_path / "ministack", persist=False)
    bucket = "logs-suite"
    ministack.ensure_bucket(s3_url, bucket, cors_origins=[])
    port = ministack.free_port()
    base = f"http://127.0.0.1:{port}"
    settings = {
        "S3DRIVE_LOG_FORMAT": "json",
        "S3DRIVE_DATABASE_URL": database_url,
        "S3DRIVE_BROKER_URL": f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}",
        "S3DRIVE_S3_BUCKET": bucket,
        "S3DRIVE_S3_ENDPOINT_URL": s3_url,
        "S3DRIVE_S3_ADDRESSING_STYLE": "path",
        "S3DRIVE_JWT_SECRET_KEY": SECRET_KEY,
        "S3DRIVE_PUBLIC_URL": base,
        "S3DRIVE_INSPECT": "true",
        "S3DRIVE_SWEEP_INTERVAL": "2",  # the scheduler sends a sweep during the run
        "AWS_ACCESS_KEY_ID": ministack.ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": ministack.SECRET_KEY,
        "AWS_DEFAULT_REGION": ministack.REGION,
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("S3DRIVE_", "AWS_", "GUNICORN_"))}
    env.update(settings)
    paths = {name: tmp_path / f"{name}.log" for name in ("gunicorn", "worker", "beat")}
    started: list[subprocess.Popen] = []

    def spawn(command: list[str], log: Path) -> None:
        with open(log, "wb") as out:
            started.append(subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT))

    try:
        spawn(
            [sys.executable, "-m", "gunicorn", "wsgi:app", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
            paths["gunicorn"],
        )
        started.append(start_worker(paths["worker"], settings))
        beat = [sys.executable, "-m", "celery", "-A", "wsgi:celery", "beat", "--loglevel=info"]
        spawn([*beat, f"--schedule={tmp_path / 'beat.schedule'}"], paths["beat"])

        def healthy() -> bool:
            try:
                return requests.get(base + "/healthz", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        assert wait_until(healthy, timeout=60, interval=0.2), paths["gunicorn"].read_text()
        assert wait_until(lambda: " ready." in paths["worker"].read_text(), timeout=60), paths["worker"].read_text()
        yield base, paths
    finally:
        for proc in reversed(started):
            stop_worker(proc)  # SIGTERM, then SIGKILL if it hangs
        ministack.stop_process(s3_proc)


def drive_a_whole_flow(base: str) -> tuple[dict, set[str]]:
    """Register, log in, upload, confirm, wait for inspection, download, share, Uppy, log out; return
    what the test needs to find in the logs, and every secret the run handled."""
    secrets: set[str] = {PASSWORD, SHARE_PASSWORD}
    http = requests.Session()

    def call(method: str, path: str, expect: int = 200, **kwargs) -> requests.Response:
        answer = http.request(method, path if path.startswith("http") else base + path, timeout=30, **kwargs)
        assert answer.status_code == expect, (method, path, answer.status_code, answer.text)
        return answer

    def note_url(url: str) -> None:
        for name, values in parse_qs(urlsplit(url).query).items():
            if name.lower() in ("x-amz-signature", "x-amz-credential", "x-amz-security-token"):
                secrets.update(values)
                secrets.update(quote(value, safe="") for value in values)

    username = f"logs-{uuid.uuid4().hex[:8]}"
    call("POST", "/api/auth/register", 201, json={"username": username, "password": PASSWORD})
    tokens = call("POST", "/api/auth/login", json={"username": username, "password": PASSWORD}).json()
    secrets.update((tokens["access_token"], tokens["refresh_token"]))
    http.headers["Authorization"] = f"Bearer {tokens['access_token']}"
    user_id = call("GET", "/api/auth/me").json()["id"]

    contents = [b"hello, structured logs\n", b"a second file, inspected too\n"]
    specs = [
        {"file_name": f"note-{n}.txt", "content_type": "text/plain", "file_size": len(data)}
        for n, data in enumerate(contents)
    ]
    batch = call("POST", "/api/files/upload/", json={"files": specs}).json()
    assert batch["total_successful"] == 2, batch
    for ticket, data in zip(batch["successful"], contents, strict=True):
        note_url(ticket["presigned_url"])
        assert requests.put(ticket["presigned_url"], data=data, headers=ticket["headers"], timeout=30).ok
    ids = [ticket["id"] for ticket in batch["successful"]]
    confirm_id = f"confirm-{uuid.uuid4().hex}"
    confirmed = call("POST", "/api/files/confirm_uploads/", json={"ids": ids}, headers={"X-Request-ID": confirm_id})
    assert confirmed.json()["total_successful"] == 2

    def inspected() -> bool:
        return all(call("GET", f"/api/files/{i}").json()["inspection"]["state"] == "passed" for i in ids)

    assert wait_until(inspected, timeout=60, interval=0.5)
    download = call("GET", f"/api/files/{ids[0]}/download").json()["url"]
    note_url(download)
    assert requests.get(download, timeout=30).content == contents[0]

    share = call(
        "POST", f"/api/files/{ids[0]}/shares", 201, json={"expires_in": 3600, "password": SHARE_PASSWORD}
    ).json()
    share_token = urlsplit(share["url"]).path.rsplit("/", 1)[-1]
    secrets.add(share_token)
    call("GET", f"/s/{share_token}", 401, headers={"Accept": "application/json"})
    opened = call("POST", f"/s/{share_token}", json={"password": SHARE_PASSWORD}).json()
    note_url(opened["url"])
    assert requests.get(opened["url"], timeout=30).content == contents[0]

    endpoint = call("POST", "/api/uppy/session").json()["companion_endpoint"]
    session_token = urlsplit(endpoint).path.rsplit("/", 1)[-1]
    secrets.add(session_token)
    form = call("GET", f"{endpoint}/s3/params", params={"filename": "later.txt", "type": "text/plain"}).json()
    for name, value in form["fields"].items():
        if name.lower() in ("policy", "x-amz-signature", "x-amz-credential", "x-amz-security-token", "signature"):
            secrets.add(value)

    refreshed = call("POST", "/api/auth/refresh", headers={"Authorization": f"Bearer {tokens['refresh_token']}"})
    secrets.add(refreshed.json()["access_token"])
    call("POST", "/api/auth/logout")
    return {"user_id": user_id, "file_ids": ids, "confirm_request_id": confirm_id}, secrets


@pytest.mark.e2e
def test_every_process_logs_json_with_request_ids_and_no_secrets(tmp_path, database_url):
    with processes(tmp_path, database_url) as (base, paths):
        seen, secrets = drive_a_whole_flow(base)
        # The scheduler sent a sweep and the worker ran it (the beat and worker lines this test reads).
        assert wait_until(lambda: "sweep:" in paths["worker"].read_text(), timeout=30), paths["worker"].read_text()
    web, worker, beat = (json_lines(paths[name]) for name in ("gunicorn", "worker", "beat"))

    # gunicorn's own lines, then one line per request, from the app: with route, status, duration, request id.
    assert any(r["logger"] == "gunicorn.error" and r["message"].startswith("Booting worker") for r in web)
    requests_logged = [r for r in web if r["logger"] == logs.REQUEST_LOGGER]
    for record in requests_logged:
        assert {"method", "route", "path", "status", "duration_ms", "request_id"} <= set(record), record
        assert isinstance(record["status"], int) and record["duration_ms"] >= 0 and record["request_id"]
    by_route = {(r["method"], r["route"]): r for r in requests_logged}
    confirm = by_route[("POST", "/api/files/confirm_uploads/")]
    assert confirm["request_id"] == seen["confirm_request_id"] and confirm["user_id"] == seen["user_id"]
    assert confirm["status"] == 200
    assert by_route[("POST", "/api/auth/register")]["status"] == 201
    assert by_route[("POST", "/s/<string:token>")]["path"] == "/s/[token]"
    uppy = by_route[("GET", "/uppy/<string:token>/s3/params")]
    assert uppy["path"] == "/uppy/[session]/s3/params" and uppy["user_id"] == seen["user_id"]
    # One line per request, not two: no gunicorn access line beside the app's.
    assert not [r for r in web if r["logger"] == "gunicorn.access"]
    assert len([r for r in requests_logged if r["route"] == "/api/files/confirm_uploads/"]) == 1

    # The worker's inspection lines carry the request id of the confirm that queued them.
    inspected = [r for r in worker if r.get("task") == "s3drive.inspect" and r["message"].startswith("inspect:")]
    assert inspected, [r["message"] for r in worker]
    assert {r["request_id"] for r in inspected} == {seen["confirm_request_id"]}
    assert sorted(i for r in inspected for i in r["file_ids"]) == sorted(seen["file_ids"])
    assert sum(r["outcome"].get("passed", 0) for r in inspected) == 2 and {r["attempt"] for r in inspected} == {1}
    sweeps = [r for r in worker if r.get("task") == "s3drive.sweep"]
    assert sweeps and all("request_id" not in r for r in sweeps)  # nobody's request queued it
    assert any("Sending due task" in r["message"] for r in beat), [r["message"] for r in beat]

    # None of the secrets the run handled appear in any log.
    text = "\n".join(path.read_text(errors="replace") for path in paths.values())
    leaked = sorted(secret for secret in secrets if secret and secret in text)
    assert leaked == [], leaked
    assert len(secrets) >= 12  # tokens, passwords, several signatures and credentials
