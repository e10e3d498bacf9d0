"""/docs, the Swagger UI page: it is served from the pinned swagger-ui-bundle package, never a CDN,
so it renders on a machine without internet access."""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

import pytest
from live import ServedApp, chromium_browser

ASSET_REFERENCE = re.compile(r"""(?:src|href)="([^"]+)\"""")


def test_docs_page_loads_only_its_own_files(client):
    """Every script and style of /docs is a relative URL that this app answers."""
    page = client.get("/docs")
    assert page.status_code == 200
    references = ASSET_REFERENCE.findall(page.get_data(as_text=True))
    assert {ref.rsplit("/", 1)[-1] for ref in references} >= {"swagger-ui.css", "swagger-ui-bundle.js"}
    for reference in references:
        assert not urlsplit(reference).netloc, f"{reference} is fetched from another host"
        asset = client.get(urlsplit(urljoin("http://localhost/docs", reference)).path)
        assert asset.status_code == 200, reference
        assert len(asset.data) > 1000, reference
        assert "max-age" in asset.headers["Cache-Control"], reference


def test_only_swagger_ui_files_are_served(client):
    """The asset route serves Swagger UI's page files only: nothing else of the package, no path."""
    for name in ("index.html", "swagger-ui-bundle.js.map", "..%2F__init__.py", "oauth2-redirect.html"):
        answer = client.get(f"/docs/assets/{name}")
        assert answer.status_code == 404, name
        assert answer.get_json()["error"]["code"] == "not_found"


@pytest.mark.browser
def test_swagger_ui_renders_offline(app):
    """In Chromium with every request off this host refused, /docs shows the API's operations."""
    with ServedApp(app) as served, chromium_browser() as browser:
        context = browser.new_context()
        outside: list[str] = []

        def only_this_host(route):
            if urlsplit(route.request.url).netloc != urlsplit(served.url).netloc:
                outside.append(route.request.url)
                return route.abort()
            return route.continue_()

        context.route("**/*", only_this_host)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{served.url}/docs")
        page.wait_for_selector(".opblock-summary-path", timeout=30_000)
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        context.close()
    assert any("/api/files/upload/" in path for path in paths), paths[:5]
    assert len(paths) > 20
    assert outside == [] and errors == []
