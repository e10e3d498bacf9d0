"""Stock Uppy in a real browser: @uppy/core + @uppy/aws-s3 from npm, 6.x and 5.x, in Chromium.

The stack is built in the test: MiniStack (AUTH=true: signatures, signed headers, POST
policies and bucket CORS enforced as on AWS), the API served over HTTP with CORS for the
page's origin, and the page (tests/browser, bundled by esbuild) served from a third origin.
Playwright drives Debian's Chromium. Each run uploads three small files (POST forms from
/s3/params) and one 12 MiB file (multipart: 5 + 5 + 2 MiB parts) with no code beyond Uppy's
setup: no sizes in the meta and no confirm call. The test then checks that the API lists all
four as complete with their sizes (S3 redirected each finished form to s3drive, which confirmed
it), and S3's bytes.

Needs /usr/bin/chromium, PyPI playwright and npm (`.ci/run` installs them); without them
the tests skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import empty_tables
from live import Api, LiveApp, chromium_browser, serve_app, start_worker, stop_worker, unavailable, worker_settings
from s3servers import ministack_server

from s3drive.dev import ministack

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

BROWSER_DIR = Path(__file__).resolve().parent / "browser"
MIB = 1024**2
FILES = [
    {"name": "notes.txt", "type": "text/plain", "size": 1234, "seed": 1},
    {"name": "Grüße aus Zürich.json", "type": "application/json", "size": 70_000, "seed": 2},
    {"name": "pixel.png", "type": "image/png", "size": 300_001, "seed": 3},
    {"name": "clip.mp4", "type": "video/mp4", "size": 12 * MIB, "seed": 4},
]
UPLOAD_TIMEOUT_MS = 120_000


def file_bytes(size: int, seed: int) -> bytes:
    """Return the bytes tests/browser/src/run.js generates for a file."""
    return bytes((i * 31 + seed * 17 + (i >> 10)) & 0xFF for i in range(size))


def build_bundle() -> None:
    """Bundle the page with esbuild (npm ci first if needed) unless dist/ is newer than its sources."""
    sources = [BROWSER_DIR / "build.mjs", BROWSER_DIR / "package-lock.json", *(BROWSER_DIR / "src").glob("*.js")]
    outputs = [BROWSER_DIR / "dist" / "uppy5.js", BROWSER_DIR / "dist" / "uppy6.js"]
    newest_source = max(path.stat().st_mtime for path in sources)
    if all(path.exists() and path.stat().st_mtime >= newest_source for path in outputs):
        return
    npm, node = shutil.which("npm"), shutil.which("node")
    if not npm or not node:
        unavailable("node and npm are needed to bundle the Uppy test page")
    if not (BROWSER_DIR / "node_modules" / "esbuild").exists():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=BROWSER_DIR, check=True, timeout=600)
    subprocess.run([node, "build.mjs"], cwd=BROWSER_DIR, check=True, timeout=300)


class _StaticHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def chromium():
    """Debian's Chromium, with the Uppy page bundled."""
    with chromium_browser() as browser:
        build_bundle()
        yield browser


@pytest.fixture(scope="module")
def page_origin() -> Iterator[str]:
    """Serve tests/browser (the page and its bundles) on its own loopback origin."""
    handler = functools.partial(_StaticHandler, directory=str(BROWSER_DIR))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="uppy-page", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def stack(database_url, page_origin, tmp_path_factory) -> Iterator[LiveApp]:
    """MiniStack with a bucket (CORS for the page), the API served with CORS for the page, and a
    task-queue worker (it confirms Uppy's form uploads, which nobody reports)."""
    bucket = f"s3drive-uppy-{uuid.uuid4().hex[:10]}"
    tmp = tmp_path_factory.mktemp("uppy-stack")
    broker = f"sqla+sqlite:///{tmp / 'broker.sqlite3'}"
    with ministack_server(tmp_path_factory.mktemp("ministack-uppy")) as s3_url:
        ministack.ensure_bucket(s3_url, bucket, cors_origins=[page_origin])
        with serve_app(database_url, s3_url, bucket, CORS_ORIGINS=[page_origin], BROKER_URL=broker) as live:
            worker = start_worker(tmp / "worker.log", worker_settings(live, database_url, broker), beat=True)
            try:
                yield live
            finally:
                stop_worker(worker)


def run_page(chromium, page_origin: str, version: int, config: dict) -> dict:
    """Open the test page and run one Uppy upload of config's files; return what the page saw."""
    context = chromium.new_context()
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
    try:
        page.goto(f"{page_origin}/index.html")
        page.wait_for_function(f"typeof window.runUppy{version} === 'function'", timeout=30_000)
        page.set_default_timeout(UPLOAD_TIMEOUT_MS)
        result = page.evaluate(f"config => window.runUppy{version}(config)", config)
        result["versions"] = page.evaluate(f"window.uppyVersions{version}")
    finally:
        context.close()
    result["console"] = console
    return result


def complete_files(api: Api, count: int, timeout: float = 15) -> dict[str, dict]:
    """Return the user's complete files by key, once there are `count` (s3drive confirms a form
    upload within about a second of its arrival: nobody reports it)."""
    deadline = time.monotonic() + timeout
    while True:
        listed = api.get("/api/files/?limit=100").json()
        if len(listed["items"]) >= count or time.monotonic() > deadline:
            return {item["s3_key"]: item for item in listed["items"]}
        time.sleep(0.1)


@pytest.mark.parametrize("version", [6, 5])
def test_stock_uppy_uploads_through_s3drive(chromium, page_origin, stack, version):
    empty_tables(stack.app)
    api = Api(stack.base_url).login(f"uppy{version}")
    config = {"api": stack.base_url, "accessToken": api.token}
    if version == 6:
        response = api.post("/api/uppy/session")
        assert response.status_code == 200, response.text
        config["companionEndpoint"] = response.json()["companion_endpoint"]
        assert config["companionEndpoint"].startswith(f"{stack.base_url}/uppy/")
    config["files"] = FILES

    result = run_page(chromium, page_origin, version, config)

    assert result["versions"]["core"].startswith(f"{version}.") and result["versions"]["awsS3"].startswith(
        f"{version}."
    )
    assert result["failed"] == [], result["console"]
    by_name = {upload["name"]: upload for upload in result["succeeded"]}
    assert sorted(by_name) == sorted(spec["name"] for spec in FILES), result["console"]
    records = complete_files(api, len(FILES))
    s3 = stack.s3()
    for spec in FILES:
        upload = by_name[spec["name"]]
        file = records[upload["key"]]
        assert file["status"] == "complete", file
        assert file["size"] == spec["size"]
        assert file["file_name"] == spec["name"]
        assert file["content_type"] == spec["type"]
        stored = s3.get_object(Bucket=stack.bucket, Key=upload["key"])
        assert stored["ContentLength"] == spec["size"]
        assert stored["Body"].read() == file_bytes(spec["size"], spec["seed"]), spec["name"]
        assert upload["location"].startswith("http")

    usage = api.usage()
    assert usage["used_bytes"] == sum(spec["size"] for spec in FILES)
    assert usage["reserved_bytes"] == 0
    assert usage["file_count"] == len(FILES)
    assert s3.list_multipart_uploads(Bucket=stack.bucket).get("Uploads", []) == []
