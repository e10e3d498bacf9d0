"""The dev stack end to end: `python -m s3drive.dev` as a subprocess (tests/live.py's DevStack).

Each server gets free ports and its own data directory, so the tests run next to a
developer's `make run` and in parallel workers. MiniStack is the shared pinned
install from tests/s3servers.py.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import requests
from helpers import sha256_b64, wait_until
from live import DEV_STOP_TIMEOUT, REPO_ROOT, DevStack, is_ministack, unavailable

pytestmark = pytest.mark.e2e


def _port_answers(port: int) -> bool:
    try:
        requests.get(f"http://127.0.0.1:{port}/", timeout=1)
    except requests.ConnectionError:
        return False
    return True


def login(server: DevStack) -> dict:
    response = requests.post(
        server.url + "/api/auth/login", json={"username": "demo", "password": server.demo_password()}, timeout=10
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def upload(server: DevStack, auth: dict, name: str, content: bytes, content_type: str = "text/plain") -> dict:
    """Presign, PUT the bytes with exactly the ticket's headers, confirm; return the ticket."""
    checksum = sha256_b64(content)
    spec = {"file_name": name, "content_type": content_type, "file_size": len(content), "checksum_sha256": checksum}
    response = requests.post(server.url + "/api/files/upload/", json={"files": [spec]}, headers=auth, timeout=10)
    assert response.status_code == 200, response.text
    batch = response.json()
    assert batch["total_successful"] == 1, batch
    ticket = batch["successful"][0]
    assert ticket["method"] == "PUT" and ticket["presigned_url"].startswith(server.s3_url + "/")

    put = requests.put(ticket["presigned_url"], data=content, headers=ticket["headers"], timeout=10)
    assert put.status_code == 200, put.text

    response = requests.post(
        server.url + "/api/files/confirm_uploads/", json={"ids": [ticket["id"]]}, headers=auth, timeout=10
    )
    assert response.status_code == 200, response.text
    confirm = response.json()
    assert confirm["total_successful"] == 1, confirm
    assert confirm["results"][0]["status"] == "success"
    return ticket


def read_object(server: DevStack, key: str) -> bytes:
    return server.s3().get_object(Bucket=server.bucket, Key=key)["Body"].read()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One dev server shared by the read-mostly tests of this module."""
    with DevStack(tmp_path_factory.mktemp("devstack") / "data") as dev:
        yield dev


def test_serves_the_frontend(server):
    page = requests.get(server.url + "/", timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert 'type="module"' in page.text and "app.js" in page.text
    for asset in ("app.js", "upload.js"):
        response = requests.get(f"{server.url}/{asset}", timeout=10)
        assert response.status_code == 200, asset
        assert "javascript" in response.headers["Content-Type"]
    missing = requests.get(server.url + "/no-such-file.js", timeout=10)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


def test_docs_openapi_and_readiness(server):
    assert requests.get(server.url + "/docs", timeout=10).status_code == 200
    spec = requests.get(server.url + "/openapi.json", timeout=10)
    assert spec.status_code == 200
    assert "/api/files/upload/" in spec.json()["paths"]
    ready = requests.get(server.url + "/readyz", timeout=10)
    assert ready.status_code == 200, ready.text


def test_generated_secrets_are_private(server):
    for name in ("jwt-secret", "demo-password", "admin-password"):
        mode = stat.S_IMODE((server.data_dir / name).stat().st_mode)
        assert mode == 0o600, f"{name} has mode {oct(mode)}"


def test_demo_user_logs_in(server):
    auth = login(server)
    me = requests.get(server.url + "/api/auth/me", headers=auth, timeout=10)
    assert me.status_code == 200
    assert me.json()["username"] == "demo"


def test_admin_user_is_an_administrator(server):
    """The dev stack's second account, printed beside demo's, may use the admin routes."""
    signed_in = requests.post(
        server.url + "/api/auth/login",
        json={"username": "admin", "password": (server.data_dir / "admin-password").read_text().strip()},
        timeout=10,
    )
    assert signed_in.status_code == 200, signed_in.text
    auth = {"Authorization": f"Bearer {signed_in.json()['access_token']}"}
    assert requests.get(server.url + "/api/auth/me", headers=auth, timeout=10).json()["is_admin"] is True
    assert requests.get(server.url + "/api/admin/stats", headers=auth, timeout=10).status_code == 200
    assert requests.get(server.url + "/api/admin/stats", headers=login(server), timeout=10).status_code == 403


def readme_shell_block(heading: str) -> str:
    """Return the first ```sh block under a heading of README.md."""
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index(f"\n{heading}\n") :]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)


def test_readme_curl_section_runs_to_the_end(server, tmp_path):
    """Paste the README's curl lines into bash against a dev stack: every line succeeds, bytes round-trip."""
    if not shutil.which("jq") or not shutil.which("curl"):
        unavailable("curl and jq are needed to run the README's curl section", "README test")
    workdir = server.data_dir.parent  # the block reads data/demo-password, as from the checkout
    script = "set -euo pipefail\n" + readme_shell_block("## Using the API")
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=workdir,
        env={**os.environ, "API": server.url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "same bytes" in done.stdout
    assert (workdir / "hello-copy.txt").read_bytes() == (workdir / "hello.txt").read_bytes()
    assert '"status":"deleted"' in done.stdout.replace(" ", "")
    assert '"users"' in done.stdout  # the admin's stats


def test_presign_put_confirm(server):
    auth = login(server)
    content = "naïve café ☕\n".encode() * 100
    ticket = upload(server, auth, "notes.txt", content)

    record = requests.get(f"{server.url}/api/files/{ticket['id']}", headers=auth, timeout=10)
    assert record.status_code == 200
    assert record.json()["status"] == "complete"
    assert record.json()["size"] == len(content)
    assert read_object(server, ticket["s3_key"]) == content
    usage = requests.get(server.url + "/api/files/usage", headers=auth, timeout=10).json()
    assert usage["file_count"] >= 1 and usage["used_bytes"] >= len(content)


def test_bucket_cors_allows_the_dev_origin(server):
    preflight = {
        "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "content-type,x-amz-checksum-sha256,x-amz-meta-file-id",
    }
    object_url = f"{server.s3_url}/{server.bucket}/users/someone/file.txt"
    allowed = requests.options(object_url, headers={"Origin": server.origin, **preflight}, timeout=10)
    assert allowed.status_code == 200, allowed.text
    assert allowed.headers.get("Access-Control-Allow-Origin") == server.origin
    assert "PUT" in allowed.headers.get("Access-Control-Allow-Methods", "")

    other = requests.options(object_url, headers={"Origin": "http://evil.example", **preflight}, timeout=10)
    assert other.headers.get("Access-Control-Allow-Origin") != "http://evil.example"


def test_ctrl_c_stops_everything_and_restart_keeps_files(tmp_path):
    with DevStack(tmp_path / "data") as dev:
        auth = login(dev)
        content = b"still here after a restart\n"
        ticket = upload(dev, auth, "persist.txt", content)
        ministack_pid = dev.ministack_pid()
        password = dev.demo_password()

        took = dev.interrupt()
        assert dev.proc.returncode == 0, dev.log()
        assert took < DEV_STOP_TIMEOUT, f"took {took:.1f}s to stop"
        assert not is_ministack(ministack_pid), "MiniStack outlived the dev server"
        assert not workers_of(dev.data_dir), "the task-queue worker outlived the dev server"
        assert not _port_answers(dev.port) and not _port_answers(dev.s3_port)
        assert "Stopped the dev stack." in dev.log()

    # Same data directory and ports: objects, records, users and the JWT secret persist.
    with DevStack(dev.data_dir, port=dev.port, s3_port=dev.s3_port) as again:
        assert again.demo_password() == password
        record = requests.get(f"{again.url}/api/files/{ticket['id']}", headers=auth, timeout=10)
        assert record.status_code == 200, record.text  # the old token still verifies
        assert record.json()["status"] == "complete"
        usage = requests.get(again.url + "/api/files/usage", headers=login(again), timeout=10).json()
        assert usage["file_count"] == 1 and usage["used_bytes"] == len(content)
        assert read_object(again, ticket["s3_key"]) == content
        # CORS rules live in MiniStack's persisted state too.
        cors = again.s3().get_bucket_cors(Bucket=again.bucket)
        assert again.origin in cors["CORSRules"][0]["AllowedOrigins"]

        again.interrupt()
        assert again.proc.returncode == 0, again.log()


def workers_of(data_dir: Path) -> list[int]:
    """Return the pids of running task-queue workers of this data directory (by their schedule file)."""
    marker = str(data_dir / "celerybeat-schedule").encode()
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def test_the_task_queue_worker_runs_beside_the_api(server):
    log = server.data_dir / "worker.log"
    assert wait_until(lambda: log.exists() and " ready." in log.read_text(), timeout=60), server.log()
    text = log.read_text()
    assert "beat: Starting" in text and "s3drive.sweep" in text  # the scheduler, and the task it schedules
    assert workers_of(server.data_dir)
    assert "Worker:" in server.log_path.read_text()  # the banner; log() is only the last lines


def test_second_server_on_same_data_dir_is_refused(server):
    result = DevStack(server.data_dir).run(timeout=60)
    assert result.returncode == 1
    assert "already using" in result.stderr


def test_a_killed_dev_server_takes_its_worker_along(tmp_path):
    with DevStack(tmp_path / "data") as dev:
        log = dev.data_dir / "worker.log"
        assert wait_until(lambda: log.exists() and " ready." in log.read_text(), timeout=60), dev.log()
        assert workers_of(dev.data_dir)
        dev.proc.kill()  # no cleanup runs: the kernel tells the worker (PR_SET_PDEATHSIG)
        dev.proc.wait()
        assert wait_until(lambda: not workers_of(dev.data_dir), timeout=20), workers_of(dev.data_dir)
