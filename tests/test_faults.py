"""Faults injected into real processes: the invariants of DESIGN.md hold whoever dies when.

The dev stack (`python -m s3drive.dev`: the API on SQLite, MiniStack with AUTH=true) runs as
subprocesses. The test freezes MiniStack (SIGSTOP), kills the API with SIGKILL in the middle of
a request, thaws MiniStack, runs the sweeper as its own process (`flask --app wsgi sweep`), and
checks the invariants from the database file and the bucket.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from contextlib import closing

import pytest
import requests
from helpers import wait_until
from live import REPO_ROOT, DevStack

pytestmark = pytest.mark.e2e

FILES = 20


def database(dev: DevStack) -> sqlite3.Connection:
    return sqlite3.connect(dev.data_dir / "s3drive.sqlite3", timeout=30)


def query(dev: DevStack, sql: str, *params) -> list[tuple]:
    with closing(database(dev)) as connection:
        return connection.execute(sql, params).fetchall()


def login(dev: DevStack) -> dict:
    answer = requests.post(
        dev.url + "/api/auth/login", json={"username": "demo", "password": dev.demo_password()}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def upload_files(dev: DevStack, auth: dict) -> list[dict]:
    """Upload FILES small files through presigned PUTs and confirm them; return their tickets."""
    datas = [hashlib.sha256(str(i).encode()).hexdigest().encode() * (i + 1) for i in range(FILES)]
    specs = [{"file_name": f"f{i}.txt", "content_type": "text/plain", "file_size": len(d)} for i, d in enumerate(datas)]
    tickets = requests.post(dev.url + "/api/files/upload/", json={"files": specs}, headers=auth, timeout=30).json()
    tickets = tickets["successful"]
    for ticket, data in zip(tickets, datas, strict=True):
        assert (
            requests.put(ticket["presigned_url"], data=data, headers=ticket["headers"], timeout=30).status_code == 200
        )
    confirmed = requests.post(
        dev.url + "/api/files/confirm_uploads/", json={"ids": [t["id"] for t in tickets]}, headers=auth, timeout=30
    ).json()
    assert confirmed["total_successful"] == FILES, confirmed
    return tickets


def sweep(dev: DevStack) -> str:
    """Run the sweeper as its own process against the stack's database and bucket."""
    env = {
        **dev.environment(),
        "S3DRIVE_DATABASE_URL": "sqlite:///" + str(dev.data_dir / "s3drive.sqlite3"),
        "S3DRIVE_S3_BUCKET": dev.bucket,
        "S3DRIVE_S3_ENDPOINT_URL": dev.s3_url,
        "S3DRIVE_S3_ADDRESSING_STYLE": "path",
        "S3DRIVE_JWT_SECRET_KEY": "fault-suite-" + "x" * 40,
        "S3DRIVE_PUBLIC_URL": dev.url,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
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


def assert_invariants(dev: DevStack) -> None:
    """used == Σ counted files; no complete file without its object; no object nothing accounts for."""
    [(used, quota)] = query(dev, "SELECT used_bytes, quota_bytes FROM users WHERE username = 'demo'")
    [(counted,)] = query(
        dev,
        "SELECT COALESCE(SUM(size), 0) FROM files WHERE status = 'complete'"
        " OR (status = 'deleting' AND confirmed_at IS NOT NULL)",
    )
    assert used == counted and used <= quota
    objects = {item["Key"] for item in dev.s3().list_objects_v2(Bucket=dev.bucket).get("Contents", ())}
    complete = {key for (key,) in query(dev, "SELECT s3_key FROM files WHERE status = 'complete'")}
    assert complete <= objects, f"complete without an object: {sorted(complete - objects)[:3]}"
    live = {key for (key,) in query(dev, "SELECT s3_key FROM files WHERE status IN ('complete', 'deleting')")}
    assert objects <= live, f"objects nothing accounts for: {sorted(objects - live)[:3]}"


def test_worker_killed_mid_delete_while_s3_hangs(tmp_path):
    dev = DevStack(tmp_path / "data")
    with dev:
        auth = login(dev)
        tickets = upload_files(dev, auth)
        keep = tickets.pop()  # one file nobody deletes
        ids = [t["id"] for t in tickets]
        assert_invariants(dev)

        frozen = dev.ministack_pid()
        os.killpg(frozen, signal.SIGSTOP)
        try:
            thread = threading.Thread(target=_delete_quietly, args=(dev, auth, ids), daemon=True)
            thread.start()
            # The intent is written before S3 is asked; S3 hangs, so the request is stuck after it.
            marked = "SELECT COUNT(*) FROM files WHERE status = 'deleting'"
            assert wait_until(lambda: query(dev, marked)[0][0] == len(ids), timeout=30)
            dev.proc.kill()  # SIGKILL mid-delete: no cleanup runs
            dev.proc.wait()
        finally:
            os.killpg(frozen, signal.SIGCONT)

        # Whatever S3 does with the request it received, no file is complete without its object.
        statuses = dict(query(dev, f"SELECT id, status FROM files WHERE id IN ({','.join('?' * len(ids))})", *ids))
        assert set(statuses.values()) == {"deleting"}
        assert_invariants(dev)

        report = sweep(dev)
        assert f"deletes_finished={len(ids)}" in report, report
        assert_invariants(dev)
        assert {status for (status,) in query(dev, "SELECT status FROM files WHERE id != ?", keep["id"])} == {"deleted"}
        [(used,)] = query(dev, "SELECT used_bytes FROM users WHERE username = 'demo'")
        [(kept_size,)] = query(dev, "SELECT size FROM files WHERE id = ?", keep["id"])
        assert used == kept_size
        assert "sweep" in sweep(dev) and "deletes_finished=0" in sweep(dev)  # nothing left: idempotent


def _delete_quietly(dev: DevStack, auth: dict, ids: list[str]) -> None:
    try:
        requests.post(dev.url + "/api/files/delete", json={"ids": ids}, headers=auth, timeout=120)
    except requests.RequestException:
        pass  # the server was killed under it
