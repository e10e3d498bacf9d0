"""What the end-to-end tests share: the app served over HTTP, the dev stack as a
subprocess, Chromium, HeadObject-or-None.

For a boto3 client of an emulator, use s3drive.dev.ministack.s3_client.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from botocore.exceptions import ClientError
from s3servers import MINISTACK_VENV, install_ministack
from werkzeug.serving import WSGIRequestHandler, make_server

from s3drive.app import close_app
from s3drive.dev import ministack

REPO_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("S3DRIVE_CHROMIUM", "/usr/bin/chromium")
# Debian's Chromium under Playwright needs these in containers without a GPU or a sandbox.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def unavailable(reason: str, what: str = "browser test"):
    """Skip when a prerequisite is missing, but fail in CI, which installs them all."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} prerequisite missing in CI: {reason}")
    pytest.skip(reason)


class _QuietHandler(WSGIRequestHandler):
    """A request handler that does not log every request to stderr."""

    def log_request(self, *args, **kwargs):
        pass


class ServedApp:
    """An app served over HTTP on a free loopback port by a werkzeug server thread."""

    def __init__(self, app, name: str = "s3drive-test"):
        self.app = app
        self.server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, name=name, daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Stop serving, then release the app (close_app)."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
        close_app(self.app)

    def __enter__(self) -> ServedApp:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


@contextmanager
def chromium_browser() -> Iterator[object]:
    """Launch Debian's Chromium through Playwright (its own browser downloads are not used)."""
    try:
        from playwright.sync_api import sync_playwright  # noqa: PLC0415 - optional dependency
    except ImportError:
        unavailable("PyPI playwright is not installed")
    if not os.path.exists(CHROMIUM):
        unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def head_or_none(s3, bucket: str, key: str) -> dict | None:
    """Return HeadObject's answer (checksums included), or None when the object is absent."""
    try:
        return s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    except ClientError as error:
        if error.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


# -- the dev stack -------------------------------------------------------------------------

DEV_START_TIMEOUT = 90.0
DEV_STOP_TIMEOUT = 10.0  # "within a few seconds"; the server gives MiniStack 5 s before SIGKILL.


def is_ministack(pid: int) -> bool:
    """Tell whether pid is a running MiniStack process."""
    try:
        return b"ministack" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


class DevStack:
    """`python -m s3drive.dev` as a subprocess, on its own ports and data directory.

    The ports are free ones unless given (a restart on the same ports passes the first
    run's). The environment is the caller's without any S3DRIVE_* or AWS_* (a developer's or
    CI's Postgres URL, say, must not leak into this isolated stack), plus `env`, e.g. a
    smaller multipart threshold. As a context manager: started on entry, stopped on exit.
    """

    bucket = "s3drive-dev"  # the bucket the dev server creates

    def __init__(self, data_dir: Path, *, env: Mapping[str, str] | None = None, port: int = 0, s3_port: int = 0):
        self.data_dir = data_dir
        self.env = dict(env or {})
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

    def s3(self):
        """Return a boto3 client for the stack's MiniStack."""
        return ministack.s3_client(self.s3_url)

    def ministack_pid(self) -> int:
        return int((self.data_dir / "ministack" / "ministack.pid").read_text())

    def demo_password(self) -> str:
        return (self.data_dir / "demo-password").read_text().strip()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return "(no log)"

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "s3drive.dev", "--data-dir", str(self.data_dir)]
        return cmd + ["--port", str(self.port), "--s3-port", str(self.s3_port)]

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("S3DRIVE_", "AWS_"))}
        return {**env, "S3DRIVE_MINISTACK_VENV": str(MINISTACK_VENV), **self.env}

    def run(self, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run the server in the foreground until it exits; return its exit status and output."""
        return subprocess.run(
            self.command(), cwd=REPO_ROOT, env=self.environment(), capture_output=True, text=True, timeout=timeout
        )

    def start(self) -> DevStack:
        """Start the server (the shared MiniStack install first) and wait for /healthz."""
        install_ministack()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=REPO_ROOT,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + DEV_START_TIMEOUT
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
        pytest.fail(f"dev server not healthy after {DEV_START_TIMEOUT:.0f}s:\n{self.log()}")

    def interrupt(self) -> float:
        """Send SIGINT (Ctrl-C) and return how long the server took to exit."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=DEV_STOP_TIMEOUT + 5)
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
        if ministack_pid and is_ministack(ministack_pid):
            os.killpg(ministack_pid, signal.SIGKILL)

    def stop(self) -> None:
        """Ctrl-C the server if it runs (it stops its MiniStack too), then kill whatever is left."""
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.interrupt()
        finally:
            self.kill()

    def __enter__(self) -> DevStack:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
