"""The example page (frontend_example/) in a real browser, against the dev stack.

`python -m s3drive.dev` runs as a subprocess on free ports with its own data
directory (MiniStack with AUTH=true: signatures, signed headers and bucket CORS are
enforced as on AWS), with a 5 MiB multipart threshold and part size so that a 30 MiB
file goes multipart in five-megabyte parts. Playwright drives Debian's Chromium.

What the page must do here, as a person would: register; upload five files, one of
them multipart; survive a reload in the middle of the big one and, once the file is
picked again, send only the parts S3 does not hold yet; list the files; download one
(same bytes); rename one (new name in the list and in the download's
Content-Disposition); delete one. A second test covers folders (picked, browsed,
searched), a refused file type's message, cancelling a multipart upload, and paging.

Needs /usr/bin/chromium and PyPI playwright (`.ci/run` installs both); without them the
tests skip, except under CI=true, where they fail. A screenshot of the file list is
saved to test-artifacts/frontend-files.png.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import requests
from helpers import sha256_b64
from live import REPO_ROOT, DevStack, chromium_browser, unavailable
from s3servers import S3ServerError, install_ministack

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

ARTIFACTS = REPO_ROOT / "test-artifacts"
MIB = 1024**2
PART_SIZE = 5 * MIB
TIMEOUT_MS = 60_000
PASSWORD = "correct horse battery"
PART_PUTS = "**/*partNumber=*"


# -- the dev stack and the browser ----------------------------------------------------------

STACK_SETTINGS = {
    "S3DRIVE_MULTIPART_THRESHOLD": str(PART_SIZE),
    "S3DRIVE_DEFAULT_PART_SIZE": str(PART_SIZE),
    # Each test signs in through the page; the default 10 a minute is for real clients.
    "S3DRIVE_LOGIN_RATE_LIMIT": "1000 per minute",
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The dev stack with a 5 MiB multipart threshold and part size."""
    try:
        install_ministack()  # DevStack.start would too: here a missing MiniStack skips, as for Chromium.
    except S3ServerError as error:
        unavailable(str(error))
    with DevStack(tmp_path_factory.mktemp("frontend") / "data", env=STACK_SETTINGS) as server:
        yield server


@pytest.fixture(scope="module")
def chromium():
    """Debian's Chromium through Playwright."""
    with chromium_browser() as browser:
        yield browser


@pytest.fixture
def page(chromium, stack):
    """A fresh browser context on the page; console errors and page errors fail the test."""
    context = chromium.new_context(accept_downloads=True, viewport={"width": 1100, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []

    def on_console(message):
        # Refused requests (a wrong password, a refused upload) log "Failed to load resource": expected.
        if message.type == "error" and "Failed to load resource" not in message.text:
            problems.append(f"console: {message.text}")

    tab.on("pageerror", lambda error: problems.append(f"pageerror: {error}"))
    tab.on("console", on_console)
    tab.goto(stack.url + "/")
    yield tab
    context.close()
    assert problems == [], problems


# -- helpers ---------------------------------------------------------------------------------


def write_file(directory: Path, name: str, size: int) -> Path:
    """Write size random bytes to directory/name (subfolders created)."""
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    return path


def register(page, username: str) -> None:
    """Create an account on the page; it signs in and shows the app."""
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
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


# -- the tests -------------------------------------------------------------------------------


def test_upload_resume_after_reload_list_download_rename_delete(page, stack, tmp_path):
    sizes = {"notes.txt": 1234, "data.json": 70_000, "pixel.png": 300_001, "song.mp3": 2 * MIB + 17}
    small = {name: write_file(tmp_path, name, size) for name, size in sizes.items()}
    big = write_file(tmp_path, "film.mp4", 30 * MIB)
    contents = {path.name: path.read_bytes() for path in [*small.values(), big]}
    username = "pagetester"
    register(page, username)

    # Part PUTs go through this route so their bodies can be counted; in the first visit,
    # parts 4 and up are held (never answered), so the reload lands in the middle.
    sent: dict[str, list[tuple[int, int]]] = {"before": [], "after": []}
    held: list = []
    finished_parts: list[int] = []
    phase = {"name": "before"}

    def on_part(route):
        request = route.request
        number = part_number(request.url)
        if request.method == "PUT" and phase["name"] == "before" and number >= 4:
            held.append(number)
            return  # never continued: the reload cancels it
        if request.method == "PUT":
            sent[phase["name"]].append((number, len(request.post_data_buffer or b"")))
        route.continue_()

    workers: list[str] = []
    page.on("worker", lambda worker: workers.append(worker.url))
    confirms: list[str] = []
    page.on("request", lambda request: confirms.append(request.url) if "/confirm_upload" in request.url else None)

    def on_finished(request):
        if request.method == "PUT" and "partNumber=" in request.url and phase["name"] == "before":
            finished_parts.append(part_number(request.url))

    page.route(PART_PUTS, on_part)
    page.on("requestfinished", on_finished)

    page.get_by_label("Choose files").set_input_files([*small.values(), big])
    assert sorted(queue_states(page)) == sorted(contents)
    page.get_by_role("button", name="Upload", exact=True).click()

    # The four small files finish and are confirmed while the big one is stuck half-way.
    wait_for_states(page, 4)
    page.wait_for_function("() => document.querySelector('.queue-item.state-uploading, .queue-item.state-resuming')")
    deadline = time.monotonic() + 30
    while (len(finished_parts) < 3 or not held) and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert sorted(finished_parts) == [1, 2, 3] and held, (finished_parts, held)
    states = queue_states(page)
    assert [states[name] for name in small] == ["complete"] * 4, states
    assert [urlsplit(url).path for url in confirms] == ["/api/files/confirm_uploads/"]  # one batch for all four
    assert states["film.mp4"] in ("uploading", "resuming"), states
    assert sum(size for _, size in sent["before"]) == 3 * PART_SIZE
    # The big file's row shows how far it got; the overall bar counts all files.
    big_row = page.locator(".queue-item", has_text="film.mp4")
    assert "of 30.0 MiB" in big_row.locator(".rate").inner_text()
    assert page.locator("#overall-bar").is_visible()
    total_mib = sum(len(data) for data in contents.values()) / MIB
    assert f"of {total_mib:.1f} MiB" in page.inner_text("#overall-text")
    # SHA-256 was computed off the main thread.
    assert any(url.endswith("/hash-worker.js") for url in workers), workers

    phase["name"] = "after"
    page.reload()
    page.wait_for_selector("#app:not([hidden])")  # still signed in (sessionStorage)
    notice = page.locator("#resume-notice")
    notice.wait_for(state="visible")
    assert "film.mp4" in notice.inner_text() and "15.0 MiB of 30.0 MiB" in notice.inner_text(), notice.inner_text()
    assert sorted(listed_names(page)) == sorted(small)  # the small ones were confirmed before the reload

    page.get_by_label("Choose files").set_input_files([big])
    assert "continues the interrupted upload" in page.locator(".queue-item .queue-state").inner_text()
    page.get_by_role("button", name="Upload", exact=True).click()
    wait_for_states(page, 1, ("complete", "failed", "cancelled"))
    assert queue_states(page) == {"film.mp4": "complete"}, page.inner_text("#queue")
    # Only parts 4–6 crossed the wire again: fewer bytes than the file holds.
    after = sum(size for _, size in sent["after"])
    assert sorted(number for number, _ in sent["after"]) == [4, 5, 6], sent
    assert 0 < after < big.stat().st_size
    assert after == big.stat().st_size - 3 * PART_SIZE
    page.unroute(PART_PUTS)

    # All five are listed, complete; S3 holds the exact bytes; small files carry the SHA-256 the worker computed.
    page.wait_for_function("() => document.querySelectorAll('#files-body tr').length === 5")
    assert sorted(listed_names(page)) == sorted(contents)
    assert page.locator("#resume-notice").is_hidden()
    headers = page_auth(page)
    records = {item["file_name"]: item for item in api_files(stack, headers)}
    assert sorted(records) == sorted(contents)
    s3 = stack.s3()
    for name, data in contents.items():
        record = records[name]
        assert record["status"] == "complete" and record["size"] == len(data)
        assert s3.get_object(Bucket=stack.bucket, Key=record["s3_key"])["Body"].read() == data, name
        expected_checksum = None if name == "film.mp4" else sha256_b64(data)
        assert record["checksum_sha256"] == expected_checksum, name
    assert s3.list_multipart_uploads(Bucket=stack.bucket).get("Uploads", []) == []
    usage_text = page.inner_text("#usage-text")
    assert "5 files" in usage_text, usage_text

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "frontend-files.png"), full_page=True)

    # Download: the same bytes, under the file's name.
    data, suggested, _ = download_from_page(page, "pixel.png")
    assert data == contents["pixel.png"]
    assert suggested == "pixel.png"

    # Rename (UTF-8 name): the list shows it, and the download names it in Content-Disposition.
    new_name = "Grüße – meeting notes.txt"
    page.get_by_role("button", name="Rename notes.txt", exact=True).click()
    field = page.get_by_label("New name for notes.txt")
    assert field.evaluate("el => el === document.activeElement")
    field.fill(new_name)
    field.press("Enter")
    page.locator("#files-body .file-name", has_text=new_name).wait_for()
    assert "notes.txt" not in listed_names(page)
    data, suggested, url = download_from_page(page, new_name)
    assert data == contents["notes.txt"]
    assert suggested == new_name
    disposition = requests.get(url, timeout=10).headers["Content-Disposition"]
    assert disposition.startswith("attachment")
    assert new_name in unquote(disposition), disposition

    # Delete, after the confirmation dialog: gone from the list, S3 and the quota.
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete data.json", exact=True).click()
    page.wait_for_function("() => document.querySelectorAll('#files-body tr').length === 4")
    assert "data.json" not in listed_names(page)
    page.wait_for_function("() => document.querySelector('#usage-text').textContent.includes('4 files')")
    deleted = requests.get(f"{stack.url}/api/files/{records['data.json']['id']}", headers=headers, timeout=10).json()
    assert deleted["status"] == "deleted"
    objects = s3.list_objects_v2(Bucket=stack.bucket, Prefix=records["data.json"]["s3_key"]).get("Contents", [])
    assert objects == []
    assert "Deleted data.json" in page.inner_text("#status")


def test_folders_search_refused_type_cancel_and_pages(page, stack, tmp_path):
    register(page, "foldertester")
    root = tmp_path / "trip"
    write_file(root, "day1/beach.jpg", 2000)
    write_file(root, "day1/notes.txt", 300)
    write_file(root, "summary.txt", 100)
    write_file(root, "setup.exe", 100)

    # A picked folder keeps its structure, under the folder typed into the options.
    page.locator("summary", has_text="Options").click()
    page.get_by_label("Upload into folder").fill("holiday")
    page.get_by_label("Choose a folder").set_input_files(root)
    page.get_by_role("button", name="Upload", exact=True).click()
    wait_for_states(page, 4, ("complete", "failed"))
    states = queue_states(page)
    assert states == {
        "trip/day1/beach.jpg": "complete",
        "trip/day1/notes.txt": "complete",
        "trip/summary.txt": "complete",
        "trip/setup.exe": "failed",
    }, states
    refused = page.locator(".queue-item.state-failed .queue-state").inner_text()
    assert "not allowed" in refused.lower(), refused
    assert "1 failed" in page.inner_text("#alert")

    # Browse: top folder → holiday → trip → day1, with breadcrumbs back up.
    page.get_by_role("button", name="Open folder holiday").click()
    page.get_by_role("button", name="Open folder trip").click()
    page.wait_for_function("() => document.querySelectorAll('#files-body tr').length === 1")
    assert listed_names(page) == ["summary.txt"]
    page.get_by_role("button", name="Open folder day1").click()
    page.wait_for_function("() => document.querySelectorAll('#files-body tr').length === 2")
    assert sorted(listed_names(page)) == ["beach.jpg", "notes.txt"]
    crumbs = page.locator("#breadcrumbs li").all_inner_texts()
    assert crumbs == ["All files", "holiday", "trip", "day1"], crumbs
    page.locator("#breadcrumbs").get_by_role("button", name="holiday").click()
    page.get_by_role("button", name="Open folder trip").wait_for()

    # Search looks in every folder.
    page.get_by_label("Search names and titles").fill("NOTES")
    page.get_by_label("Search names and titles").press("Enter")
    page.wait_for_function("() => document.querySelectorAll('#files-body tr').length === 1")
    assert page.locator("#files-body td.name").inner_text().startswith("notes.txt")
    assert "holiday/trip/day1" in page.locator("#files-body td.name").inner_text()
    page.get_by_role("button", name="Clear search").click()
    page.get_by_role("button", name="Open folder trip").wait_for()  # back where the search started

    # Cancel a multipart upload half-way: the page aborts it, so S3 and the quota let go.
    big = write_file(tmp_path, "big.bin", 12 * MIB)
    page.route(PART_PUTS, lambda route: None if part_number(route.request.url) > 1 else route.continue_())
    page.get_by_label("Choose files").set_input_files([big])
    page.get_by_role("button", name="Upload", exact=True).click()
    page.wait_for_function("() => localStorage.length > 0")
    aborted: list[str] = []
    page.on("request", lambda r: aborted.append(r.url) if r.method == "DELETE" and "/multipart/" in r.url else None)
    page.get_by_role("button", name="Cancel upload of big.bin").click()
    wait_for_states(page, 1, ("cancelled",))
    page.unroute(PART_PUTS)
    assert len(aborted) == 1
    headers = page_auth(page)
    upload_id = aborted[0].rsplit("/", 1)[1]
    status = requests.get(f"{stack.url}/api/files/multipart/{upload_id}", headers=headers, timeout=10).json()
    assert status["status"] == "aborted"
    assert page.evaluate("() => localStorage.length") == 0
    usage = requests.get(f"{stack.url}/api/files/usage", headers=headers, timeout=10).json()
    assert usage["reserved_bytes"] == 0

    # Pages of 25: 26 files at the top level give a second page with one file.
    specs = [
        {"file_name": f"f{i:02}.txt", "content_type": "text/plain", "file_size": 1, "folder": "many"} for i in range(26)
    ]
    batch = requests.post(f"{stack.url}/api/files/upload/", json={"files": specs}, headers=headers, timeout=30).json()
    for ticket in batch["successful"]:
        assert requests.put(ticket["presigned_url"], data=b"x", headers=ticket["headers"], timeout=10).ok
    ids = [ticket["id"] for ticket in batch["successful"]]
    confirmed = requests.post(f"{stack.url}/api/files/confirm_uploads/", json={"ids": ids}, headers=headers, timeout=30)
    assert confirmed.json()["total_successful"] == 26
    page.locator("#breadcrumbs").get_by_role("button", name="All files").click()
    page.get_by_role("button", name="Open folder many").click()
    page.wait_for_function("() => document.querySelectorAll('#files-body tr').length === 25")
    first_page = listed_names(page)
    page.get_by_role("button", name="Next page").click()
    page.wait_for_function("() => document.querySelectorAll('#files-body tr').length === 1")
    assert page.get_by_role("button", name="Next page").is_disabled()
    assert sorted(first_page + listed_names(page)) == sorted(spec["file_name"] for spec in specs)
    page.get_by_role("button", name="Previous page").click()
    page.wait_for_function("() => document.querySelectorAll('#files-body tr').length === 25")

    # Every control has a name a screen reader can say.
    unnamed = page.evaluate(
        """() => [...document.querySelectorAll('button, input, progress, select, textarea')]
            .filter((el) => !el.closest('[hidden]'))
            .filter((el) => !(el.labels?.length || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby')
                              || (el.tagName === 'BUTTON' && el.textContent.trim())))
            .map((el) => el.outerHTML.slice(0, 80))"""
    )
    assert unnamed == []


def test_sign_in_errors_and_keyboard_only_sign_up(page, stack):
    page.get_by_label("Username").fill("nobody")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Sign in").click()
    alert = page.locator("#alert")
    alert.wait_for(state="visible")
    assert alert.get_attribute("role") == "alert"
    assert "password" in alert.inner_text().lower(), alert.inner_text()

    page.get_by_label("Username").fill("demo")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.wait_for_function("() => document.querySelector('#alert').textContent.includes('taken')")
    assert "Choose another one" in alert.inner_text()

    # Keyboard only: type, Tab to "Create account", Enter; focus lands on the file picker.
    page.get_by_label("Username").fill("")
    page.get_by_label("Username").focus()
    page.keyboard.type("keyboarder")
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.textContent") == "Create account"
    page.keyboard.press("Enter")
    page.wait_for_selector("#app:not([hidden])")
    assert page.evaluate("() => document.activeElement.id") == "file-input"
    assert alert.inner_text() == ""
    assert "Account keyboarder created" in page.inner_text("#status")
