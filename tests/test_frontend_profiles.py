"""Upload profiles on the example page, in a real browser (Chromium) against the dev stack.

The dev stack's example profiles (GET /api/files/limits, `profiles`) show as an "Upload as" selector; the
chosen one is remembered, narrows the file picker's accept and hint, is checked before hashing
(lib/limits.js: a file too big or of a type the profile refuses fails at once, the profile named)
and is sent as `profile` in each FileSpec, so the record carries it (in the profile's folder);
the server's content check passes the 120 px PNG (the avatar profile takes 100–4096 px a side). Without profiles the
selector stays hidden.
"""

from __future__ import annotations

import base64
import json

import pytest
from live import (
    PAGE_STACK_SETTINGS,
    DevStack,
    api_files,
    axe_violations,
    page_auth,
    queue_states,
    record_presigned,
    register,
    unavailable,
)
from s3servers import S3ServerError, install_ministack
from test_frontend_browser import chromium, page  # noqa: F401 (fixtures)
from test_frontend_limits import RECORD_HASHED
from test_inspect_image import image_bytes

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

MIB = 1024**2
# The avatar profile of the dev stack's example file (s3drive/dev/upload-profiles.toml).
AVATAR = "Profile picture: a JPEG, PNG or WebP image, 100 to 4096 pixels a side"
AVATAR_TYPES = "image/jpeg, image/png, image/webp"

# Drops files on the drop zone as a person would: a DataTransfer of Files made in the page, each
# from base64 bytes or, for a big one, `size` zero bytes (nothing that large crosses the wire).
DROP = """
    ([files]) => {
        const transfer = new DataTransfer();
        for (const {name, type, data, size} of files) {
            const bytes = data ? Uint8Array.from(atob(data), (c) => c.charCodeAt(0)) : new Uint8Array(size);
            transfer.items.add(new File([bytes], name, {type}));
        }
        const zone = document.querySelector('#drop-zone');
        zone.dispatchEvent(new DragEvent('dragover', {dataTransfer: transfer, bubbles: true, cancelable: true}));
        zone.dispatchEvent(new DragEvent('drop', {dataTransfer: transfer, bubbles: true, cancelable: true}));
    }
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The dev stack with its example profiles (avatar, document, video) and content inspection on."""
    try:
        install_ministack()
    except S3ServerError as error:
        unavailable(str(error))
    # Inspection on (the default): the avatar profile's side limits are checked on the bytes.
    dropped = ("S3DRIVE_INSPECT", "S3DRIVE_UPLOAD_PROFILES_FILE")
    env = {name: value for name, value in PAGE_STACK_SETTINGS.items() if name not in dropped}
    with DevStack(tmp_path_factory.mktemp("profiles") / "data", env=env) as server:
        yield server


def drop(page, *files: dict) -> None:  # noqa: F811
    """Drop files ({name, type, data: bytes} or {name, type, size}) on the page's drop zone."""
    encoded = [{**f, "data": base64.b64encode(f["data"]).decode() if "data" in f else None} for f in files]
    page.evaluate(DROP, [encoded])


def row_text(page) -> dict[str, str]:  # noqa: F811
    return page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('.queue-item')].map(
            (row) => [row.querySelector('.queue-name').textContent, row.querySelector('.queue-state').textContent]))"""
    )


def test_avatar_profile_refuses_before_hashing_and_its_uploads_carry_it(page, stack):  # noqa: F811
    page.add_init_script(RECORD_HASHED)
    page.reload()
    register(page, "avataruser")
    select = page.get_by_label("Upload as")
    select.wait_for(state="visible")
    options = page.eval_on_selector_all("#profile-select option", "(all) => all.map((o) => [o.value, o.text])")
    assert [value for value, _ in options] == ["default", "avatar", "document", "video"]
    assert options[:2] == [["default", "default"], ["avatar", f"avatar — {AVATAR}"]]
    assert page.input_value("#profile-select") == "default"

    assert axe_violations(page, "#upload-form") == []
    # On a phone the long descriptions do not widen the page.
    page.set_viewport_size({"width": 360, "height": 740})
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 360
    page.set_viewport_size({"width": 1100, "height": 900})

    select.select_option("avatar")
    assert page.get_attribute("#file-input", "accept") == "image/jpeg,image/png,image/webp"
    page.wait_for_function("() => document.querySelector('#picker-hint').textContent.includes('free')")
    assert page.inner_text("#picker-hint").startswith("Up to 10 MiB a file, images 100–4096 px a side, ")
    # Remembered: a reload (same session) comes back to avatar.
    page.reload()
    page.wait_for_selector("#app:not([hidden])")
    page.wait_for_function("() => document.querySelector('#profile-select').value === 'avatar'")
    assert page.get_attribute("#file-input", "accept") == "image/jpeg,image/png,image/webp"

    presigned = record_presigned(page)
    png = image_bytes("PNG", size=(120, 120))
    drop(
        page,
        {"name": "huge.png", "type": "image/png", "size": 12 * MIB},
        {"name": "cv.pdf", "type": "application/pdf", "data": b"%PDF-1.4\n%%EOF\n"},
        {"name": "me.png", "type": "image/png", "data": png},
    )
    page.wait_for_function("() => document.querySelectorAll('.queue-item').length === 3")
    page.get_by_role("button", name="Upload", exact=True).click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.queue-item')].every((row) =>"
        " row.classList.contains('state-complete') || row.classList.contains('state-failed'))"
    )
    assert queue_states(page) == {"huge.png": "failed", "cv.pdf": "failed", "me.png": "complete"}
    said = row_text(page)
    assert said["huge.png"] == "Failed: File is 12 MiB; the limit for avatar uploads is 10 MiB."
    assert said["cv.pdf"] == (
        f"Failed: Files of type application/pdf are not allowed for avatar uploads (allowed: {AVATAR_TYPES})."
    )
    assert page.evaluate("() => window.hashed") == ["me.png"]
    assert presigned == ["me.png"]

    # The server has it under the profile (in the profile's folder), with its bytes.
    headers = page_auth(page)
    [record] = api_files(stack, headers, folder="avatars")
    assert record["file_name"] == "me.png" and record["profile"] == "avatar"
    assert stack.s3().get_object(Bucket=stack.bucket, Key=record["s3_key"])["Body"].read() == png
    assert [f["file_name"] for f in api_files(stack, headers, profile="avatar")] == ["me.png"]
    assert api_files(stack, headers, profile="document") == []

    # Once its content check has passed (the list looks again by itself), the preview's details name the profile.
    page.get_by_role("button", name="Open folder avatars").click()
    page.get_by_role("button", name="Preview me.png").click()
    page.locator("#preview-dialog").wait_for(state="visible")
    details = page.eval_on_selector_all("#preview-details > *", "(all) => all.map((e) => e.textContent)")
    assert details[details.index("Profile") + 1] == "avatar"
    page.get_by_role("button", name="Close the preview").click()


def test_without_profiles_there_is_no_selector(page, stack):  # noqa: F811
    def without_profiles(route):
        limits = route.fetch().json()
        limits.pop("profiles", None)
        route.fulfill(status=200, content_type="application/json", body=json.dumps(limits))

    page.route("**/api/files/limits", without_profiles)
    page.reload()
    register(page, "plainuser")
    page.wait_for_function("() => document.querySelector('#picker-hint').textContent.includes('free')")
    assert page.locator("#profile-field").is_hidden()
    assert page.evaluate("() => document.querySelectorAll('#profile-select option').length") == 1
