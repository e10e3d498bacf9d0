"""What the end-to-end tests share: the app served over HTTP, Chromium, HeadObject-or-None.

For a boto3 client of an emulator, use s3drive.ministack.s3_client.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from botocore.exceptions import ClientError
from werkzeug.serving import WSGIRequestHandler, make_server

from s3drive.app import close_app

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
