"""The CLI client (s3drive-client) end to end: the real app over HTTP, S3 on MiniStack.

MiniStack runs with AUTH=true, so every PUT the client sends must carry exactly the signed
headers (type, length, checksum, metadata, storage class) or it is refused. The app runs
in a werkzeug thread with a 5 MiB multipart threshold and 5 MiB parts, so a 12 MiB file
goes multipart in 3 parts. HOME points at tmp_path: the client's config dir (tokens,
resume state) lives there.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pty
import re
import select
import signal
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from conftest import empty_tables, make_test_app
from helpers import sha256_b64
from live import ServedApp, head_or_none
from s3servers import ministack_server

from s3drive import signing
from s3drive.client import cli, config, local_files, transport, upload
from s3drive.client.api import Api, RetryPolicy
from s3drive.client.download import free_path, safe_file_name
from s3drive.client.errors import ClientError as ClientSideError
from s3drive.dev import ministack

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024
PASSWORD = "correct horse battery"
REPO_ROOT = Path(__file__).resolve().parents[1]
BIG_SIZE = 12 * MIB  # 3 parts of 5 MiB (5 + 5 + 2)
MAX_BATCH = 3  # small, so that 4 small files take two presign calls


def payload(seed: int, size: int) -> bytes:
    """Return size bytes that differ from one seed to another (and within the file)."""
    block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB
    return (block * (size // len(block) + 1))[:size]


# -- the served app -----------------------------------------------------------------------


class RequestLog:
    """WSGI middleware that records (method, path) of every API request."""

    def __init__(self, app):
        self.app = app
        self.calls: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self._lock:
            self.calls.append((environ["REQUEST_METHOD"], environ["PATH_INFO"]))
        return self.app(environ, start_response)

    def count(self, method: str, path: str) -> int:
        return sum(call == (method, path) for call in self.calls)


@dataclass
class Stack:
    """The app served over HTTP, its S3 (MiniStack) and a direct S3 client."""

    app: object
    base_url: str
    s3: object
    bucket: str
    log: RequestLog

    def head(self, key: str) -> dict | None:
        return head_or_none(self.s3, self.bucket, key)

    def read(self, key: str) -> bytes:
        return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()


@pytest.fixture(scope="module")
def stack(database_url, tmp_path_factory) -> Iterator[Stack]:
    """Serve one app (5 MiB multipart threshold and parts) against one MiniStack for the module."""
    bucket = f"s3drive-client-{uuid.uuid4().hex[:10]}"
    with ministack_server(tmp_path_factory.mktemp("ministack")) as s3_url:
        app = make_test_app(
            database_url,
            S3_BUCKET=bucket,
            S3_ENDPOINT_URL=s3_url,
            S3_ADDRESSING_STYLE="path",
            S3_CONFIRM="list",
            MULTIPART_THRESHOLD=5 * MIB,
            DEFAULT_PART_SIZE=5 * MIB,
            MAX_BATCH=MAX_BATCH,
        )
        log = RequestLog(app.wsgi_app)
        app.wsgi_app = log
        s3 = ministack.s3_client(s3_url)
        s3.create_bucket(Bucket=bucket)
        with ServedApp(app, "s3drive-client-tests") as served:
            yield Stack(app, served.url, s3, bucket, log)


@pytest.fixture
def live(stack) -> Stack:
    """The module's stack with empty tables and a fresh request log."""
    empty_tables(stack.app)
    stack.log.calls.clear()
    return stack


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """Point HOME (and so platformdirs' config dir) at tmp_path; return the client's config dir."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv(config.CONFIG_DIR_ENV, raising=False)
    assert config.config_dir() == home / ".config" / "s3drive"
    return config.config_dir()


# -- running the client -------------------------------------------------------------------


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def last_error(self) -> str:
        lines = [line for line in self.err.splitlines() if line.startswith("error: ")]
        return lines[-1] if lines else ""

    def json(self):
        return json.loads(self.out)


@dataclass
class Runner:
    """Runs `s3drive-client ...` in this process (main(argv)), capturing its output."""

    capsys: object
    monkeypatch: object
    history: list[Result] = field(default_factory=list)

    def __call__(self, *args: str, stdin: str = "") -> Result:
        self.capsys.readouterr()
        self.monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = cli.main([str(arg) for arg in args])
        out, err = self.capsys.readouterr()
        result = Result(code, out, err)
        self.history.append(result)
        return result


@pytest.fixture
def run(capsys, monkeypatch, home) -> Runner:
    return Runner(capsys, monkeypatch)


def register(base_url: str, username: str, password: str = PASSWORD) -> None:
    response = requests.post(
        f"{base_url}/api/auth/register", json={"username": username, "password": password}, timeout=30
    )
    assert response.status_code == 201, response.text


@pytest.fixture
def user(live, run) -> str:
    """Register a user and log the client in; return the username."""
    username = f"cli-{uuid.uuid4().hex[:8]}"
    register(live.base_url, username)
    result = run("login", live.base_url, username, "--password-stdin", stdin=PASSWORD + "\n")
    assert result.code == 0, result.err
    return username


def api_for(live: Stack) -> Api:
    """An API client with the client's stored credentials, for checking records."""
    return Api(live.base_url, config.load_credentials())


def make_tree(root: Path) -> dict[str, bytes]:
    """Create a small directory tree of files; return {relative path: bytes}."""
    files = {
        "docs/readme.txt": payload(1, 1500),
        "docs/notes/todo.md": payload(2, 777),
        "docs/notes/empty.txt": b"",
        "docs/data.json": payload(3, 4096),
    }
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def state_files(home: Path) -> list[Path]:
    return sorted((home / "uploads").glob("*.json")) if (home / "uploads").exists() else []


# -- login and tokens ---------------------------------------------------------------------


def test_login_stores_tokens_mode_0600_and_they_work(live, run, home):
    username = f"cli-{uuid.uuid4().hex[:8]}"
    register(live.base_url, username)
    result = run("login", live.base_url, username, "--password-stdin", stdin=PASSWORD + "\n")
    assert result.code == 0, result.err
    assert f"as {username}" in result.out

    path = home / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    stored = json.loads(path.read_text())
    assert stored["url"] == live.base_url
    assert stored["username"] == username
    me = requests.get(
        f"{live.base_url}/api/auth/me", headers={"Authorization": f"Bearer {stored['access_token']}"}, timeout=30
    )
    assert me.status_code == 200 and me.json()["username"] == username

    usage = run("usage")
    assert usage.code == 0, usage.err
    assert usage.out.startswith("used 0 B of 1 GiB")

    # Logging in again rewrites the file, still 0600; logout revokes the token and forgets it.
    assert run("login", live.base_url, username, "--password-stdin", stdin=PASSWORD).code == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    access = json.loads(path.read_text())["access_token"]
    assert run("logout").code == 0
    assert not path.exists()
    revoked = requests.get(f"{live.base_url}/api/auth/me", headers={"Authorization": f"Bearer {access}"}, timeout=30)
    assert revoked.status_code == 401
    assert revoked.json()["error"]["code"] == "token_revoked"


def test_wrong_password_and_no_password(live, run, home):
    username = f"cli-{uuid.uuid4().hex[:8]}"
    register(live.base_url, username)
    result = run("login", live.base_url, username, "--password-stdin", stdin="wrong password\n")
    assert result.code == 1
    assert result.last_error.startswith("error: unauthorized: ")
    assert len(result.err.strip().splitlines()) == 1
    assert not (home / "credentials.json").exists()

    empty = run("login", live.base_url, username, "--password-stdin", stdin="")
    assert empty.code == 2
    assert empty.last_error.startswith("error: usage: no password")


def _token(live: Stack, user_id: str, kind: str, seconds: int) -> str:
    from flask_jwt_extended import create_access_token, create_refresh_token

    with live.app.app_context():
        create = create_access_token if kind == "access" else create_refresh_token
        return create(identity=user_id, expires_delta=timedelta(seconds=seconds))


def test_expired_access_token_is_refreshed_and_stored(live, run, user, home):
    path = home / "credentials.json"
    stored = json.loads(path.read_text())
    me = requests.get(
        f"{live.base_url}/api/auth/me", headers={"Authorization": f"Bearer {stored['access_token']}"}, timeout=30
    )
    user_id = me.json()["id"]
    expired = _token(live, user_id, "access", -60)
    path.write_text(json.dumps({**stored, "access_token": expired}))

    result = run("usage", "--json")
    assert result.code == 0, result.err
    assert result.json()["quota_bytes"] == 1024**3
    assert live.log.count("POST", "/api/auth/refresh") == 1
    renewed = json.loads(path.read_text())
    assert renewed["access_token"] not in (expired, stored["access_token"])
    assert renewed["refresh_token"] == stored["refresh_token"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    # With the refresh token expired too, the client says to log in again.
    path.write_text(json.dumps({**stored, "access_token": expired, "refresh_token": _token(live, user_id, "r", -60)}))
    again = run("usage")
    assert again.code == 1
    assert again.last_error.startswith("error: token_expired: ")
    assert "login" in again.last_error


# -- uploads ------------------------------------------------------------------------------


def test_upload_directory_and_files_batches_checksums_folders_tier(live, run, user, tmp_path):
    files = make_tree(tmp_path / "src")
    photo = tmp_path / "photo.png"
    photo.write_bytes(payload(4, 2048))

    result = run(
        "upload", tmp_path / "src" / "docs", photo, "--folder", "backup/2026", "--tier", "standard_ia", "--json"
    )
    assert result.code == 0, result.err
    summary = result.json()
    outcomes = {Path(item["path"]).name: item for item in summary["files"]}
    assert set(outcomes) == {"readme.txt", "todo.md", "empty.txt", "data.json", "photo.png"}
    assert all(item["status"] == "complete" and item["multipart"] is False for item in outcomes.values())
    assert summary["bytes_sent"] == sum(map(len, files.values())) + 2048

    # 5 small files, max_batch 3: two presign calls and two confirm calls, nothing else.
    assert live.log.count("POST", "/api/files/upload/") == 2
    assert live.log.count("POST", "/api/files/confirm_uploads/") == 2
    assert live.log.count("GET", "/api/files/limits") == 1

    api = api_for(live)
    expected = {
        "readme.txt": (files["docs/readme.txt"], "backup/2026/docs", "text/plain"),
        "todo.md": (files["docs/notes/todo.md"], "backup/2026/docs/notes", "text/markdown"),
        "empty.txt": (b"", "backup/2026/docs/notes", "text/plain"),
        "data.json": (files["docs/data.json"], "backup/2026/docs", "application/json"),
        "photo.png": (photo.read_bytes(), "backup/2026", "image/png"),
    }
    for name, (data, folder, content_type) in expected.items():
        record = api.get_file(outcomes[name]["id"])
        assert record["status"] == "complete"
        assert record["file_name"] == name
        assert record["folder"] == folder
        assert record["size"] == len(data)
        assert record["tier"] == "standard_ia"
        assert record["content_type"] == content_type
        assert record["checksum_sha256"] == sha256_b64(data)
        head = live.head(record["s3_key"])
        assert head["ChecksumSHA256"] == sha256_b64(data)
        assert head.get("StorageClass") == "STANDARD_IA"
        assert live.read(record["s3_key"]) == data
    usage = api.usage()
    assert usage["used_bytes"] == sum(len(data) for data, _, _ in expected.values())
    assert usage["reserved_bytes"] == 0


def test_upload_flat_tags_and_human_output(live, run, user, tmp_path):
    make_tree(tmp_path / "src")
    result = run("upload", tmp_path / "src" / "docs", "--flat", "--folder", "inbox", "--tag", "Work", "--tag", "cli")
    assert result.code == 0, result.err
    assert result.out.strip() == "4 of 4 files uploaded (6.2 KiB), 6.2 KiB sent"
    assert result.err.count("uploaded ") == 4
    api = api_for(live)
    records = [api.get_file(line.rsplit("-> ", 1)[1]) for line in result.err.splitlines() if " -> " in line]
    assert {r["folder"] for r in records} == {"inbox"}
    assert all(r["tags"] == ["work", "cli"] for r in records)


def test_multipart_upload_is_byte_identical(live, run, user, tmp_path, home):
    big = tmp_path / "movie.mp4"
    data = payload(5, BIG_SIZE)
    big.write_bytes(data)
    small = tmp_path / "poster.jpg"
    small.write_bytes(payload(6, 3000))

    result = run("upload", big, small, "--concurrency", "3", "--json")
    assert result.code == 0, result.err
    by_name = {Path(item["path"]).name: item for item in result.json()["files"]}
    assert by_name["movie.mp4"]["multipart"] is True
    assert by_name["poster.jpg"]["multipart"] is False
    assert by_name["movie.mp4"]["bytes_sent"] == BIG_SIZE
    assert by_name["movie.mp4"]["resumed_bytes"] == 0

    api = api_for(live)
    record = api.get_file(by_name["movie.mp4"]["id"])
    assert record["status"] == "complete"
    assert record["size"] == BIG_SIZE
    assert record["content_type"] == "video/mp4"
    assert live.read(record["s3_key"]) == data
    assert live.head(record["s3_key"])["ETag"].strip('"').endswith("-3")  # 3 parts
    assert live.read(api.get_file(by_name["poster.jpg"]["id"])["s3_key"]) == small.read_bytes()
    assert state_files(home) == []  # removed once complete


class _Interrupt:
    """Raise KeyboardInterrupt in the main thread (as Ctrl-C would) after `after` parts are recorded."""

    def __init__(self, monkeypatch, after: int):
        self.after = after
        self.recorded = 0
        original = upload.Uploader.record_part

        def record_part(uploader, *args, **kwargs):
            original(uploader, *args, **kwargs)
            self.recorded += 1
            if self.recorded >= self.after:
                raise KeyboardInterrupt

        monkeypatch.setattr(upload.Uploader, "record_part", record_part)
        self.undo = lambda: monkeypatch.setattr(upload.Uploader, "record_part", original)


def test_interrupted_multipart_upload_resumes_sending_only_missing_parts(live, run, user, tmp_path, home, monkeypatch):
    big = tmp_path / "big.bin"
    data = payload(7, BIG_SIZE)
    big.write_bytes(data)

    interrupt = _Interrupt(monkeypatch, after=1)
    first = run("upload", big, "--concurrency", "1", "--json")
    assert first.code == 130
    assert first.last_error.startswith("error: interrupted: ")
    assert first.out == ""  # no summary for an interrupted run
    [state_path] = state_files(home)
    assert stat.S_IMODE(state_path.stat().st_mode) == 0o600
    state = json.loads(state_path.read_text())
    assert state["part_size"] == 5 * MIB and state["part_count"] == 3
    assert len(state["parts"]) >= 1
    status = api_for(live).multipart_status(state["id"])
    assert status["status"] == "uploading"
    held = {p["part_number"] for p in status["parts"]}
    assert held and held < {1, 2, 3}

    interrupt.undo()
    second = run("upload", big, "--concurrency", "2", "--json")
    assert second.code == 0, second.err
    [outcome] = second.json()["files"]
    assert outcome["id"] == state["id"]  # the same upload, resumed
    assert outcome["resumed_bytes"] == sum(min(5 * MIB, BIG_SIZE - (n - 1) * 5 * MIB) for n in held)
    assert outcome["bytes_sent"] == BIG_SIZE - outcome["resumed_bytes"]
    assert outcome["bytes_sent"] < BIG_SIZE
    record = api_for(live).get_file(state["id"])
    assert record["status"] == "complete"
    assert live.read(record["s3_key"]) == data
    assert state_files(home) == []


def test_sigint_to_a_running_upload_then_resume(live, run, user, tmp_path, home):
    big = tmp_path / "clip.mov"
    data = payload(8, BIG_SIZE)
    big.write_bytes(data)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    # 4 MiB/s: the first 5 MiB part lands after ~1.3 s, the file would take ~3 s.
    command = [sys.executable, "-m", "s3drive.client", "upload", str(big), "--concurrency", "1", "--limit-rate", "4M"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            states = state_files(home)
            if states and json.loads(states[0].read_text() or "{}").get("parts"):
                break
            time.sleep(0.02)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("error: interrupted: ")
    [state_path] = state_files(home)
    done = len(json.loads(state_path.read_text())["parts"])
    assert 1 <= done < 3

    second = run("upload", big, "--json")
    assert second.code == 0, second.err
    [outcome] = second.json()["files"]
    assert outcome["resumed_bytes"] >= 5 * MIB
    assert outcome["bytes_sent"] <= BIG_SIZE - 5 * MIB
    assert live.read(api_for(live).get_file(outcome["id"])["s3_key"]) == data


def test_ctrl_c_in_a_terminal_leaves_no_frozen_progress_bar(live, run, user, tmp_path, home):
    """In a terminal, Ctrl-C erases the bars (no speed or time left stays on screen), then says why it stopped."""
    big = tmp_path / "clip.mov"
    big.write_bytes(payload(9, BIG_SIZE))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "COLUMNS": "100", "TERM": "xterm"}
    command = [sys.executable, "-m", "s3drive.client", "upload", str(big), "--concurrency", "1", "--limit-rate", "4M"]
    pid, fd = pty.fork()
    if pid == 0:  # the child: the client, with the pty as its terminal
        os.execve(sys.executable, command, env)
    screen = bytearray()
    try:
        deadline = time.monotonic() + 30
        while b"MiB/s" not in screen and time.monotonic() < deadline:  # the bars are drawn
            screen += read_pty(fd, 0.2)
        assert b"MiB/s" in screen, bytes(screen)
        os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + 30
        while b"error: interrupted" not in screen and time.monotonic() < deadline:
            screen += read_pty(fd, 0.2)
    finally:
        if os.waitpid(pid, os.WNOHANG) == (0, 0):  # still running: the test failed above
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
    before_error = bytes(screen).split(b"error: interrupted")[0]
    # Whatever was drawn last before the error line was erased again ("\x1b[2K" clears a line).
    assert b"MiB/s" not in before_error.rsplit(b"\x1b[2K", 1)[-1], before_error[-600:]
    assert before_error.rstrip(b"\r\n").endswith(b"\x1b[2K"), before_error[-600:]


def read_pty(fd: int, timeout: float) -> bytes:
    """Read what a pty has within timeout (b"" if nothing, or if its child closed it)."""
    ready, _, _ = select.select([fd], [], [], timeout)
    if not ready:
        return b""
    try:
        return os.read(fd, 65536)
    except OSError:  # EIO: the child exited
        return b""


# -- retries and re-signing ---------------------------------------------------------------


class _PastClock:
    """signing.time, but two hours late: URLs signed with it are born expired."""

    def time(self) -> float:
        return time.time() - 2 * 3600

    def __getattr__(self, name):
        return getattr(time, name)


def _expire_first_call(monkeypatch, method: str) -> list[dict]:
    """Make the signer issue expired URLs until Api.<method> has returned once; record its answers."""
    monkeypatch.setattr(signing, "time", _PastClock())
    original = getattr(Api, method)
    answers: list[dict] = []

    def wrapper(self, *args, **kwargs):
        answer = original(self, *args, **kwargs)
        if not answers:
            monkeypatch.setattr(signing, "time", time)
        answers.append(answer)
        return answer

    monkeypatch.setattr(Api, method, wrapper)
    return answers


def test_expired_put_url_is_signed_again(live, run, user, tmp_path, monkeypatch):
    path = tmp_path / "late.txt"
    data = payload(9, 5000)
    path.write_bytes(data)
    answers = _expire_first_call(monkeypatch, "presign")

    result = run("upload", path, "--json")
    assert result.code == 0, result.err
    [outcome] = result.json()["files"]
    [first] = answers[0]["successful"]
    assert outcome["id"] != first["id"]  # a fresh ticket, hence a fresh record
    api = api_for(live)
    record = api.get_file(outcome["id"])
    assert record["status"] == "complete"
    assert live.read(record["s3_key"]) == data
    assert api.get_file(first["id"])["status"] == "pending"  # refused by S3, left to expire
    assert live.head(first["s3_key"]) is None


def test_expired_part_urls_are_signed_again(live, run, user, tmp_path, monkeypatch):
    big = tmp_path / "late.bin"
    data = payload(10, BIG_SIZE)
    big.write_bytes(data)
    _expire_first_call(monkeypatch, "sign_parts")

    result = run("upload", big, "--json")
    assert result.code == 0, result.err
    [outcome] = result.json()["files"]
    assert live.read(api_for(live).get_file(outcome["id"])["s3_key"]) == data
    # One call for the first window, then one re-sign per refused part.
    sign_path = f"/api/files/multipart/{outcome['id']}/sign"
    assert live.log.count("POST", sign_path) == 1 + 3


class _FlakyS3:
    """A requests session whose first PUT fails with a network error and second with a 503."""

    def __init__(self):
        self.real = requests.Session()
        self.calls = 0

    def put(self, url, **kwargs):
        self.calls += 1
        if self.calls == 1:
            list(kwargs["data"])  # the body was (partly) sent before the connection broke
            raise requests.ConnectionError("connection reset by peer")
        if self.calls == 2:
            response = requests.Response()
            response.status_code, response.url, response._content = 503, url, b"<Code>SlowDown</Code>"
            response._content_consumed = True
            return response
        return self.real.put(url, **kwargs)


def test_network_errors_and_5xx_are_retried_with_backoff(live, run, user, tmp_path, monkeypatch):
    path = tmp_path / "flaky.txt"
    data = payload(11, 10_000)
    path.write_bytes(data)
    flaky = _FlakyS3()
    monkeypatch.setattr(transport.Transport, "session", lambda self: flaky)
    delays: list[float] = []
    original_delay = RetryPolicy.delay
    monkeypatch.setattr(RetryPolicy, "delay", lambda self, attempt, response=None: delays.append(attempt) or 0.01)

    result = run("upload", path, "--json")
    assert result.code == 0, result.err
    assert flaky.calls == 3
    assert delays == [0, 1]
    [outcome] = result.json()["files"]
    assert outcome["bytes_sent"] == 2 * len(data)  # the broken attempt's bytes were sent too
    assert live.read(api_for(live).get_file(outcome["id"])["s3_key"]) == data

    # The backoff itself doubles (with jitter) and stops at max_delay.
    policy = RetryPolicy(backoff=1.0, max_delay=5.0)
    for attempt, upper in ((0, 1.0), (1, 2.0), (2, 4.0), (5, 5.0)):
        assert upper / 2 <= original_delay(policy, attempt) <= upper


def test_retries_give_up_with_one_line_error(live, run, user, tmp_path, monkeypatch):
    path = tmp_path / "never.txt"
    path.write_bytes(b"never arrives")

    class Down:
        def put(self, url, **kwargs):
            raise requests.ConnectionError("[Errno 111] Connection refused")

    monkeypatch.setattr(transport.Transport, "session", lambda self: Down())
    result = run("--retries", "1", "upload", path)
    assert result.code == 1
    assert result.last_error.startswith("error: network_error: upload of ")
    assert result.last_error.endswith("connection refused")


def test_one_failed_file_does_not_stop_the_others(live, run, user, tmp_path, monkeypatch):
    good, bad = tmp_path / "good.txt", tmp_path / "bad.txt"
    good.write_bytes(payload(12, 3000))
    bad.write_bytes(payload(13, 3000))
    real = requests.Session()

    class RefusesBad:
        def put(self, url, **kwargs):
            if "/bad.txt?" in url:
                response = requests.Response()
                response.status_code, response.url, response._content = 400, url, b"<Code>InvalidRequest</Code>"
                response._content_consumed = True
                return response
            return real.put(url, **kwargs)

    monkeypatch.setattr(transport.Transport, "session", lambda self: RefusesBad())
    result = run("upload", bad, good, "--json")
    assert result.code == 1
    # Said once, as it happened; the last line counts it and keeps its code.
    assert f"failed {bad}: storage_error: upload of {bad}: S3 answered 400 InvalidRequest" in result.err
    assert result.last_error == "error: storage_error: 1 of 2 files failed (listed above)."
    outcomes = {Path(item["path"]).name: item for item in result.json()["files"]}
    assert outcomes["bad.txt"]["status"] == "failed"
    assert outcomes["bad.txt"]["error"]["code"] == "storage_error"
    assert outcomes["good.txt"]["status"] == "complete"
    assert live.read(api_for(live).get_file(outcomes["good.txt"]["id"])["s3_key"]) == good.read_bytes()


# -- listing, download, delete, usage -----------------------------------------------------


def _upload_tree(run, tmp_path) -> dict[str, str]:
    """Upload a few files with folders and tags; return {file name: id}."""
    for index, (name, folder, tag) in enumerate(
        (("alpha.txt", "work", "red"), ("beta.txt", "work", "blue"), ("gamma.csv", "home", "red"))
    ):
        path = tmp_path / "up" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(payload(20 + index, 1000 * (index + 1)))
        result = run("upload", path, "--folder", folder, "--tag", tag, "--json")
        assert result.code == 0, result.err
    listing = run("ls", "--json", "--limit", "1000")
    assert listing.code == 0, listing.err
    return {item["file_name"]: item["id"] for item in listing.json()["items"]}


def test_ls_filters_table_and_pagination(live, run, user, tmp_path):
    ids = _upload_tree(run, tmp_path)
    assert set(ids) == {"alpha.txt", "beta.txt", "gamma.csv"}

    def names(*args: str) -> list[str]:
        result = run("ls", "--json", *args)
        assert result.code == 0, result.err
        return sorted(item["file_name"] for item in result.json()["items"])

    assert names("--folder", "work") == ["alpha.txt", "beta.txt"]
    assert names("-q", "GAMMA") == ["gamma.csv"]
    assert names("--tag", "red") == ["alpha.txt", "gamma.csv"]
    assert names("--status", "pending") == []
    by_size = run("ls", "--json", "--sort=-size")  # argparse needs = before a leading -
    assert [item["file_name"] for item in by_size.json()["items"]] == ["gamma.csv", "beta.txt", "alpha.txt"]

    page = run("ls", "--limit", "2", "--sort", "file_name")
    assert page.code == 0, page.err
    assert "alpha.txt" in page.out and "beta.txt" in page.out and "gamma.csv" not in page.out
    assert "more with --all or --cursor" in page.err
    assert page.out.splitlines()[0].split() == ["ID", "NAME", "FOLDER", "SIZE", "TIER", "STATUS", "CREATED", "CHECK"]
    assert ids["alpha.txt"] in page.out

    everything = run("ls", "--limit", "1", "--all", "--json")
    assert sorted(item["file_name"] for item in everything.json()["items"]) == sorted(ids)
    assert everything.json()["next_cursor"] is None
    assert live.log.count("GET", "/api/files/") >= 1 + 3

    bad = run("ls", "--sort", "nonsense")
    assert bad.code == 1
    assert bad.last_error.startswith("error: validation_error: ")


def test_download_streams_exact_bytes_into_dir(live, run, user, tmp_path):
    ids = _upload_tree(run, tmp_path)
    out = tmp_path / "out"
    result = run("download", ids["alpha.txt"], ids["gamma.csv"], "-o", out)
    assert result.code == 0, result.err
    assert (out / "alpha.txt").read_bytes() == (tmp_path / "up" / "alpha.txt").read_bytes()
    assert (out / "gamma.csv").read_bytes() == (tmp_path / "up" / "gamma.csv").read_bytes()
    assert sorted(p.name for p in out.iterdir()) == ["alpha.txt", "gamma.csv"]  # no temp files left

    # Never overwrites: a second download gets a new name.
    again = run("download", ids["alpha.txt"], "-o", out)
    assert again.code == 0, again.err
    assert (out / "alpha (1).txt").read_bytes() == (out / "alpha.txt").read_bytes()

    # A download gets the mode the umask gives new files (0644 under 022), as cp or curl would, not 0600.
    for umask, mode in ((0o022, 0o644), (0o027, 0o640)):
        previous = os.umask(umask)
        try:
            done = run("download", ids["gamma.csv"], "-o", out / oct(umask))
        finally:
            os.umask(previous)
        assert done.code == 0, done.err
        assert stat.S_IMODE((out / oct(umask) / "gamma.csv").stat().st_mode) == mode

    missing = run("download", str(uuid.uuid4()), "-o", out)
    assert missing.code == 1
    assert missing.last_error.startswith("error: not_found: ")


def test_download_multipart_file(live, run, user, tmp_path):
    big = tmp_path / "big.bin"
    data = payload(30, BIG_SIZE)
    big.write_bytes(data)
    uploaded = run("upload", big, "--json")
    assert uploaded.code == 0, uploaded.err
    [outcome] = uploaded.json()["files"]
    result = run("download", outcome["id"], "-o", tmp_path / "dl")
    assert result.code == 0, result.err
    assert (tmp_path / "dl" / "big.bin").read_bytes() == data


def test_rm_deletes_in_batches_and_reports_failures(live, run, user, tmp_path):
    ids = _upload_tree(run, tmp_path)
    api = api_for(live)
    keys = {name: api.get_file(file_id)["s3_key"] for name, file_id in ids.items()}

    result = run("rm", ids["alpha.txt"], ids["beta.txt"])
    assert result.code == 0, result.err
    assert result.out.split() == ["deleted", ids["alpha.txt"], "deleted", ids["beta.txt"]]
    assert live.log.count("POST", "/api/files/delete") == 1
    assert live.head(keys["alpha.txt"]) is None and live.head(keys["beta.txt"]) is None
    assert live.head(keys["gamma.csv"]) is not None
    assert api.usage()["used_bytes"] == 3000
    listing = run("ls", "--json")
    assert [item["file_name"] for item in listing.json()["items"]] == ["gamma.csv"]

    unknown = str(uuid.uuid4())
    partial = run("rm", ids["gamma.csv"], unknown)
    assert partial.code == 1
    assert partial.out.split() == ["deleted", ids["gamma.csv"]]
    assert partial.last_error.startswith("error: not_found: ")
    assert partial.last_error.endswith(f"({unknown})")

    # More ids than max_batch: one call per batch.
    live.log.calls.clear()
    many = run("rm", *[str(uuid.uuid4()) for _ in range(MAX_BATCH + 1)])
    assert many.code == 1
    assert live.log.count("POST", "/api/files/delete") == 2


def test_usage_reports_used_bytes(live, run, user, tmp_path):
    path = tmp_path / "one.txt"
    path.write_bytes(payload(40, 2048))
    assert run("upload", path).code == 0
    result = run("usage")
    assert result.code == 0, result.err
    assert result.out.strip() == "used 2 KiB of 1 GiB (0.0%), reserved 0 B, 1 files"
    assert run("usage", "--json").json()["used_bytes"] == 2048


# -- content inspection -------------------------------------------------------------------
# The test app does not inspect (no worker): each test sets the record's inspection columns
# directly, as a worker would leave them, and reads them back through the CLI.

EXE_REASON = {"code": "executable_content", "message": "ELF executable."}


def set_inspection(live: Stack, file_id: str, state: str, *, thumbnail_key: str | None = None, **found) -> None:
    """Leave a file's record as the content check would: state, findings, preview; refused is rejected."""
    from s3drive.extensions import db
    from s3drive.models import File

    with live.app.app_context():
        record = db.session.get(File, file_id)
        record.inspection_state = state
        record.inspection = {"reason": None, **found}
        record.thumbnail_key = thumbnail_key
        if state == "rejected":
            record.status = "rejected"
        db.session.commit()


def row_of(out: str, file_id: str) -> str:
    [row] = [line.rstrip() for line in out.splitlines() if line.startswith(file_id)]
    return row


def test_ls_and_info_say_what_the_content_check_found(live, run, user, tmp_path):
    ids = _upload_tree(run, tmp_path)
    plain = tmp_path / "up" / "delta.txt"
    plain.write_bytes(b"never checked")
    assert run("upload", plain).code == 0
    ids["delta.txt"] = run("ls", "--json", "-q", "delta").json()["items"][0]["id"]
    set_inspection(live, ids["alpha.txt"], "pending")
    preview = f"previews/{ids['beta.txt']}.webp"
    set_inspection(
        live, ids["beta.txt"], "passed", thumbnail_key=preview, detected_type="image/png", width=1920, height=1080
    )
    set_inspection(live, ids["gamma.csv"], "rejected", detected_type="application/x-executable", reason=EXE_REASON)

    listing = run("ls")
    assert listing.code == 0, listing.err
    assert listing.out.splitlines()[0].split() == ["ID", "NAME", "FOLDER", "SIZE", "TIER", "STATUS", "CREATED", "CHECK"]
    assert row_of(listing.out, ids["alpha.txt"]).endswith("Checking content…")
    assert row_of(listing.out, ids["beta.txt"]).endswith(" Checked")
    assert row_of(listing.out, ids["delta.txt"]).split()[-1] != "Checked"  # never checked: nothing said
    assert ids["gamma.csv"] not in listing.out  # refused files are not complete ones
    refused = run("ls", "--status", "rejected")
    assert refused.code == 0, refused.err
    gamma = row_of(refused.out, ids["gamma.csv"])
    assert " rejected " in gamma
    assert gamma.endswith("Refused: this file is a program. ELF executable.")
    # --json stays the API's File, inspection included.
    [item] = run("ls", "--json", "--status", "rejected").json()["items"]
    assert item["inspection"]["reason"] == EXE_REASON

    info = run("info", ids["beta.txt"], ids["gamma.csv"], ids["delta.txt"])
    assert info.code == 0, info.err
    beta, gamma, delta = (dict(line.split(": ", 1) for line in part.splitlines()) for part in info.out.split("\n\n"))
    assert beta["id"].strip() == ids["beta.txt"] and beta["name"].strip() == "beta.txt"
    assert beta["check"].strip() == "Checked"
    assert beta["detected"].strip() == "image/png, 1920×1080"
    assert beta["preview"].strip().startswith("http") and preview in beta["preview"]
    assert gamma["status"].strip() == "rejected"
    assert gamma["check"].strip() == "Refused: this file is a program. ELF executable."
    assert "preview" not in gamma
    assert delta["check"].strip() == "not checked"
    as_json = run("info", ids["alpha.txt"], "--json").json()
    assert [i["inspection"]["state"] for i in as_json["items"]] == ["pending"]
    missing = run("info", str(uuid.uuid4()))
    assert (missing.code, missing.last_error.split(":")[1].strip()) == (1, "not_found")


def test_download_waits_for_the_content_check_and_names_refused_files(live, run, user, tmp_path):
    ids = _upload_tree(run, tmp_path)
    set_inspection(live, ids["alpha.txt"], "pending")
    set_inspection(live, ids["gamma.csv"], "rejected", reason=EXE_REASON)
    out = tmp_path / "out"

    # The server answers 409 not_ready: one sentence naming the file, exit 1; the others still come.
    waiting = run("download", ids["alpha.txt"], ids["beta.txt"], "-o", out)
    assert waiting.code == 1
    assert waiting.last_error == (
        f"error: not_ready: alpha.txt ({ids['alpha.txt']}) is still being checked; it can be downloaded once the "
        f"check has passed. Try again in a moment (`s3drive-client info {ids['alpha.txt']}` shows where the check "
        "stands)."
    )
    assert sorted(p.name for p in out.iterdir()) == ["beta.txt"]  # no partial or temp file for alpha

    set_inspection(live, ids["alpha.txt"], "passed")
    assert run("download", ids["alpha.txt"], "-o", out).code == 0
    assert (out / "alpha.txt").read_bytes() == (tmp_path / "up" / "alpha.txt").read_bytes()

    # A refused file says why; a file still being checked says so; neither stops the others.
    set_inspection(live, ids["alpha.txt"], "pending")
    refused = run("download", ids["gamma.csv"], ids["alpha.txt"], ids["beta.txt"], "-o", tmp_path / "again")
    assert refused.code == 1
    assert [line for line in refused.err.splitlines() if line.startswith("error: ")] == [
        f"error: invalid_state: gamma.csv ({ids['gamma.csv']}) cannot be downloaded: "
        "Refused: this file is a program. ELF executable.",
        waiting.last_error,
    ]
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == ["beta.txt"]


def test_upload_report_says_when_the_server_checks_content(live, run, user, tmp_path, capsys):
    path = tmp_path / "report.txt"
    path.write_bytes(payload(50, 3000))
    uploaded = run("upload", path)
    assert uploaded.code == 0, uploaded.err
    assert cli.CHECK_NOTE not in uploaded.out  # this server does not check: nothing said
    file_id = uploaded.err.rsplit("-> ", 1)[1].split()[0]

    set_inspection(live, file_id, "pending")  # as a server that checks leaves a fresh upload
    done = upload.FileOutcome(local_files.LocalFile.from_path(path, str(path), None), file_id, "complete")
    capsys.readouterr()
    assert cli.report_uploads([done], as_json=False, api=api_for(live)) == 0
    assert capsys.readouterr().out.splitlines() == ["1 of 1 files uploaded (2.9 KiB), 0 B sent", cli.CHECK_NOTE]


def test_inspection_words_cover_every_reason_code():
    from s3drive.client.inspection import REASON_WORDS, inspection_text, reason_text
    from s3drive.inspect.base import REASONS

    assert set(REASON_WORDS) == REASONS
    assert all(words.startswith("Refused: ") for words in REASON_WORDS.values())
    assert len(set(REASON_WORDS.values())) == len(REASONS)
    assert reason_text({"code": "something_new", "message": "Not today."}) == "Refused. Not today."
    assert reason_text({"code": "corrupt_file", "message": ""}) == "Refused: the file is damaged or cannot be read."
    assert inspection_text({"inspection": None}) == ""
    assert inspection_text({"inspection": {"state": "pending"}}) == "Checking content…"
    # The page says the same (frontend_example/lib/inspection.js has the same table).
    script = (REPO_ROOT / "frontend_example" / "lib" / "inspection.js").read_text()
    table = script.split("export const REASON_WORDS", 1)[1].split("});", 1)[0]
    assert dict(re.findall(r'(\w+): "([^"]+)"', table)) == REASON_WORDS


# -- share links --------------------------------------------------------------------------
# The links lead through MiniStack (AUTH=true): the signed download URL a link issues is checked
# as AWS would check it.


def test_share_prints_a_link_that_downloads_the_file_without_an_account(live, run, user, tmp_path):
    ids = _upload_tree(run, tmp_path)
    alpha, beta = ids["alpha.txt"], ids["beta.txt"]
    data = (tmp_path / "up" / "alpha.txt").read_bytes()
    set_inspection(live, alpha, "pending")
    waiting = run("share", alpha)
    assert (waiting.code, waiting.last_error.split(":")[1].strip()) == (1, "not_ready")

    set_inspection(live, alpha, "passed")
    made = run("share", alpha, "--expires", "2h", "--max-downloads", "2")
    assert made.code == 0, made.err
    url = made.out.strip()
    assert re.fullmatch(re.escape(live.base_url) + r"/s/[A-Za-z0-9_-]{43}", url)
    share_id = made.err.split()[1].rstrip(":")
    assert made.err.strip().endswith("0 of 2 downloads")

    got = requests.get(url, timeout=30)  # follows the redirect to the presigned GET: no token of ours
    assert got.status_code == 200 and got.content == data
    assert got.headers["Content-Disposition"].startswith('attachment; filename="alpha.txt"')

    [listed] = run("shares", "--json").json()["items"]
    assert (listed["id"], listed["file_id"], listed["downloads"], listed["max_downloads"]) == (share_id, alpha, 1, 2)
    assert listed["url"] is None  # shown once, when made
    expires = datetime.fromisoformat(listed["expires_at"]) - datetime.now(UTC)
    assert timedelta(hours=2) - timedelta(minutes=1) < expires <= timedelta(hours=2)
    table = run("shares")
    assert table.out.splitlines()[0].split() == ["ID", "FILE", "DOWNLOADS", "EXPIRES", "PASSWORD", "STATE"]
    assert row_of(table.out, share_id).split()[2:] == ["1/2", listed["expires_at"], "active"]
    assert table.err.strip() == "1 links"

    set_inspection(live, beta, "passed")
    assert run("share", beta).code == 0
    assert [i["file_id"] for i in run("shares", "--json", "--file", beta).json()["items"]] == [beta]
    assert len(run("shares", "--json", "--limit", "1", "--all").json()["items"]) == 2

    revoked = run("unshare", share_id, "no-such-share")
    assert revoked.code == 1 and revoked.out.strip() == f"revoked {share_id}"
    assert revoked.last_error.startswith("error: not_found: ") and "(no-such-share)" in revoked.last_error
    assert requests.get(url, timeout=30).status_code == 404
    assert row_of(run("shares").out, share_id).split()[-1] == "revoked"


def test_share_with_a_password_never_takes_it_from_argv(live, run, user, tmp_path, monkeypatch):
    ids = _upload_tree(run, tmp_path)
    gamma = ids["gamma.csv"]
    set_inspection(live, gamma, "passed")
    made = run("share", gamma, "--password-stdin", stdin="open sesame\n")
    assert made.code == 0, made.err
    url = made.out.strip()
    assert made.err.strip().endswith("0 downloads, password")
    assert requests.get(url, timeout=30).status_code == 401
    assert requests.post(url, json={"password": "open barley"}, timeout=30).status_code == 401
    opened = requests.post(url, json={"password": "open sesame"}, timeout=30)
    assert opened.status_code == 200, opened.text
    assert requests.get(opened.json()["url"], timeout=30).content == (tmp_path / "up" / "gamma.csv").read_bytes()

    typed = iter(["first", "second"])
    monkeypatch.setattr(cli.getpass, "getpass", lambda prompt: next(typed))
    differ = run("share", gamma, "--password")
    assert (differ.code, differ.last_error) == (2, "error: usage: the two passwords differ")
    monkeypatch.setattr(cli.getpass, "getpass", lambda prompt: "same")
    as_json = run("share", gamma, "--password", "--json", "--expires", "90m")
    assert as_json.code == 0, as_json.err
    assert as_json.json()["has_password"] is True and as_json.json()["url"].startswith(live.base_url + "/s/")
    # --password takes no value: a password on the command line is a usage error, not a password.
    assert run("share", gamma, "--password", "hunter22").code == 2

    for argv in (("--expires", "0"), ("--expires", "5x"), ("--max-downloads", "0")):
        assert run("share", gamma, *argv).code == 2, argv
    too_long = run("share", gamma, "--expires", "31d")
    assert (too_long.code, too_long.last_error.split(":")[1].strip()) == (1, "validation_error")


def test_parse_duration():
    assert [cli.parse_duration(t) for t in ("3600", "90s", "30m", "12h", "7d", "2w", " 1D ")] == [
        3600,
        90,
        1800,
        43200,
        604800,
        1209600,
        86400,
    ]


# -- errors -------------------------------------------------------------------------------


def test_error_exit_codes_and_messages(live, run, home, tmp_path):
    # Not logged in yet.
    result = run("usage")
    assert (result.code, result.last_error.split(":")[1].strip()) == (1, "not_logged_in")

    # Server down: nothing listens on that port.
    with __import__("socket").socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = run("--retries", "0", "login", f"http://127.0.0.1:{port}", "someone", "--password-stdin", stdin="x" * 8)
    assert down.code == 1
    assert down.last_error == f"error: network_error: cannot reach http://127.0.0.1:{port}: connection refused"

    username = f"cli-{uuid.uuid4().hex[:8]}"
    register(live.base_url, username)
    assert run("login", live.base_url, username, "--password-stdin", stdin=PASSWORD).code == 0

    # A missing local file: nothing is presigned.
    live.log.calls.clear()
    missing = run("upload", tmp_path / "nope.txt")
    assert missing.code == 1
    assert missing.last_error == f"error: file_not_found: No such file or directory: {tmp_path / 'nope.txt'}"
    assert live.log.calls == []

    # A file the policy refuses: the server's code and message, exit 1.
    exe = tmp_path / "setup.exe"
    exe.write_bytes(b"MZ")
    refused = run("upload", exe)
    assert refused.code == 1
    assert refused.last_error.startswith("error: content_type_not_allowed: ")
    assert refused.err.count("content_type_not_allowed") == 1, refused.err  # said once, not twice
    # Among other files, the refusal is printed as it happens and the last line counts it, code kept.
    notes = tmp_path / "notes.txt"
    notes.write_text("fine")
    mixed = run("upload", exe, notes)
    assert mixed.code == 1
    assert mixed.last_error == "error: content_type_not_allowed: 1 of 2 files failed (listed above)."
    assert mixed.err.count("setup.exe") == 1, mixed.err

    # Usage errors exit 2.
    for argv in (
        ("upload",),
        ("upload", exe, "--tier", "cold"),
        ("frobnicate",),
        ("upload", exe, "--concurrency", "0"),
    ):
        usage = run(*argv)
        assert usage.code == 2, argv
        assert usage.last_error.startswith("error: usage: ")


def test_download_names_cannot_escape_the_directory(tmp_path):
    for hostile in ("../../etc/passwd", "..\\..\\boot.ini", "/abs/path.txt", "a/b/c.txt", "..", ".", "", "x\x00\n.txt"):
        name = safe_file_name(hostile, "fallback-id")
        assert "/" not in name and "\\" not in name and name not in ("", ".", "..")
        path = free_path(tmp_path, name)
        assert path.resolve().parent == tmp_path.resolve()
    assert safe_file_name("../../etc/passwd", "id") == "passwd"
    assert safe_file_name("..", "id") == "id"
    assert safe_file_name("x\x00\n.txt", "id") == "x.txt"
    assert len(safe_file_name("é" * 300, "id").encode()) <= 255


def test_collect_files_keeps_structure_and_refuses_missing(tmp_path):
    make_tree(tmp_path)
    files = local_files.collect_files([str(tmp_path / "docs")], "base")
    assert sorted((f.folder, f.name) for f in files) == [
        ("base/docs", "data.json"),
        ("base/docs", "readme.txt"),
        ("base/docs/notes", "empty.txt"),
        ("base/docs/notes", "todo.md"),
    ]
    assert {f.folder for f in local_files.collect_files([str(tmp_path / "docs")], None, keep_structure=False)} == {None}
    with pytest.raises(ClientSideError) as caught:
        local_files.collect_files([str(tmp_path / "missing")])
    assert caught.value.code == "file_not_found"


def test_make_installs_the_console_scripts():
    """`make` (venv, test, run) installs s3drive itself, editable: its commands are in the venv's bin."""
    bin_dir = Path(sys.executable).parent
    for command in ("s3drive-client", "s3drive"):
        assert (bin_dir / command).is_file(), f"{command} is not installed in {bin_dir}"
    shown = subprocess.run([str(bin_dir / "s3drive-client"), "--help"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "usage: s3drive-client" in shown.stdout, shown.stderr
