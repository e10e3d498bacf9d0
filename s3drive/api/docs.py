"""Swagger UI's own files, served by the API itself: /docs works offline and shows a pinned version.

The files come from the swagger-ui-bundle package (pinned in requirements.txt), not from a CDN:
an operator's network, a developer's laptop on a train or a CDN outage must not blank the page.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Flask, abort, send_from_directory
from swagger_ui_bundle import swagger_ui_path

# Relative to /docs, so that it also works when the app is mounted under a path prefix.
ASSETS_URL = "docs/assets/"
ASSETS_DIR = Path(swagger_ui_path)
# Only what flask-smorest's page loads; the bundle's index.html and source maps are not served.
ASSETS = frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "favicon-32x32.png"})
# The version is in the package's folder name: a new bundle gets new URLs, so caching is safe.
CACHE_SECONDS = 7 * 24 * 3600

bp = Blueprint("swagger_ui_assets", __name__)


@bp.route("/docs/assets/<name>")
def swagger_ui_asset(name: str):
    """Send one of Swagger UI's files."""
    if name not in ASSETS:
        abort(404)
    return send_from_directory(ASSETS_DIR, name, max_age=CACHE_SECONDS)


def init_app(app: Flask) -> None:
    """Point flask-smorest's /docs page at the local files and serve them."""
    app.config.setdefault("OPENAPI_SWAGGER_UI_URL", ASSETS_URL)
    app.register_blueprint(bp)
