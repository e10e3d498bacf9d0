"""Admin routes: statistics, user management and the sweeper (admins only)."""

from __future__ import annotations

from functools import wraps

from flask_jwt_extended import current_user
from marshmallow import RAISE, fields, validate

from ..errors import Forbidden
from ..schemas import BaseSchema, UserSchema
from ..services import admin as admin_service
from ..services import sweeper
from . import Blueprint, auth_required

blp = Blueprint("admin", __name__, url_prefix="/api/admin", description="Administration")

# -- schemas ----------------------------------------------------------------------------

MAX_BIGINT = 2**63 - 1


class CountBytesSchema(BaseSchema):
    count = fields.Integer()
    bytes = fields.Integer()


class UserCountsSchema(BaseSchema):
    total = fields.Integer()
    active = fields.Integer()
    disabled = fields.Integer()
    admins = fields.Integer(metadata={"description": "active administrators"})


class AdminStatsSchema(BaseSchema):
    users = fields.Nested(UserCountsSchema)
    files = fields.Dict(
        keys=fields.String(), values=fields.Nested(CountBytesSchema), metadata={"description": "by status"}
    )
    used_bytes = fields.Integer()
    reserved_bytes = fields.Integer(metadata={"description": "held by upload URLs that have not expired"})
    quota_bytes = fields.Integer(metadata={"description": "sum of all quotas"})
    lapsed_reservations = fields.Integer(metadata={"description": "expired uploads the sweeper has yet to settle"})


class AdminUserSchema(UserSchema):
    """The User shape, plus what only admins see."""

    is_active = fields.Boolean()
    file_count = fields.Integer()


class AdminUserPageSchema(BaseSchema):
    items = fields.List(fields.Nested(AdminUserSchema))
    next_cursor = fields.String(allow_none=True)


class AdminUserQuerySchema(BaseSchema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=1000))
    cursor = fields.String(load_default=None, validate=validate.Length(max=512))
    q = fields.String(load_default=None, validate=validate.Length(max=64), metadata={"description": "in username"})


class AdminUserUpdateSchema(BaseSchema):
    class Meta:
        unknown = RAISE  # a mistyped field must not pass as a no-op

    quota_bytes = fields.Integer(strict=True, validate=validate.Range(min=0, max=MAX_BIGINT))
    is_active = fields.Boolean()
    is_admin = fields.Boolean()


class SweepResultSchema(BaseSchema):
    confirmed = fields.Integer(metadata={"description": "expired uploads whose objects arrived and fit the quota"})
    expired = fields.Integer(metadata={"description": "expired uploads without an object, or over the quota"})
    rejected = fields.Integer(metadata={"description": "expired uploads whose objects differ from the declaration"})
    multipart_aborted = fields.Integer()
    keys_purged = fields.Integer(metadata={"description": "keys of rejected/expired records deleted from S3"})
    revoked_tokens_deleted = fields.Integer()
    errors = fields.Integer(metadata={"description": "S3 failures; those records are retried on the next run"})
    more = fields.Boolean(metadata={"description": "a batch was full: run again"})


# -- views -------------------------------------------------------------------------------


def admin_required():
    """Require a valid token of an administrator (403 forbidden for others)."""

    def decorator(view):
        @wraps(view)
        def guarded(*args, **kwargs):
            if not current_user.is_admin:
                raise Forbidden("Only administrators may do this.")
            return view(*args, **kwargs)

        return auth_required()(guarded)

    return decorator


@blp.route("/stats", methods=["GET"])
@admin_required()
@blp.response(200, AdminStatsSchema)
def stats():
    """Return user counts, file counts and bytes by status, and total usage."""
    return admin_service.stats()


@blp.route("/users", methods=["GET"])
@admin_required()
@blp.arguments(AdminUserQuerySchema, location="query")
@blp.response(200, AdminUserPageSchema)
def list_users(args):
    """Return a page of users (oldest first) with their usage."""
    items, next_cursor = admin_service.list_users(args["limit"], args["cursor"], args["q"])
    return {"items": items, "next_cursor": next_cursor}


@blp.route("/users/<string:user_id>", methods=["GET"])
@admin_required()
@blp.response(200, AdminUserSchema)
def get_user(user_id):
    """Return one user with usage."""
    return admin_service.get_user(user_id)


@blp.route("/users/<string:user_id>", methods=["PATCH"])
@admin_required()
@blp.arguments(AdminUserUpdateSchema)
@blp.response(200, AdminUserSchema)
def update_user(changes, user_id):
    """Change a user's quota, or disable/enable them, or grant/remove admin rights."""
    return admin_service.update_user(current_user.id, user_id, changes)


@blp.route("/sweep", methods=["POST"])
@admin_required()
@blp.response(200, SweepResultSchema)
def sweep():
    """Run one bounded pass of the sweeper now and return what it did."""
    return sweeper.sweep()
