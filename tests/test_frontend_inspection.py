"""The page shows what content inspection found, in a real browser on the dev stack (its worker
inspects): a preview in the file list for a real image, and a refused program in words."""

from __future__ import annotations

from pathlib import Path

import pytest
from live import PAGE_STACK_SETTINGS, DevStack, Tab, register
from samples import image_bytes
from test_frontend_browser import chromium  # noqa: F401 (a fixture)

pytestmark = pytest.mark.e2e

TIMEOUT_MS = 90_000


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The dev stack with inspection on (its default): the dev server starts the worker."""
    settings = {name: value for name, value in PAGE_STACK_SETTINGS.items() if name != "S3DRIVE_INSPECT"}
    with DevStack(tmp_path_factory.mktemp("inspection") / "data", env=settings) as server:
        yield server


def test_the_list_shows_previews_and_refusals_in_words(chromium, stack, tmp_path):  # noqa: F811
    picture = tmp_path / "holiday.png"
    picture.write_bytes(image_bytes("PNG", size=(400, 300)))
    program = tmp_path / "photo.jpg"
    program.write_bytes(Path("/bin/true").read_bytes())
    tab = Tab(chromium, stack)
    page = tab.page
    page.set_default_timeout(TIMEOUT_MS)
    try:
        register(page, "viewer")
        page.get_by_label("Choose files").set_input_files([picture, program])
        page.get_by_role("button", name="Upload", exact=True).click()
        # The worker passes the picture: its row shows the preview the worker made, loaded from S3.
        page.wait_for_function(
            """() => [...document.querySelectorAll('#files-body tr')].some(row =>
                 row.textContent.includes('holiday.png') && row.textContent.includes('Checked')
                 && [...row.querySelectorAll('img')].some(img => img.complete && img.naturalWidth > 0))"""
        )
        thumbnail = page.locator("#files-body img").first
        assert thumbnail.get_attribute("alt") == "holiday.png"
        assert 0 < thumbnail.evaluate("img => img.naturalWidth") <= 320
        # The program under a picture's name is refused; the refused list says why, in words.
        page.select_option("#status-filter", "rejected")
        page.wait_for_function(
            """() => [...document.querySelectorAll('#files-body tr')].some(row =>
                 row.textContent.includes('photo.jpg') && row.textContent.includes('Refused'))"""
        )
        row = page.locator("#files-body tr", has_text="photo.jpg")
        assert "program" in row.inner_text().lower()
    finally:
        tab.close()
    tab.assert_no_problems()
