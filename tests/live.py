"""What the end-to-end tests share: the app served over HTTP (against moto server or
MiniStack) with a logged-in client of it, the dev stack as a subprocess, Chromium,
HeadObject-or-None.

For a boto3 client of an emulator, use s3drive.dev.ministack.s3_client.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from botocore.exceptions import ClientError
from conftest import empty_tables, make_test_app
from s3servers import MINISTACK_VENV, install_ministack, s3_servers
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


# -- the app served against a real S3 endpoint ---------------------------------------------

PASSWORD = "correct horse battery"
HTTP_TIMEOUT = 30


def s3_app(database_url: str, s3_url: str, bucket: str, *, confirm: str = "list", **settings):
    """Create a test app that talks to the S3 endpoint at s3_url (path-style) and its bucket."""
    return make_test_app(
        database_url,
        S3_BUCKET=bucket,
        S3_ENDPOINT_URL=s3_url,
        S3_ADDRESSING_STYLE="path",
        S3_CONFIRM=confirm,
        **settings,
    )


@dataclass
class LiveApp:
    """The broker app served over HTTP in a thread, and what it talks to."""

    app: object
    base_url: str
    endpoint: str  # "moto" or "ministack"
    s3_url: str
    bucket: str
    confirm: str
    served: ServedApp

    @property
    def storage(self):
        return self.app.extensions["s3drive.storage"]

    def s3(self):
        """Return a boto3 client of the S3 endpoint."""
        return ministack.s3_client(self.s3_url)

    def fresh(self) -> None:
        """Empty the tables and make sure the bucket exists."""
        empty_tables(self.app)
        # Created per test, not per module: another module's mock_aws() resets moto's
        # process-wide state (the moto server thread shares it) when tests interleave.
        ministack.ensure_bucket(self.s3_url, self.bucket, cors_origins=[])

    def close(self) -> None:
        self.served.close()

    def __enter__(self) -> LiveApp:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def serve_app(
    database_url: str, s3_url: str, bucket: str, *, confirm: str = "list", endpoint: str = "ministack", **settings
) -> LiveApp:
    """Serve an s3_app over HTTP on a free loopback port."""
    app = s3_app(database_url, s3_url, bucket, confirm=confirm, **settings)
    served = ServedApp(app, f"s3drive-{endpoint}-{confirm}")
    return LiveApp(app, served.url, endpoint, s3_url, bucket, confirm, served)


@contextmanager
def served_apps(database_url: str, bucket_prefix: str, tmp_path_factory) -> Iterator[Callable[..., LiveApp]]:
    """Yield get(endpoint, confirm, **settings): one served app per distinct call, made on first
    use and reused after, on one bucket; the S3 servers ("moto", "ministack") too start on first
    use. All stop at the end."""
    bucket = f"{bucket_prefix}-{uuid.uuid4().hex[:12]}"
    apps: dict[tuple, LiveApp] = {}
    with s3_servers(lambda: tmp_path_factory.mktemp("ministack")) as s3_url_of:

        def get(endpoint: str, confirm: str, **settings) -> LiveApp:
            key = (endpoint, confirm, *sorted(settings.items()))
            if key not in apps:
                s3_url = s3_url_of(endpoint)
                apps[key] = serve_app(database_url, s3_url, bucket, confirm=confirm, endpoint=endpoint, **settings)
            return apps[key]

        try:
            yield get
        finally:
            for live in apps.values():
                live.close()


@dataclass
class Api:
    """A logged-in HTTP client of the broker."""

    base_url: str
    session: requests.Session = field(default_factory=requests.Session)

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        return self.session.request(method, self.base_url + path, **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def login(self, username: str) -> Api:
        """Register and log in; keep the bearer token on the session."""
        response = self.post("/api/auth/register", json={"username": username, "password": PASSWORD})
        assert response.status_code == 201, response.text
        response = self.post("/api/auth/login", json={"username": username, "password": PASSWORD})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["token_type"] == "Bearer"
        self.session.headers["Authorization"] = f"Bearer {body['access_token']}"
        return self

    @property
    def token(self) -> str:
        """The access token login keeps on the session."""
        return self.session.headers["Authorization"].removeprefix("Bearer ")

    def clone(self) -> Api:
        """Return another client with the same token (requests sessions are not thread-safe)."""
        other = Api(self.base_url)
        other.session.headers["Authorization"] = self.session.headers["Authorization"]
        return other

    def presign(self, specs: list[dict]) -> list[dict]:
        """Presign a batch; every file must be accepted."""
        response = self.post("/api/files/upload/", json={"files": specs})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["total_failed"] == 0, body["failed"]
        assert body["total_successful"] == len(specs)
        return body["successful"]

    def presign_one(self, spec: dict) -> dict:
        """Presign one file with the single (non-batch) form."""
        response = self.post("/api/files/upload/", json=spec)
        assert response.status_code == 200, response.text
        return response.json()

    def confirm_one(self, file_id: str) -> requests.Response:
        return self.post("/api/files/confirm_upload/", json={"id": file_id})

    def confirm_many(self, ids: list[str]) -> dict:
        response = self.post("/api/files/confirm_uploads/", json={"ids": ids})
        assert response.status_code == 200, response.text
        return response.json()

    def file(self, file_id: str) -> dict:
        response = self.get(f"/api/files/{file_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def usage(self) -> dict:
        response = self.get("/api/files/usage")
        assert response.status_code == 200, response.text
        return response.json()


class S3Calls:
    """Count the S3 API calls the broker's boto3 client makes (botocore before-call events)."""

    def __init__(self, client):
        self.client = client
        self.names: list[str] = []
        self._lock = threading.Lock()

    def _record(self, model, **kwargs):
        with self._lock:
            self.names.append(model.name)

    def __enter__(self) -> S3Calls:
        self.client.meta.events.register("before-call.s3", self._record)
        return self

    def __exit__(self, *exc) -> None:
        self.client.meta.events.unregister("before-call.s3", self._record)


# -- task-queue workers ------------------------------------------------------------------------


def start_worker(
    log_path: Path, settings: Mapping[str, str], *options: str, processes: int = 0, beat: bool = False
) -> subprocess.Popen:
    """Start `celery -A wsgi:celery worker` as the Procfile does, with these S3DRIVE_*/AWS_* settings
    only (the caller's own are dropped), logging to log_path; `options` go to the worker. One process
    (solo pool) unless `processes` asks for a prefork pool of that many children; with `beat`, the
    scheduler runs in it too (the periodic tasks: the upload watcher, the sweeper)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("S3DRIVE_", "AWS_"))}
    env.update(settings)
    pool = ["--pool=prefork", f"--concurrency={processes}"] if processes else ["--pool=solo"]
    if beat:
        pool += ["--beat", f"--schedule={log_path.with_suffix('.schedule')}"]
    command = [sys.executable, "-m", "celery", "-A", "wsgi:celery", "worker", *pool, "--loglevel=info"]
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [*command, *options], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )


def worker_settings(live: LiveApp, database_url: str, broker: str, **settings: str) -> dict[str, str]:
    """Return the settings of a worker serving a live app: its database, S3, bucket and broker."""
    return {
        "S3DRIVE_DATABASE_URL": database_url,
        "S3DRIVE_BROKER_URL": broker,
        "S3DRIVE_S3_BUCKET": live.bucket,
        "S3DRIVE_S3_ENDPOINT_URL": live.s3_url,
        "S3DRIVE_S3_ADDRESSING_STYLE": "path",
        "S3DRIVE_S3_CONFIRM": live.confirm,
        "S3DRIVE_JWT_SECRET_KEY": "worker-" + "x" * 40,
        "S3DRIVE_PUBLIC_URL": live.base_url,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        # The same app as the served one: inspection on or off as there (off by default in tests).
        "S3DRIVE_INSPECT": str(live.app.config["INSPECT"]).lower(),
        **{f"S3DRIVE_{name}": str(value) for name, value in settings.items()},
    }


def stop_worker(worker: subprocess.Popen, timeout: float = 30) -> None:
    """Stop a worker as a supervisor does (SIGTERM: it finishes its task), killing it if it hangs."""
    if worker.poll() is None:
        worker.terminate()
        try:
            worker.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


@dataclass
class Env:
    """One test's world: a served app, a logged-in API client and a direct S3 client."""

    live: LiveApp
    api: Api
    s3: object

    @classmethod
    def open(cls, live: LiveApp, user_prefix: str = "user"):
        """Empty the app's tables, make sure its bucket exists, and log a new user in."""
        live.fresh()
        api = Api(live.base_url).login(f"{user_prefix}-{uuid.uuid4().hex[:8]}")
        return cls(live=live, api=api, s3=live.s3())

    @property
    def bucket(self) -> str:
        return self.live.bucket

    def head(self, key: str) -> dict | None:
        return head_or_none(self.s3, self.bucket, key)

    def read(self, key: str) -> bytes:
        return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()


def head_or_none(s3, bucket: str, key: str) -> dict | None:
    """Return HeadObject's answer (checksums included), or None when the object is absent."""
    try:
        return s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    except ClientError as error:
        if error.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


# -- the browser -----------------------------------------------------------------------------


@contextmanager
def chromium_browser() -> Iterator[object]:
    """Launch Debian's Chromium through Playwright (its own browser downloads are not used)."""
    try:
        from playwright.sync_api import sync_playwright  # optional dependency
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
            except requests.RequestException:  # not listening yet, or too busy starting to answer
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


# -- the example page in the browser, on the dev stack ------------------------------------------
# Shared by the browser modules (test_frontend_*.py, test_drive_browser.py): a Tab per user, and
# what a person does on the page (register, pick and upload files) or sees there. The fixtures
# `chromium` and `page` are test_frontend_browser.py's.

ARTIFACTS = REPO_ROOT / "test-artifacts"  # screenshots, git-ignored
MIB = 1024**2
PART_SIZE = 5 * MIB  # what the page asks for as part size
TIMEOUT_MS = 60_000
PART_PUTS = "**/*partNumber=*"

PAGE_STACK_SETTINGS = {
    "S3DRIVE_MULTIPART_THRESHOLD": str(PART_SIZE),
    # S3DRIVE_DEFAULT_PART_SIZE stays 16 MiB: PART_SIZE is what the page asks for.
    # Each test signs in through the page; the default 10 a minute is for real clients.
    "S3DRIVE_LOGIN_RATE_LIMIT": "1000 per minute",
    # These uploads are random bytes under media names, which inspection rightly refuses: the page's
    # inspection display has its own test, with real files (test_frontend_inspection.py).
    "S3DRIVE_INSPECT": "false",
}


class Tab:
    """A fresh browser context with one page on the app; it keeps console errors and page errors."""

    def __init__(self, chromium, stack: DevStack, viewport: Mapping[str, int] | None = None, **options):
        viewport = dict(viewport or {"width": 1100, "height": 900})
        self.context = chromium.new_context(accept_downloads=True, viewport=viewport, **options)
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.problems: list[str] = []
        self.page.on("pageerror", lambda error: self.problems.append(f"pageerror: {error}"))
        self.page.on("console", self._on_console)
        self.page.goto(stack.url + "/")

    def _on_console(self, message) -> None:
        # Refused requests (a wrong password, a refused upload) log "Failed to load resource": expected.
        if message.type == "error" and "Failed to load resource" not in message.text:
            self.problems.append(f"console: {message.text}")

    def assert_no_problems(self) -> None:
        assert self.problems == [], self.problems

    def close(self) -> None:
        self.context.close()


def write_file(directory: Path, name: str, size: int) -> Path:
    """Write size random bytes to directory/name (subfolders created)."""
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    return path


def register(page, username: str) -> None:
    """Create an account on the page; it signs in and shows the app."""
    page.get_by_label("Username", exact=True).fill(username)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.wait_for_selector("#app:not([hidden])")
    assert page.inner_text("#current-user") == username


def page_auth(page) -> dict:
    """Return Authorization headers with the page's own access token (kept in sessionStorage)."""
    token = page.evaluate("() => JSON.parse(sessionStorage.getItem('s3drive.tokens')).access_token")
    return {"Authorization": f"Bearer {token}"}


def part_number(url: str) -> int:
    return int(parse_qs(urlsplit(url).query)["partNumber"][0])


def queue_states(page) -> dict[str, str]:
    """Return {name in the upload list: its state class}."""
    return page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('.queue-item')].map(
            (row) => [row.querySelector('.queue-name').textContent,
                      [...row.classList].find((c) => c.startsWith('state-')).slice(6)]))"""
    )


def wait_for_states(page, count: int, states: tuple[str, ...] = ("complete",)) -> None:
    """Wait until `count` rows of the upload list are in one of `states`."""
    page.wait_for_function(
        "([count, states]) => [...document.querySelectorAll('.queue-item')].filter("
        "(row) => states.some((s) => row.classList.contains('state-' + s))).length >= count",
        arg=[count, list(states)],
    )


def listed_names(page) -> list[str]:
    return page.locator("#files-body .file-name").all_inner_texts()


def api_files(stack: DevStack, headers: dict, **params) -> list[dict]:
    response = requests.get(stack.url + "/api/files/", params=params, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["items"]


def download_from_page(page, name: str):
    """Click a file's Download button; return (bytes, suggested name, the presigned URL)."""
    urls: list[str] = []

    def remember(request):
        if request.method == "GET" and "X-Amz-Signature=" in request.url:
            urls.append(request.url)

    page.on("request", remember)
    try:
        with page.expect_download() as info:
            page.get_by_role("button", name=f"Download {name}", exact=True).click()
        download = info.value
        data = Path(download.path()).read_bytes()
    finally:
        page.remove_listener("request", remember)
    return data, download.suggested_filename, urls[-1]


def unnamed_controls(page) -> list[str]:
    """Return the visible controls that have no name a screen reader can say."""
    return page.evaluate(
        """() => [...document.querySelectorAll('button, input, progress, select, textarea')]
            .filter((el) => !el.closest('[hidden]'))
            .filter((el) => !(el.labels?.length || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby')
                              || (el.tagName === 'BUTTON' && el.textContent.trim())))
            .map((el) => el.outerHTML.slice(0, 80))"""
    )


def record_presigned(page) -> list[str]:
    """Return a list that fills with the names of the files the page asks the server to presign."""
    names: list[str] = []

    def remember(request) -> None:
        if request.url.endswith("/api/files/upload/"):
            names.extend(spec["file_name"] for spec in request.post_data_json["files"])

    page.on("request", remember)
    return names


def upload_files(page, paths: list[Path]) -> None:
    """Pick files, press Upload, and wait until all of them are complete."""
    page.get_by_label("Choose files").set_input_files(paths)
    page.get_by_role("button", name="Upload", exact=True).click()
    wait_for_states(page, len(paths))


def upload_by_script(stack: DevStack, headers: dict, contents: dict[str, bytes], folder: str = "") -> None:
    """Presign, PUT and confirm text files (name -> bytes) through the API, as a script would."""
    specs = [
        {"file_name": name, "content_type": "text/plain", "file_size": len(data), "folder": folder}
        for name, data in contents.items()
    ]
    batch = requests.post(f"{stack.url}/api/files/upload/", json={"files": specs}, headers=headers, timeout=30).json()
    for ticket, data in zip(batch["successful"], contents.values(), strict=True):
        assert requests.put(ticket["presigned_url"], data=data, headers=ticket["headers"], timeout=10).ok
    ids = [ticket["id"] for ticket in batch["successful"]]
    confirmed = requests.post(f"{stack.url}/api/files/confirm_uploads/", json={"ids": ids}, headers=headers, timeout=30)
    assert confirmed.json()["total_successful"] == len(contents)


# Visible elements that stick out of the viewport, and whether the page itself scrolls sideways.
OVERFLOW = """() => {
    const width = document.documentElement.clientWidth;
    const out = [...document.querySelectorAll('body *')].filter((el) => {
        const box = el.getBoundingClientRect();
        return el.getClientRects().length && !el.closest('.visually-hidden, .skip-link')
            && (box.width > width || box.right > width + 0.5);
    }).map((el) => `${el.tagName}.${el.className}: ${el.getBoundingClientRect().right}`);
    const scrolled = document.documentElement.scrollWidth;
    if (scrolled > width) out.push(`page scrolls to ${scrolled}`);
    return out;
}"""


def screenshot(page, name: str, **options) -> Path:
    """Save a screenshot of the page as test-artifacts/<name>.png (full page unless told)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=options.pop("full_page", True), **options)
    return path


# axe-core's impacts that fail a check; "moderate" and "minor" ones are reported, not failed.
AXE_FAILING = ("serious", "critical")


def axe_violations(page, context: str | None = None) -> list[str]:
    """Run axe-core (axe-playwright-python's bundled copy) on the page, or on the part that the CSS
    selector context names; return its serious and critical violations as one line each."""
    try:
        from axe_playwright_python.sync_playwright import Axe  # a dev requirement
    except ImportError:
        unavailable("axe-playwright-python is not installed")
    results = Axe().run(page, context=context)
    return [
        f"{violation['impact']}: {violation['id']} ({violation['help']}) at "
        + ", ".join(str(node["target"]) for node in violation["nodes"][:5])
        for violation in results.response["violations"]
        if violation["impact"] in AXE_FAILING
    ]
