"""The page as a drive (issue 13), in Chromium at a phone's size (390 x 844) and a wide screen's
(1280 x 800), against the dev stack: its MiniStack (AUTH=true), and its task-queue worker, which
inspects each upload and makes the WebP previews.

Each test has a user of its own, at both sizes: upload through the page (the bytes checked in S3),
a preview (the thumbnail the worker made, then the dialog; Esc closes it), a share link (made in the
dialog, opened in a fresh browser with no account, the downloaded bytes compared), folders (made,
opened through the breadcrumbs, files moved in, renamed, an empty one deleted), many files selected
and deleted (gone from S3 and the list), and a multipart upload paused and resumed (only the parts
S3 lacked are sent again; the object equals the file). axe-core finds no serious or critical
violation on the drive, the preview dialog or the share dialog.

Screenshots go to test-artifacts/: drive-list-<width>.png, drive-grid-<width>.png,
drive-preview-<width>.png, drive-share-dialog-<width>.png and drive-folders-<width>.png.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from live import (
    MIB,
    OVERFLOW,
    PAGE_STACK_SETTINGS,
    PART_PUTS,
    PART_SIZE,
    DevStack,
    Tab,
    api_files,
    axe_violations,
    listed_names,
    page_auth,
    part_number,
    register,
    screenshot,
    upload_by_script,
    upload_files,
    wait_for_states,
)
from samples import image_bytes
from test_frontend_browser import chromium  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

SIZES = {390: {"width": 390, "height": 844}, 1280: {"width": 1280, "height": 800}}
INSPECTION_MS = 90_000  # the worker inspects and makes previews in the background

# The page's settings, but with inspection on: previews come from it, and only files that passed it can be shared.
DRIVE_STACK_SETTINGS = {name: value for name, value in PAGE_STACK_SETTINGS.items() if name != "S3DRIVE_INSPECT"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The dev stack with a 5 MiB multipart threshold, and its worker inspecting uploads."""
    with DevStack(tmp_path_factory.mktemp("drive") / "data", env=DRIVE_STACK_SETTINGS) as server:
        yield server


@pytest.fixture(params=sorted(SIZES), ids=lambda width: f"{width}px")
def width(request) -> int:
    return request.param


@pytest.fixture
def tab(chromium, stack, width):  # noqa: F811
    """A fresh browser context at this width, signed up as a new user; console and page errors fail the test."""
    tab = Tab(chromium, stack, viewport=SIZES[width], permissions=["clipboard-read", "clipboard-write"])
    register(tab.page, f"drive{width}-{uuid.uuid4().hex[:6]}")
    yield tab
    tab.close()
    tab.assert_no_problems()


# -- helpers ------------------------------------------------------------------------------------


def text_file(directory: Path, name: str, size: int) -> Path:
    """Write size bytes of text (random letters: content inspection passes text/plain) to directory/name."""
    path = directory / name
    alphabet = b"abcdefghijklmnopqrstuvwxyz \n"
    path.write_bytes(bytes(alphabet[byte % len(alphabet)] for byte in os.urandom(size)))
    return path


def stored(stack: DevStack, record: dict) -> bytes:
    """Return the bytes S3 holds for a file record."""
    return stack.s3().get_object(Bucket=stack.bucket, Key=record["s3_key"])["Body"].read()


def assert_fits(page) -> None:
    """Nothing sticks out of the viewport, and the page does not scroll sideways."""
    assert page.evaluate(OVERFLOW) == []


def assert_accessible(page, context: str | None = None) -> None:
    """axe-core finds no serious or critical violation (in the part context names, or the page)."""
    assert axe_violations(page, context) == []


def wait_checked(page, name: str) -> None:
    """Wait until the list says a file passed the content check (the page looks again every 5 s)."""
    page.locator("#files-body tr", has_text=name).get_by_text("Checked").wait_for(timeout=INSPECTION_MS)


def row(page, name: str):
    return page.locator("#files-body tr", has_text=name)


# -- upload, previews, list and grid ------------------------------------------------------------


def test_upload_then_the_preview_in_the_list_the_grid_and_the_dialog(tab, stack, tmp_path, width):
    page = tab.page
    picture = tmp_path / "harbour.png"
    picture.write_bytes(image_bytes("PNG", size=(640, 480)))
    notes = text_file(tmp_path, "notes.txt", 3000)
    upload_files(page, [picture, notes])

    # The page really PUT the bytes to S3: the records are complete and S3 holds the same bytes.
    records = {item["file_name"]: item for item in api_files(stack, page_auth(page))}
    assert sorted(records) == ["harbour.png", "notes.txt"]
    for path in (picture, notes):
        assert stored(stack, records[path.name]) == path.read_bytes(), path.name

    # Once the worker passed the picture, its row shows the preview it made, loaded from S3.
    page.wait_for_function(
        """() => [...document.querySelectorAll('#files-body tr')].some((row) => row.textContent.includes('harbour.png')
             && [...row.querySelectorAll('td.thumb img')].some((img) => img.complete && img.naturalWidth > 0))""",
        timeout=INSPECTION_MS,
    )
    wait_checked(page, "notes.txt")
    # Without a preview, a file shows its type's symbol: inline SVG, named in words (no emoji, no font).
    symbol = row(page, "notes.txt").locator("td.thumb svg[role=img]")
    assert symbol.get_attribute("aria-label") == "Text file"
    assert page.evaluate("() => /\\p{Extended_Pictographic}/u.test(document.body.innerText)") is False
    assert "Checked" in row(page, "harbour.png").inner_text()
    assert_fits(page)
    assert_accessible(page)
    screenshot(page, f"drive-list-{width}")

    # The grid: cards with the preview large; the choice is remembered after a reload.
    page.get_by_role("button", name="Grid", exact=True).click()
    image = row(page, "harbour.png").locator("td.thumb img")
    assert image.evaluate("img => img.getBoundingClientRect().width") > 100
    page.reload()
    page.wait_for_selector("#app:not([hidden])")
    row(page, "harbour.png").locator("td.thumb img").wait_for()
    assert page.get_by_role("button", name="Grid", exact=True).get_attribute("aria-pressed") == "true"
    page.wait_for_function("() => [...document.querySelectorAll('#files-body img')].every((img) => img.complete)")
    assert_fits(page)
    assert_accessible(page)
    screenshot(page, f"drive-grid-{width}")
    if width == 390:  # the narrowest phones too
        page.set_viewport_size({"width": 360, "height": 740})
        assert_fits(page)
        page.set_viewport_size(SIZES[width])

    # The name opens the preview dialog: the image itself (an inline URL), its details, a download button.
    opener = page.get_by_role("button", name="Preview harbour.png")
    opener.click()
    dialog = page.locator("#preview-dialog")
    dialog.wait_for(state="visible")
    page.wait_for_function(
        "() => { const img = document.querySelector('#preview-media img');"
        " return img && img.complete && img.naturalWidth === 640; }"
    )
    details = page.inner_text("#preview-details")
    assert "harbour.png" in details and "image/png" in details and "640 × 480 px" in details
    size = len(picture.read_bytes())
    assert f"({size:,} bytes)" in details
    assert dialog.get_by_role("button", name="Download").is_visible()
    assert_fits(page)
    assert_accessible(page, "#preview-dialog")
    screenshot(page, f"drive-preview-{width}", full_page=False)

    # Esc closes it, and the keyboard is back on the name that opened it.
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    assert page.evaluate("() => document.activeElement.getAttribute('aria-label')") == "Preview harbour.png"

    # A text file has no preview: its details only.
    page.get_by_role("button", name="Details of notes.txt").click()
    assert "No preview for this type of file." in page.inner_text("#preview-media")
    assert "2.9 KiB (3,000 bytes)" in page.inner_text("#preview-details")
    page.get_by_role("button", name="Close the preview").click()
    dialog.wait_for(state="hidden")


# -- share links ---------------------------------------------------------------------------------


def download_shared(chromium, url: str, password: str | None = None) -> bytes:  # noqa: F811
    """Open a share link in a fresh browser context (no account, no token), click Download (after
    typing the password for a protected link), and return the bytes the browser saved."""
    context = chromium.new_context(accept_downloads=True)
    try:
        page = context.new_page()
        page.goto(url)
        if password is not None:
            form = page.locator("form#share-password")
            form.get_by_label("Password", exact=True).fill(password)
            form.get_by_role("button", name="Open").click()
        with page.expect_download() as info:
            page.locator("a#share-download").click()
        return Path(info.value.path()).read_bytes()
    finally:
        context.close()


def create_link(page, *, expiry: str, limit: str = "", password: str = "") -> str:
    """Fill the open share dialog and create a link; return it as the dialog shows it."""
    dialog = page.locator("#share-dialog")
    dialog.get_by_label(expiry, exact=True).check()
    dialog.get_by_label("Download limit (optional)").fill(limit)
    dialog.get_by_label("Password (optional)").fill(password)
    previous = page.input_value("#share-url")
    dialog.get_by_role("button", name="Create link").click()
    # The new link, or the server's refusal in the dialog's alert.
    page.wait_for_function(
        """(old) => document.querySelector('#share-error').textContent
             || (!document.querySelector('#share-result').hidden
                 && document.querySelector('#share-url').value !== old)""",
        arg=previous,
    )
    assert page.inner_text("#share-error") == ""
    return page.input_value("#share-url")


def test_share_a_file_copy_the_link_and_download_it_without_an_account(tab, stack, chromium, tmp_path, width):  # noqa: F811
    page = tab.page
    report = text_file(tmp_path, "report.txt", 5000)
    upload_files(page, [report])
    wait_checked(page, "report.txt")
    data = report.read_bytes()

    opener = page.get_by_role("button", name="Share report.txt")
    opener.click()
    dialog = page.locator("#share-dialog")
    dialog.wait_for(state="visible")
    assert dialog.get_by_label("7 days", exact=True).is_checked()  # the server's default
    assert_fits(page)
    assert_accessible(page, "#share-dialog")
    screenshot(page, f"drive-share-dialog-{width}", full_page=False)

    # A link for a day, two downloads at most; copied to the clipboard, which the page says.
    url = create_link(page, expiry="1 day", limit="2")
    assert url.startswith(f"{stack.url}/s/"), url
    dialog.get_by_role("button", name="Copy link").click()
    page.locator("#share-copied", has_text="Copied").wait_for()
    assert page.evaluate("() => navigator.clipboard.readText()") == url
    links = page.locator("#share-links li")
    links.first.wait_for()
    assert "0 of 2 downloads" in links.first.inner_text() and "Password: no" in links.first.inner_text()
    [share] = requests.get(
        f"{stack.url}/api/shares",
        params={"file_id": api_files(stack, page_auth(page))[0]["id"]},
        headers=page_auth(page),
        timeout=10,
    ).json()["items"]
    assert share["max_downloads"] == 2 and not share["has_password"] and share["downloads"] == 0
    assert 23 * 3600 < time_left(share) <= 24 * 3600

    # A second link with a password; both are listed, newest first.
    secret = "open sesame 42"
    protected = create_link(page, expiry="1 hour", password=secret)
    page.wait_for_function("() => document.querySelectorAll('#share-links li').length === 2")
    assert "Password: yes" in page.inner_text("#share-links")
    screenshot(page, f"drive-share-links-{width}", full_page=False)

    # Whoever has a link downloads the very bytes, in a browser with no account.
    assert download_shared(chromium, url) == data
    assert download_shared(chromium, protected, password=secret) == data

    # Revoke the first: it leaves the list and stops at once.
    dialog.get_by_role("button", name="Revoke the link made").last.click()  # the oldest: the first link
    page.wait_for_function("() => document.querySelectorAll('#share-links li').length === 1")
    assert requests.get(url, headers={"Accept": "application/json"}, timeout=10).status_code == 404
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    assert page.evaluate("() => document.activeElement.getAttribute('aria-label')") == "Share report.txt"


def time_left(share: dict) -> float:
    """Seconds until a Share expires."""
    return (datetime.fromisoformat(share["expires_at"].replace("Z", "+00:00")) - datetime.now(UTC)).total_seconds()


# -- folders ---------------------------------------------------------------------------------------


def name_dialog(page, name: str) -> None:
    """Type a name into the open name dialog and confirm it."""
    dialog = page.locator("#name-dialog")
    dialog.wait_for(state="visible")
    dialog.locator("input").fill(name)
    dialog.locator("button[type=submit]").click()
    dialog.wait_for(state="hidden")


def crumbs(page) -> list[str]:
    return page.locator("#breadcrumbs li").all_inner_texts()


def test_folders_made_opened_filled_renamed_and_deleted_when_empty(tab, stack, width):
    page = tab.page
    headers = page_auth(page)
    upload_by_script(stack, headers, {"a.txt": b"alpha", "b.txt": b"bravo", "c.txt": b"charlie"})
    page.reload()
    page.wait_for_function("() => document.querySelectorAll('#files-body tr').length === 3")

    # A new folder shows at once, though empty.
    page.get_by_role("button", name="New folder").click()
    name_dialog(page, "trips")
    page.get_by_role("button", name="Open folder trips").wait_for()

    # Two files selected, moved into it through the folder picker.
    page.get_by_label("Select a.txt").check()
    page.get_by_label("Select b.txt").check()
    assert page.inner_text("#selection-count") == "2 files selected"
    page.get_by_role("button", name="Move…").click()
    picker = page.locator("#folder-dialog")
    picker.get_by_role("button", name="Go into trips").click()
    page.wait_for_function("() => document.querySelector('#folder-where').textContent.includes('trips')")
    picker.get_by_role("button", name="Move here").click()
    page.wait_for_function("() => document.querySelectorAll('#files-body tr').length === 1")
    assert listed_names(page) == ["c.txt"]
    assert "Moved 2 files to trips." in page.inner_text("#status")
    folders = {item["file_name"]: item["folder"] for item in api_files(stack, headers)}
    assert folders == {"a.txt": "trips", "b.txt": "trips", "c.txt": ""}

    # Open it, make a folder inside, and come back up through the breadcrumbs.
    page.get_by_role("button", name="Open folder trips").click()
    page.wait_for_function("() => document.querySelectorAll('#files-body tr').length === 2")
    assert crumbs(page) == ["All files", "trips"]
    page.get_by_role("button", name="New folder").click()
    name_dialog(page, "2026")
    page.get_by_role("button", name="Open folder 2026").click()
    page.locator("#files-empty").wait_for(state="visible")
    assert crumbs(page) == ["All files", "trips", "2026"]
    page.locator("#breadcrumbs").get_by_role("button", name="trips").click()
    page.get_by_role("button", name="Open folder 2026").wait_for()
    assert sorted(listed_names(page)) == ["a.txt", "b.txt"]

    # Rename the open folder: its files and its subfolder go with it.
    page.get_by_role("button", name="Rename folder trips").click()
    name_dialog(page, "journeys")
    page.wait_for_function("() => document.querySelector('#breadcrumbs').textContent.includes('journeys')")
    assert crumbs(page) == ["All files", "journeys"]
    page.get_by_role("button", name="Open folder 2026").wait_for()
    folders = {item["file_name"]: item["folder"] for item in api_files(stack, headers)}
    assert folders == {"a.txt": "journeys", "b.txt": "journeys", "c.txt": ""}
    assert_fits(page)
    screenshot(page, f"drive-folders-{width}")

    # A folder with files is not deleted (it says so); an empty one is.
    page.once("dialog", lambda prompt: prompt.accept())
    page.get_by_role("button", name="Delete folder journeys").click()
    page.locator("#alert", has_text="still holds 2 files").wait_for()
    page.get_by_role("button", name="Open folder 2026").click()
    page.once("dialog", lambda prompt: prompt.accept())
    page.get_by_role("button", name="Delete folder 2026").click()
    page.wait_for_function("() => document.querySelector('#status').textContent.includes('Deleted the folder')")
    assert crumbs(page) == ["All files", "journeys"]
    assert page.get_by_role("button", name="Open folder 2026").count() == 0
    listing = requests.get(f"{stack.url}/api/files/", params={"folder": "journeys"}, headers=headers, timeout=10)
    assert listing.json()["folders"] == []


# -- many files at once ------------------------------------------------------------------------------


def test_select_all_and_delete_removes_the_files_from_s3_and_the_list(tab, stack, width):
    page = tab.page
    headers = page_auth(page)
    contents = {f"old-{i}.txt": f"old file {i}".encode() for i in range(3)}
    upload_by_script(stack, headers, contents)
    records = api_files(stack, headers)
    page.reload()
    page.wait_for_function("() => document.querySelectorAll('#files-body tr').length === 3")

    page.get_by_label("Select all on this page").check()
    assert page.inner_text("#selection-count") == "3 files selected"
    asked: list[str] = []

    def confirm(prompt) -> None:
        asked.append(prompt.message)
        prompt.accept()

    page.once("dialog", confirm)
    page.get_by_role("button", name="Delete…").click()
    page.locator("#files-empty").wait_for(state="visible")
    assert asked == ["Delete 3 files? This cannot be undone."]
    assert "Deleted 3 files." in page.inner_text("#status")
    assert page.locator("#files-body tr").count() == 0
    s3 = stack.s3()
    for record in records:
        assert s3.list_objects_v2(Bucket=stack.bucket, Prefix=record["s3_key"]).get("Contents", []) == []
        assert requests.get(f"{stack.url}/api/files/{record['id']}", headers=headers, timeout=10).json()["status"] == (
            "deleted"
        )
    page.wait_for_function("() => document.querySelector('#usage-text').textContent.includes('0 files')")


# -- pause and resume ----------------------------------------------------------------------------


class HeldParts:
    """Routes the page's part PUTs: part 1 goes through; the others are held (never answered) until
    release(), after which every PUT goes through and is noted by part number."""

    def __init__(self, page):
        self.holding = True
        self.held: list[int] = []
        self.sent: list[int] = []  # part numbers sent through, in order
        page.route(PART_PUTS, self._route)

    def _route(self, route) -> None:
        request = route.request
        number = part_number(request.url)
        if request.method == "PUT" and self.holding and number > 1:
            self.held.append(number)
            return  # the page's pause aborts these
        if request.method == "PUT":
            self.sent.append(number)
        route.continue_()

    def release(self) -> None:
        self.holding = False


def test_pause_and_resume_a_multipart_upload_sends_only_what_s3_lacks(tab, stack, tmp_path, width):
    # At one size the file's own Pause and Resume, at the other Pause all and Resume all.
    page = tab.page
    big = text_file(tmp_path, "big.txt", 12 * MIB)  # three 5 MiB parts: 5, 5 and 2 MiB
    gate = HeldParts(page)
    page.get_by_label("Choose files").set_input_files([big])
    page.get_by_role("button", name="Upload", exact=True).click()
    # Part 1 landed (saved with its ETag as it finished), parts 2 and 3 are on their way, held.
    page.wait_for_function("() => Object.values(localStorage).some((saved) => saved.includes('\"parts\":[[1,'))")
    deadline = time.monotonic() + 30
    while len(gate.held) < 2 and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert gate.sent == [1] and sorted(gate.held) == [2, 3], (gate.sent, gate.held)

    pause, resume = (
        ("Pause upload of big.txt", "Resume upload of big.txt") if width == 390 else ("Pause all", "Resume all")
    )
    page.get_by_role("button", name=pause, exact=True).click()
    wait_for_states(page, 1, ("paused",))
    assert page.get_by_role("button", name="Resume upload of big.txt").is_visible()
    [upload_id] = [
        state["id"]
        for state in page.evaluate(
            "() => Object.keys(localStorage).filter((k) => k.startsWith('s3drive.multipart:'))"
            ".map((k) => JSON.parse(localStorage.getItem(k)))"
        )
    ]
    status = requests.get(f"{stack.url}/api/files/multipart/{upload_id}", headers=page_auth(page), timeout=10).json()
    assert status["status"] == "uploading"  # not aborted: what landed stays
    assert [part["part_number"] for part in status["parts"]] == [1] and status["bytes_uploaded"] == PART_SIZE

    gate.release()
    page.wait_for_timeout(1500)
    assert gate.sent == [1]  # nothing is sent while paused
    page.get_by_role("button", name=resume, exact=True).click()
    wait_for_states(page, 1)
    assert sorted(gate.sent) == [1, 2, 3]  # part 1 went once: the resume sent only what S3 lacked
    page.unroute(PART_PUTS)

    [record] = api_files(stack, page_auth(page))
    assert record["file_name"] == "big.txt" and record["size"] == 12 * MIB
    assert stored(stack, record) == big.read_bytes()
    assert stack.s3().list_multipart_uploads(Bucket=stack.bucket).get("Uploads", []) == []
    assert page.evaluate("() => Object.keys(localStorage).filter((k) => k.startsWith('s3drive.multipart:'))") == []
