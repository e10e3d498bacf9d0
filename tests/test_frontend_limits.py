"""The page applies what the server's limits and the user's usage already say, before it hashes
anything (GET /api/files/limits, GET /api/files/usage): a file over the per-file limit, of a
refused type or beyond the quota left (reservations included) fails at once, in words; the file
picker offers only the allowed types. In a real browser on the dev stack (MiniStack with
AUTH=true), with a 50 MiB file limit, a 100 MiB quota and a short list of allowed types.
"""

from __future__ import annotations

import pytest
import requests
from helpers import sha256_b64
from live import (
    PAGE_STACK_SETTINGS,
    DevStack,
    api_files,
    page_auth,
    queue_states,
    record_presigned,
    register,
    wait_for_states,
    write_file,
)
from test_frontend_browser import chromium, page  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

MIB = 1024**2
ALLOWED = "image/*,text/plain,video/mp4"
LIMITED = {
    "S3DRIVE_LOGIN_RATE_LIMIT": PAGE_STACK_SETTINGS["S3DRIVE_LOGIN_RATE_LIMIT"],
    "S3DRIVE_INSPECT": "false",
    # The default multipart threshold (100 MiB): every file here would be hashed before it is presigned.
    "S3DRIVE_MAX_FILE_SIZE": str(50 * MIB),
    "S3DRIVE_DEFAULT_QUOTA_BYTES": str(100 * MIB),
    "S3DRIVE_ALLOWED_CONTENT_TYPES": ALLOWED,
}

# Notes the name of every file the page hands to a hash worker (hash.js posts {id, blob}).
RECORD_HASHED = """
    window.hashed = [];
    const post = Worker.prototype.postMessage;
    Worker.prototype.postMessage = function (message, ...rest) {
        if (message && message.blob) window.hashed.push(message.blob.name);
        return post.call(this, message, ...rest);
    };
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The dev stack with small limits."""
    with DevStack(tmp_path_factory.mktemp("limits") / "data", env=LIMITED) as server:
        yield server


def test_the_picker_offers_the_allowed_types_and_says_the_limits(page):  # noqa: F811
    register(page, "pickeruser")
    assert page.get_attribute("#file-input", "accept") == ALLOWED
    page.wait_for_function("() => document.querySelector('#picker-hint').textContent.includes('free')")
    assert page.inner_text("#picker-hint") == "Up to 50 MiB a file, 100 MiB free."


def test_files_the_limits_refuse_fail_at_once_in_words_without_being_hashed(page, stack, tmp_path):  # noqa: F811
    page.add_init_script(RECORD_HASHED)
    page.reload()
    register(page, "limituser")
    headers = page_auth(page)
    # 70 MiB reserved by two uploads under way elsewhere: 30 MiB of the quota are left.
    pending = [{"file_name": f"elsewhere{i}.txt", "content_type": "text/plain", "file_size": 35 * MIB} for i in (1, 2)]
    batch = requests.post(f"{stack.url}/api/files/upload/", json={"files": pending}, headers=headers, timeout=10)
    assert batch.json()["total_successful"] == 2, batch.text
    files = [
        write_file(tmp_path, "huge.mp4", 60 * MIB),  # over the 50 MiB limit
        write_file(tmp_path, "clip.mp4", 40 * MIB),  # within the limit, beyond the 30 MiB left
        write_file(tmp_path, "page.html", 1000),  # text/html is not allowed
        write_file(tmp_path, "notes.txt", 2000),
    ]
    presigned = record_presigned(page)
    page.get_by_label("Choose files").set_input_files(files)
    page.get_by_role("button", name="Upload", exact=True).click()
    wait_for_states(page, 4, ("complete", "failed"))

    assert queue_states(page) == {
        "huge.mp4": "failed",
        "clip.mp4": "failed",
        "page.html": "failed",
        "notes.txt": "complete",
    }
    said = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('.queue-item')].map(
            (row) => [row.querySelector('.queue-name').textContent, row.querySelector('.queue-state').textContent]))"""
    )
    assert said["huge.mp4"] == "Failed: File is 60 MiB; the limit is 50 MiB."
    assert said["clip.mp4"].startswith("Failed: Uploading 40 MiB would exceed your quota (30 MiB left).")
    allowed = ", ".join(ALLOWED.split(","))
    assert said["page.html"] == f"Failed: Files of type text/html are not allowed here (allowed: {allowed})."
    # Only the file that fits was hashed and presigned; the others cost no hashing and no request.
    assert page.evaluate("() => window.hashed") == ["notes.txt"]
    assert presigned == ["notes.txt"]

    # The server agrees: one file stored with its bytes and checksum, nothing reserved for the refused ones.
    [record] = api_files(stack, headers)
    data = files[3].read_bytes()
    assert record["file_name"] == "notes.txt" and record["checksum_sha256"] == sha256_b64(data)
    assert stack.s3().get_object(Bucket=stack.bucket, Key=record["s3_key"])["Body"].read() == data
    usage = requests.get(f"{stack.url}/api/files/usage", headers=headers, timeout=10).json()
    assert usage["reserved_bytes"] == 70 * MIB and usage["used_bytes"] == len(data)
