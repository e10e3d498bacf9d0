"""The public page of a share link: what a browser shows when someone opens `<base>/s/<token>`.

It shows the file's name, size, type and preview and a Download button (`?download=1`, the
redirect, counted as a download), or a password form for a protected link, or why the link no
longer works. Showing the page issues no URL of the file and counts nothing, so a link limited to
one download is not used up by looking at it.
"""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from flask import make_response, render_template

from ..errors import AppError
from ..services import shares
from ..sizes import human_size

HEADINGS = {401: "Password needed", 404: "No such link", 410: "This link no longer works"}
# Only this page's own script (by a nonce of each answer: injected markup could never run a script) and
# style, images from the bucket (the preview), and its POST to itself.
PAGE_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-{nonce}'; connect-src 'self'; "
    "img-src {images}; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def share_page(token: str):
    """Render the link's page, with the status its JSON answer would have (401 for a password, 404, 410)."""
    try:
        view = shares.describe_share(token)
    except AppError as error:
        if error.status not in HEADINGS:
            raise  # a database outage: the envelope's 503 with Retry-After
        return _render(error.status, heading=HEADINGS[error.status], message=error.message)
    expires = view.expires_at.strftime("%d %b %Y, %H:%M UTC")
    if view.password:
        return _render(401, heading=HEADINGS[401], password=True, expires=expires)
    return _render(200, file=view, size=human_size(view.size), expires=expires, download_href="?download=1")


def _render(status: int, **context):
    file = context.get("file")
    thumbnail = file.thumbnail_url if file is not None else None
    images = "'none'" if not thumbnail else "{0.scheme}://{0.netloc}".format(urlsplit(thumbnail))
    nonce = secrets.token_urlsafe(16)
    headers = {"Content-Security-Policy": PAGE_POLICY.format(images=images, nonce=nonce), "Vary": "Accept"}
    context.setdefault("heading", None)
    context["nonce"] = nonce
    # A Response, not a tuple: flask-smorest would dump a tuple's body through the view's JSON schema.
    return make_response(render_template("share.html", **context), status, headers)
