"""Admin routes: statistics, user management and the sweeper (admins only)."""

from __future__ import annotations

from functools import wraps

from flask_jwt_extended import current_user

from ..errors import Forbidden
from ..schemas import (
    AdminStatsSchema,
    AdminUserPageSchema,
    AdminUserQuerySchema,
    AdminUserSchema,
    AdminUserUpdateSchema,
    QuarantineDeletedSchema,
    QuarantinedSchema,
    QuarantineListSchema,
    QuarantineQuerySchema,
    ReinspectResultSchema,
    ReinspectSchema,
    SweepResultSchema,
)
from ..services import admin as admin_service
from ..services import inspection, sweeper
from .base import Blueprint, auth_required, errors

blp = Blueprint("admin", __name__, url_prefix="/api/admin", description="Administration")

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
@errors(401, 403, 503)
@admin_required()
@blp.response(200, AdminStatsSchema)
def stats():
    """Return user counts, file counts and bytes by status, and total usage."""
    return admin_service.stats()


@blp.route("/users", methods=["GET"])
@errors(401, 403, 422, 503)
@admin_required()
@blp.arguments(AdminUserQuerySchema, location="query")
@blp.response(200, AdminUserPageSchema)
def list_users(args):
    """Return a page of users (oldest first) with their usage."""
    return admin_service.list_users(args["limit"], args["cursor"], args["q"])


@blp.route("/users/<string:user_id>", methods=["GET"])
@errors(401, 403, 404, 422, 503)
@admin_required()
@blp.response(200, AdminUserSchema)
def get_user(user_id):
    """Return one user with usage."""
    return admin_service.get_user(user_id)


@blp.route("/users/<string:user_id>", methods=["PATCH"])
@errors(400, 401, 403, 404, 409, 413, 422, 503)
@admin_required()
@blp.arguments(AdminUserUpdateSchema)
@blp.response(200, AdminUserSchema)
def update_user(changes, user_id):
    """Change a user's quota, or disable/enable them, or grant/remove admin rights."""
    return admin_service.update_user(current_user.id, user_id, changes)


@blp.route("/sweep", methods=["POST"])
@errors(401, 403, 503)
@admin_required()
@blp.response(200, SweepResultSchema)
def sweep():
    """Run one bounded pass of the sweeper now and return what it did."""
    return sweeper.sweep()


# -- content inspection ------------------------------------------------------------------


@blp.route("/quarantine", methods=["GET"])
@errors(401, 403, 422, 503)
@admin_required()
@blp.arguments(QuarantineQuerySchema, location="query")
@blp.response(200, QuarantineListSchema)
def list_quarantine(args):
    """List rejected files kept under the quarantine prefix, with their reasons, oldest first."""
    return {"items": inspection.quarantined(args["limit"])}


@blp.route("/quarantine/<string:file_id>/release", methods=["POST"])
@errors(401, 403, 404, 409, 503, 507)
@admin_required()
@blp.response(200, QuarantinedSchema)
def release_quarantined(file_id):
    """Put a quarantined file back: complete again, inspection passed, counted against its owner's quota."""
    return inspection.release(file_id)


@blp.route("/quarantine/<string:file_id>", methods=["DELETE"])
@errors(401, 403, 404, 503)
@admin_required()
@blp.response(200, QuarantineDeletedSchema)
def delete_quarantined(file_id):
    """Delete a quarantined object for good (the record stays rejected)."""
    inspection.delete_quarantined(file_id)
    return {"id": file_id, "status": "deleted"}


@blp.route("/inspect", methods=["POST"])
@errors(400, 401, 403, 409, 422, 503)
@admin_required()
@blp.arguments(ReinspectSchema)
@blp.response(200, ReinspectResultSchema)
def reinspect(body):
    """Inspect complete files again (by id, or confirmed since a time), e.g. after a policy change."""
    ids = [str(file_id) for file_id in body["ids"]] if "ids" in body else None
    queued = inspection.reinspect(ids=ids, since=body.get("since"))
    return {"queued": len(queued), "ids": queued}
