"""Faults injected into real processes: the invariants of DESIGN.md hold whoever dies when.

Two stacks of real processes, both on MiniStack with AUTH=true:
- the dev stack (`python -m s3drive.dev`: the API on a SQLite file);
- gunicorn with 2 workers on the suite's database (PostgreSQL when CI runs the suite on it).
The test freezes MiniStack (SIGSTOP), kills the API's processes with SIGKILL in the middle of a
request, thaws MiniStack, runs the sweeper as its own process (`flask --app wsgi sweep`), and
checks the invariants from the database and the bucket.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from conftest import empty_tables, make_test_app
from helpers import wait_until
from live import REPO_ROOT, DevStack
from s3servers import _start_ready, install_ministack
from sqlalchemy import create_engine, text

from s3drive.app import close_app
from s3drive.dev import ministack

pytestmark = pytest.mark.e2e

FILES = 20
SECRET = "fault-suite-" + "x" * 40


@dataclass
class Stack:
    """An API in real processes, the database it writes, and the MiniStack it stores in."""

    url: str
    database_url: str
    s3_url: str
    bucket: str
    ministack_pgid: int
    kill_api: Callable[[], None]
    engine: object = field(init=False)

    def __post_init__(self) -> None:
        self.engine = create_engine(self.database_url)

    def query(self, sql: str, **params) -> list[tuple]:
        with self.engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql), params)]

    def s3(self):
        return ministack.s3_client(self.s3_url)

    def sweep(self) -> str:
        """Run the sweeper as its own process against this stack's database and bucket."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("S3DRIVE_", "AWS_"))}
        env.update(stack_environment(self))
        done = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi", "sweep"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout


def stack_environment(stack: Stack) -> dict[str, str]:
    """Return the S3DRIVE_* and AWS_* settings of a process serving this stack."""
    return {
        "S3DRIVE_DATABASE_URL": stack.database_url,
        "S3DRIVE_S3_BUCKET": stack.bucket,
        "S3DRIVE_S3_ENDPOINT_URL": stack.s3_url,
        "S3DRIVE_S3_ADDRESSING_STYLE": "path",
        "S3DRIVE_JWT_SECRET_KEY": SECRET,
        "S3DRIVE_PUBLIC_URL": stack.url,
        "AWS_ACCESS_KEY_ID": ministack.ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": ministack.SECRET_KEY,
        "AWS_DEFAULT_REGION": ministack.REGION,
    }


@contextmanager
def dev_stack(tmp_path: Path) -> Iterator[tuple[Stack, dict]]:
    """The dev stack on a SQLite file; yield it and the demo user's auth header."""
    dev = DevStack(tmp_path / "data")
    with dev:

        def kill() -> None:
            dev.proc.kill()
            dev.proc.wait()

        database_url = "sqlite:///" + str(dev.data_dir / "s3drive.sqlite3")
        stack = Stack(dev.url, database_url, dev.s3_url, dev.bucket, dev.ministack_pid(), kill)
        yield stack, login(stack.url, "demo", dev.demo_password())


@contextmanager
def gunicorn_stack(tmp_path: Path, database_url: str) -> Iterator[tuple[Stack, dict]]:
    """gunicorn (2 workers) on the suite's database and a MiniStack of its own; yield it and a user."""
    s3_proc, s3_url = _start_ready(install_ministack(), tmp_path / "ministack", persist=False)
    app = make_test_app(database_url)
    empty_tables(app)
    close_app(app)
    port = ministack.free_port()
    stack = Stack(f"http://127.0.0.1:{port}", database_url, s3_url, "fault-suite", s3_proc.pid, lambda: None)
    ministack.ensure_bucket(s3_url, stack.bucket, cors_origins=[])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("S3DRIVE_", "AWS_"))}
    command = [sys.executable, "-m", "gunicorn", "wsgi:app", "--bind", f"127.0.0.1:{port}", "--workers", "2"]
    log = tmp_path / "gunicorn.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            command, cwd=REPO_ROOT, env={**env, **stack_environment(stack)}, stdout=out, stderr=subprocess.STDOUT
        )
    stack.kill_api = lambda: kill_workers(server.pid)
    try:
        assert wait_until(lambda: answers(stack.url + "/healthz"), timeout=60), log.read_text()
        yield stack, register_and_login(stack.url)
    finally:
        server.terminate()
        server.wait(timeout=30)
        ministack.stop_process(s3_proc)
        stack.engine.dispose()


def kill_workers(master: int) -> None:
    """SIGKILL every worker of a gunicorn master (the one serving the request among them)."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    for pid in map(int, children):
        os.kill(pid, signal.SIGKILL)


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def login(base: str, username: str, password: str) -> dict:
    answer = requests.post(base + "/api/auth/login", json={"username": username, "password": password}, timeout=10)
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def register_and_login(base: str) -> dict:
    body = {"username": "alice", "password": "correct horse battery"}
    assert requests.post(base + "/api/auth/register", json=body, timeout=10).status_code == 201
    return login(base, body["username"], body["password"])


def upload_files(stack: Stack, auth: dict) -> list[dict]:
    """Upload FILES small files through presigned PUTs and confirm them; return their tickets."""
    datas = [hashlib.sha256(str(i).encode()).hexdigest().encode() * (i + 1) for i in range(FILES)]
    specs = [{"file_name": f"f{i}.txt", "content_type": "text/plain", "file_size": len(d)} for i, d in enumerate(datas)]
    tickets = requests.post(stack.url + "/api/files/upload/", json={"files": specs}, headers=auth, timeout=30).json()
    tickets = tickets["successful"]
    for ticket, data in zip(tickets, datas, strict=True):
        sent = requests.put(ticket["presigned_url"], data=data, headers=ticket["headers"], timeout=30)
        assert sent.status_code == 200, sent.text
    confirmed = requests.post(
        stack.url + "/api/files/confirm_uploads/", json={"ids": [t["id"] for t in tickets]}, headers=auth, timeout=30
    ).json()
    assert confirmed["total_successful"] == FILES, confirmed
    return tickets


def assert_invariants(stack: Stack) -> None:
    """used == Σ counted files; no complete file without its object; no object nothing accounts for."""
    for used, quota, counted in stack.query(
        "SELECT u.used_bytes, u.quota_bytes, (SELECT COALESCE(SUM(f.size), 0) FROM files f WHERE f.user_id = u.id"
        " AND (f.status = 'complete' OR (f.status = 'deleting' AND f.confirmed_at IS NOT NULL))) FROM users u"
    ):
        assert used == counted and used <= quota
    objects = {item["Key"] for item in stack.s3().list_objects_v2(Bucket=stack.bucket).get("Contents", ())}
    complete = {key for (key,) in stack.query("SELECT s3_key FROM files WHERE status = 'complete'")}
    assert complete <= objects, f"complete without an object: {sorted(complete - objects)[:3]}"
    live = {key for (key,) in stack.query("SELECT s3_key FROM files WHERE status IN ('complete', 'deleting')")}
    assert objects <= live, f"objects nothing accounts for: {sorted(objects - live)[:3]}"


@pytest.mark.parametrize("kind", ["dev stack on SQLite", "gunicorn, 2 workers, the suite's database"])
def test_api_killed_mid_delete_while_s3_hangs(tmp_path, database_url, kind):
    stacks = {"dev stack on SQLite": lambda: dev_stack(tmp_path)}
    stacks["gunicorn, 2 workers, the suite's database"] = lambda: gunicorn_stack(tmp_path, database_url)
    with stacks[kind]() as (stack, auth):
        tickets = upload_files(stack, auth)
        keep = tickets.pop()  # one file nobody deletes
        ids = [t["id"] for t in tickets]
        assert_invariants(stack)

        os.killpg(stack.ministack_pgid, signal.SIGSTOP)
        try:
            threading.Thread(target=_delete_quietly, args=(stack, auth, ids), daemon=True).start()
            # The intent is written before S3 is asked; S3 hangs, so the request is stuck after it.
            marked = "SELECT COUNT(*) FROM files WHERE status = 'deleting'"
            assert wait_until(lambda: stack.query(marked)[0][0] == len(ids), timeout=30)
            stack.kill_api()  # SIGKILL mid-delete: no cleanup runs
        finally:
            os.killpg(stack.ministack_pgid, signal.SIGCONT)

        # Whatever S3 does with the request it received, no file is complete without its object.
        statuses = {status for (status,) in stack.query("SELECT status FROM files WHERE id != :id", id=keep["id"])}
        assert statuses == {"deleting"}
        assert_invariants(stack)

        report = stack.sweep()
        assert f"deletes_finished={len(ids)}" in report, report
        assert_invariants(stack)
        statuses = {status for (status,) in stack.query("SELECT status FROM files WHERE id != :id", id=keep["id"])}
        assert statuses == {"deleted"}
        [(used, kept_size)] = stack.query(
            "SELECT u.used_bytes, f.size FROM users u JOIN files f ON f.user_id = u.id WHERE f.id = :id", id=keep["id"]
        )
        assert used == kept_size
        assert "deletes_finished=0" in stack.sweep()  # nothing left: idempotent


def _delete_quietly(stack: Stack, auth: dict, ids: list[str]) -> None:
    try:
        requests.post(stack.url + "/api/files/delete", json={"ids": ids}, headers=auth, timeout=120)
    except requests.RequestException:
        pass  # the server was killed under it
