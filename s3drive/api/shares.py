"""Share links: the owner makes, lists and revokes them (/api); anyone with a link opens it (/s, no account)."""

from __future__ import annotations

from flask import current_app, make_response, redirect, request
from flask_jwt_extended import current_user

from ..extensions import limiter
from ..schemas import (
    DownloadSchema,
    ShareCreateSchema,
    SharedFileSchema,
    ShareListQuerySchema,
    ShareListSchema,
    SharePasswordSchema,
    ShareSchema,
)
from ..services import shares
from .base import Blueprint, auth_required, errors, public_url
from .share_page import share_page

blp = Blueprint("shares", __name__, url_prefix="/api", description="Share links")
public_blp = Blueprint("public_shares", __name__, url_prefix="/s", description="Share links, opened without an account")


# -- the owner's routes ----------------------------------------------------------------------


@blp.route("/files/<string:file_id>/shares", methods=["POST"])
@errors(400, 401, 404, 409, 413, 422, 503)
@auth_required()
@blp.arguments(ShareCreateSchema)
@blp.response(201, ShareSchema)
def create_share(args, file_id):
    """Make a public link to one of the caller's complete, inspected files."""
    return shares.create_share(current_user.id, file_id, public_url("/s/"), **args)


@blp.route("/shares", methods=["GET"])
@errors(401, 422, 503)
@auth_required()
@blp.arguments(ShareListQuerySchema, location="query", as_kwargs=True)
@blp.response(200, ShareListSchema)
def list_shares(**query):
    """List the caller's links, newest first (one file's with file_id); page with cursors."""
    return shares.list_shares(current_user.id, **query)


@blp.route("/shares/<string:share_id>", methods=["DELETE"])
@errors(401, 404, 503)
@auth_required()
@blp.response(200, ShareSchema)
def revoke_share(share_id):
    """Revoke one of the caller's links: it stops at once (404 from then on)."""
    return shares.revoke_share(current_user.id, share_id)


# -- the visitor's routes (no account) -------------------------------------------------------


def _password_limit() -> str:
    return current_app.config["SHARE_PASSWORD_RATE_LIMIT"]


def _token_key() -> str:
    # The token's hash, not the token: the rate-limit store (Redis) never holds a working link.
    return "share:" + shares.token_hash((request.view_args or {}).get("token", ""))


def _wrong_password(response) -> bool:
    # Only failed guesses count: a visitor who knows the password is never held back.
    return response.status_code == 401


def wants_page() -> bool:
    """Tell whether a browser navigates to the link: it names text/html (curl and scripts send */*), and
    is not following the page's own Download link (?download=1)."""
    if "download" in request.args:
        return False
    accept = request.accept_mimetypes
    named = any(mimetype == "text/html" for mimetype, _ in accept)
    return named and accept.best_match(("text/html", "application/json")) == "text/html"


def wants_json() -> bool:
    """Tell whether the client asked for JSON rather than the file (a browser gets the redirect)."""
    return request.accept_mimetypes.best_match(("text/html", "application/json")) == "application/json"


@public_blp.route("/<string:token>", methods=["GET"])
@errors(401, 404, 409, 410, 503)
@public_blp.response(200, SharedFileSchema, description="With Accept: application/json: the file and its URL")
@public_blp.alt_response(302, description="A redirect to a short-lived presigned GET of the file (attachment)")
def open_share(token):
    """Open a link: redirect to the file, or describe it with its URL (Accept: application/json); a
    browser navigating to it gets its public page (name, size, preview, a Download button)."""
    if request.method == "HEAD":
        # Link checkers and chat previews probe with HEAD: say whether the link works (404, 410, 401 for
        # a password), but issue no URL, so a probe never uses a download up.
        view = shares.describe_share(token)
        return make_response("", 401 if view.password else 200, {"Vary": "Accept"})
    if wants_page():
        return share_page(token)
    shared = shares.open_share(token)
    # The answer differs by Accept; security_headers adds Cache-Control: no-store (it carries a URL).
    if wants_json():
        return shared, 200, {"Vary": "Accept"}
    response = redirect(shared.url, code=302)
    response.headers["Vary"] = "Accept"
    return response


@public_blp.route("/<string:token>", methods=["POST"])
@errors(400, 401, 404, 409, 410, 413, 422, 429, 503)
@limiter.limit(_password_limit, key_func=_token_key, deduct_when=_wrong_password)
@limiter.limit(_password_limit, deduct_when=_wrong_password)
@public_blp.arguments(SharePasswordSchema)
@public_blp.response(200, DownloadSchema)
def open_protected_share(args, token):
    """Open a password-protected link with its password: the file's URL (failed guesses are rate limited)."""
    return shares.open_share(token, args["password"])
