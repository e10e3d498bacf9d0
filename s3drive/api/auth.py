"""Auth routes: register, login, refresh, logout, me."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial, wraps

from flask import Flask, current_app, request
from flask_jwt_extended import create_access_token, create_refresh_token, current_user, get_jwt
from flask_limiter.util import get_qualified_name

from ..extensions import limiter
from ..schemas import (
    AccessTokenSchema,
    CredentialsSchema,
    LoginSchema,
    MessageSchema,
    TokenPairSchema,
    UserEnvelopeSchema,
    UserSchema,
)
from ..services import users
from .base import Blueprint, auth_required, errors

LIMITED_ENDPOINTS = "s3drive.rate_limited_endpoints"

blp = Blueprint("auth", __name__, url_prefix="/api/auth", description="Accounts and tokens")


def _login_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT"]


def limit_only_limited_routes(app: Flask) -> None:
    """Run flask-limiter's hooks (before, after and teardown of every request) only on the routes
    with a rate limit: on the others they find nothing to do, at a tenth of a small request's cost.

    The limited routes are those @limiter.limit marked (flask-limiter knows them by qualified name),
    so a limit added to any route is enforced without more code. Call once the routes are registered.
    """
    marked = limiter._marked_for_limiting
    views = app.view_functions.items()
    limited = frozenset(endpoint for endpoint, view in views if get_qualified_name(view) in marked)
    app.extensions[LIMITED_ENDPOINTS] = limited

    def is_limiters(hook) -> bool:
        owner = getattr(hook, "__self__", None)
        return owner is limiter or (isinstance(hook, partial) and limiter in hook.args)

    def gated(hook, skipped: Callable):
        @wraps(hook)
        def run(*args):
            return hook(*args) if request.endpoint in limited else skipped(*args)

        return run

    for funcs, skipped in (
        (app.before_request_funcs, lambda: None),
        (app.after_request_funcs, lambda response: response),
        (app.teardown_request_funcs, lambda error=None: None),
    ):
        hooks = funcs.get(None, [])
        hooks[:] = [gated(hook, skipped) if is_limiters(hook) else hook for hook in hooks]


@blp.route("/register", methods=["POST"])
@errors(400, 403, 409, 413, 422, 429, 503)
@limiter.limit(_login_limit)
@blp.arguments(CredentialsSchema)
@blp.response(201, UserEnvelopeSchema)
def register(credentials):
    """Create an account."""
    user = users.register_user(credentials["username"], credentials["password"])
    return {"user": users.account(user)}


@blp.route("/login", methods=["POST"])
@errors(400, 401, 413, 422, 429, 503)
@limiter.limit(_login_limit)
@blp.arguments(LoginSchema)
@blp.response(200, TokenPairSchema)
def login(credentials):
    """Exchange a username and password for an access and a refresh token."""
    user = users.authenticate(credentials["username"], credentials["password"])
    return {
        "access_token": create_access_token(identity=user.id),
        "refresh_token": create_refresh_token(identity=user.id),
        "token_type": "Bearer",
        "expires_in": current_app.config["ACCESS_TOKEN_EXPIRES"],
    }


@blp.route("/refresh", methods=["POST"])
@errors(401, 503)
@auth_required(refresh=True)
@blp.response(200, AccessTokenSchema)
def refresh():
    """Issue a new access token for a refresh token."""
    return {
        "access_token": create_access_token(identity=current_user.id),
        "expires_in": current_app.config["ACCESS_TOKEN_EXPIRES"],
    }


@blp.route("/logout", methods=["POST"])
@errors(401, 503)
@auth_required(verify_type=False)
@blp.response(200, MessageSchema)
def logout():
    """Revoke the token this request carries (access or refresh)."""
    users.revoke_token(get_jwt())
    return {"message": "Token revoked."}


@blp.route("/me", methods=["GET"])
@errors(401, 503)
@auth_required()
@blp.response(200, UserSchema)
def me():
    """Return the signed-in user."""
    # The row, not the cached principal: the account's numbers are always fresh.
    return users.account(users.get_user(current_user.id))
