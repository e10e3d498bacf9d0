"""The dev stack end to end: `python -m s3drive.dev` as a subprocess.

Each server gets free ports and its own data directory, so the tests run next to a
developer's `make run` and in parallel workers. MiniStack is the shared pinned
install from tests/s3servers.py.
"""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from s3servers import MINISTACK_VENV, install_ministack

from s3drive.dev import ministack

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 90.0
STOP_TIMEOUT = 10.0  # "within a few seconds"; the server gives MiniStack 5 s before SIGKILL.
BUCKET = "s3drive-dev"


class DevServer:
    """One dev-server subprocess on its own ports and data directory."""

    def __init__(self, data_dir: Path, port: int | None = None, s3_port: int | None = None):
        self.data_dir = data_dir
        self.port = port or ministack.free_port()
        self.s3_port = s3_port or ministack.free_port()
        while self.s3_port == self.port:
            self.s3_port = ministack.free_port()
        self.log_path = data_dir.parent / f"{data_dir.name}-devserver.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def origin(self) -> str:
        return self.url

    @property
    def s3_url(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def ministack_pid(self) -> int:
        return int((self.data_dir / "ministack" / "ministack.pid").read_text())

    def demo_password(self) -> str:
        return (self.data_dir / "demo-password").read_text().strip()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return "(no log)"

    def start(self) -> DevServer:
        """Start the server and wait for /healthz."""
        # Only what the test chooses: a developer's or CI's S3DRIVE_* (a Postgres URL,
        # say) must not leak into this isolated stack.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("S3DRIVE_", "AWS_"))}
        env["S3DRIVE_MINISTACK_VENV"] = str(MINISTACK_VENV)
        cmd = [sys.executable, "-m", "s3drive.dev", "--data-dir", str(self.data_dir)]
        cmd += ["--port", str(self.port), "--s3-port", str(self.s3_port)]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"dev server exited with {self.proc.returncode} before ready:\n{self.log()}")
            try:
                if requests.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        self.kill()
        pytest.fail(f"dev server not healthy after {START_TIMEOUT:.0f}s:\n{self.log()}")

    def interrupt(self) -> float:
        """Send SIGINT (Ctrl-C) and return how long the server took to exit."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT + 5)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"dev server ignored SIGINT:\n{self.log()}")
        return time.monotonic() - started

    def kill(self) -> None:
        """Last-resort cleanup: kill the server, then its MiniStack if it survived."""
        try:
            ministack_pid = self.ministack_pid()
        except (OSError, ValueError):
            ministack_pid = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if ministack_pid and _is_ministack(ministack_pid):
            os.killpg(ministack_pid, signal.SIGKILL)


def _is_ministack(pid: int) -> bool:
    try:
        return b"ministack" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _port_answers(port: int) -> bool:
    try:
        requests.get(f"http://127.0.0.1:{port}/", timeout=1)
    except requests.ConnectionError:
        return False
    return True


def login(server: DevServer) -> dict:
    response = requests.post(
        server.url + "/api/auth/login", json={"username": "demo", "password": server.demo_password()}, timeout=10
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def upload(server: DevServer, auth: dict, name: str, content: bytes, content_type: str = "text/plain") -> dict:
    """Presign, PUT the bytes with exactly the ticket's headers, confirm; return the ticket."""
    checksum = base64.b64encode(hashlib.sha256(content).digest()).decode()
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


def read_object(server: DevServer, key: str) -> bytes:
    client = ministack.s3_client(server.s3_url)
    return client.get_object(Bucket=BUCKET, Key=key)["Body"].read()


@pytest.fixture(scope="module")
def ministack_ready():
    install_ministack()


@pytest.fixture(scope="module")
def server(ministack_ready, tmp_path_factory):
    """One dev server shared by the read-mostly tests of this module."""
    dev = DevServer(tmp_path_factory.mktemp("devstack") / "data")
    dev.start()
    yield dev
    try:
        dev.interrupt()
    finally:
        dev.kill()


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
    for name in ("jwt-secret", "demo-password"):
        mode = stat.S_IMODE((server.data_dir / name).stat().st_mode)
        assert mode == 0o600, f"{name} has mode {oct(mode)}"


def test_demo_user_logs_in(server):
    auth = login(server)
    me = requests.get(server.url + "/api/auth/me", headers=auth, timeout=10)
    assert me.status_code == 200
    assert me.json()["username"] == "demo"


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
    object_url = f"{server.s3_url}/{BUCKET}/users/someone/file.txt"
    allowed = requests.options(object_url, headers={"Origin": server.origin, **preflight}, timeout=10)
    assert allowed.status_code == 200, allowed.text
    assert allowed.headers.get("Access-Control-Allow-Origin") == server.origin
    assert "PUT" in allowed.headers.get("Access-Control-Allow-Methods", "")

    other = requests.options(object_url, headers={"Origin": "http://evil.example", **preflight}, timeout=10)
    assert other.headers.get("Access-Control-Allow-Origin") != "http://evil.example"


def test_ctrl_c_stops_everything_and_restart_keeps_files(ministack_ready, tmp_path):
    dev = DevServer(tmp_path / "data")
    try:
        dev.start()
        auth = login(dev)
        content = b"still here after a restart\n"
        ticket = upload(dev, auth, "persist.txt", content)
        ministack_pid = dev.ministack_pid()
        password = dev.demo_password()

        took = dev.interrupt()
        assert dev.proc.returncode == 0, dev.log()
        assert took < STOP_TIMEOUT, f"took {took:.1f}s to stop"
        assert not _is_ministack(ministack_pid), "MiniStack outlived the dev server"
        assert not _port_answers(dev.port) and not _port_answers(dev.s3_port)
        assert "Stopped the dev stack." in dev.log()

        # Same data directory and ports: objects, records, users and the JWT secret persist.
        dev.start()
        assert dev.demo_password() == password
        record = requests.get(f"{dev.url}/api/files/{ticket['id']}", headers=auth, timeout=10)
        assert record.status_code == 200, record.text  # the old token still verifies
        assert record.json()["status"] == "complete"
        usage = requests.get(dev.url + "/api/files/usage", headers=login(dev), timeout=10).json()
        assert usage["file_count"] == 1 and usage["used_bytes"] == len(content)
        assert read_object(dev, ticket["s3_key"]) == content
        # CORS rules live in MiniStack's persisted state too.
        cors = ministack.s3_client(dev.s3_url).get_bucket_cors(Bucket=BUCKET)
        assert dev.origin in cors["CORSRules"][0]["AllowedOrigins"]

        dev.interrupt()
        assert dev.proc.returncode == 0, dev.log()
    finally:
        dev.kill()


def test_second_server_on_same_data_dir_is_refused(server):
    other = DevServer(server.data_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("S3DRIVE_", "AWS_"))}
    cmd = [sys.executable, "-m", "s3drive.dev", "--data-dir", str(server.data_dir)]
    cmd += ["--port", str(other.port), "--s3-port", str(other.s3_port)]
    result = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "already using" in result.stderr
