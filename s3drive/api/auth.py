"""Auth routes: register, login, refresh, logout, me."""

from __future__ import annotations

from flask import current_app, request
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


@limiter.request_filter
def _route_has_no_limits() -> bool:
    """Let requests to routes without a rate limit skip the limiter (its work was a tenth of a small request)."""
    limited = current_app.extensions.get(LIMITED_ENDPOINTS)
    if limited is None:
        # The routes decorated with @limiter.limit (flask-limiter knows them by qualified name).
        marked = limiter._marked_for_limiting
        views = current_app.view_functions.items()
        limited = frozenset(endpoint for endpoint, view in views if get_qualified_name(view) in marked)
        current_app.extensions[LIMITED_ENDPOINTS] = limited
    return request.endpoint not in limited


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
