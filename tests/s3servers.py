"""Real S3 endpoints over HTTP for end-to-end tests: moto server and MiniStack.

Plain context managers so conftest.py can wrap them in session fixtures.
"""

from __future__ import annotations

import logging
import os
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from moto.server import ThreadedMotoServer

from s3drive.dev import ministack

REPO_ROOT = Path(__file__).resolve().parents[1]
# Kept outside tmp dirs so the install (~10 s) is paid once per machine.
MINISTACK_VENV = Path(os.environ.get("S3DRIVE_MINISTACK_VENV", REPO_ROOT / ".cache" / "ministack-venv"))
STARTUP_TIMEOUT = 60.0
START_ATTEMPTS = 3


class S3ServerError(RuntimeError):
    """A test S3 server could not be provided."""


@contextmanager
def _quiet_logger(name: str, level: int = logging.WARNING) -> Iterator[None]:
    """Raise a logger's level for the duration, then restore it."""
    logger = logging.getLogger(name)
    previous = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)


@contextmanager
def moto_server() -> Iterator[str]:
    """Run a moto S3 server thread on a free loopback port and yield its URL."""
    # Port 0 lets the OS choose, so parallel xdist workers never collide.
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    # werkzeug logs every request to stderr, burying real test output.
    with _quiet_logger("werkzeug"):
        server.start()
        try:
            host, port = server.get_host_and_port()
            yield f"http://{host}:{port}"
        finally:
            server.stop()


def reset_moto(endpoint_url: str) -> None:
    """Drop all buckets and objects held by a moto server."""
    # moto keeps state in process globals shared with mock_aws; reset explicitly.
    _post(endpoint_url.rstrip("/") + "/moto-api/reset")


def reset_ministack(endpoint_url: str) -> None:
    """Drop all buckets and objects held by a MiniStack server."""
    _post(endpoint_url.rstrip("/") + "/_ministack/reset")


def _post(url: str) -> None:
    """POST an empty body to url and fail on a non-2xx answer."""
    request = urllib.request.Request(url, data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def install_ministack(venv_dir: Path = MINISTACK_VENV) -> Path:
    """Install the pinned MiniStack or raise S3ServerError saying why."""
    try:
        return ministack.ensure_ministack(venv_dir)
    except (ministack.MinistackError, OSError) as exc:
        raise S3ServerError(
            f"MiniStack {ministack.MINISTACK_VERSION} is required for the end-to-end "
            f"S3 tests but could not be installed into {venv_dir} (needs PyPI once; "
            f"set S3DRIVE_MINISTACK_VENV to use another install): {exc}"
        ) from exc


def _log_tail(log_path: Path, limit: int = 3000) -> str:
    """Return the end of a log file, or a note that it is missing."""
    try:
        return log_path.read_text(errors="replace")[-limit:]
    except OSError:
        return "(no log)"


def _start_ready(executable: Path, data_dir: Path, persist: bool) -> tuple[subprocess.Popen, str]:
    """Start MiniStack on a fresh port, retrying if another process grabbed it."""
    log_path = data_dir / "ministack.log"
    error: Exception | None = None
    for _ in range(START_ATTEMPTS):
        # free_port can race with other processes; a lost race exits MiniStack
        # early and wait_ready notices, so we just try another port.
        port = ministack.free_port()
        proc = ministack.start_ministack(
            port=port,
            data_dir=data_dir,
            persist=persist,
            log_path=log_path,
            executable=executable,
        )
        url = ministack.endpoint_url(port)
        try:
            ministack.wait_ready(url, timeout=STARTUP_TIMEOUT, proc=proc)
            return proc, url
        except ministack.MinistackError as exc:
            ministack.stop_process(proc)
            error = exc
    raise S3ServerError(f"MiniStack did not start: {error}\n--- log ---\n{_log_tail(log_path)}")


@contextmanager
def ministack_server(tmp_dir: Path, *, persist: bool = False) -> Iterator[str]:
    """Run MiniStack (S3 only, AUTH=true, key test/test) and yield its URL."""
    executable = install_ministack()
    data_dir = Path(tmp_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    proc, url = _start_ready(executable, data_dir, persist)
    try:
        yield url
    finally:
        ministack.stop_process(proc)


@contextmanager
def s3_servers(make_dir: Callable[[], Path]) -> Iterator[Callable[[str], str]]:
    """Yield url_of(name): the URL of "moto" (moto_server) or "ministack" (ministack_server in
    make_dir()), each started on first use; all stop at the end."""
    urls: dict[str, str] = {}
    with ExitStack() as servers:

        def url_of(name: str) -> str:
            if name not in urls:
                server = moto_server() if name == "moto" else ministack_server(make_dir())
                urls[name] = servers.enter_context(server)
            return urls[name]

        yield url_of
