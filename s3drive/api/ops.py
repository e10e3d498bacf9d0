"""Operational routes: liveness, readiness and metrics."""

from __future__ import annotations

import hmac

from flask import Response, current_app, request
from flask_jwt_extended import current_user, verify_jwt_in_request
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from ..errors import DatabaseUnavailable, Forbidden, NotFound, StorageUnavailable, Unauthorized
from ..extensions import db, limiter
from ..schemas import HealthSchema
from ..services import metrics
from ..storage import get_storage
from .base import Blueprint, errors

blp = Blueprint("ops", __name__, description="Health checks")


@blp.route("/healthz", methods=["GET"])
@blp.response(200, HealthSchema)
def healthz():
    """Answer while the process is alive; checks no dependency."""
    return {"status": "ok"}


@blp.route("/readyz", methods=["GET"])
@errors(503)
@blp.response(200, HealthSchema)
def readyz():
    """Answer 200 when the database and the bucket answer, else 503 naming the failure."""
    checks = {}
    try:
        db.session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as error:  # any failure means "not ready"
        db.session.rollback()
        checks["database"] = f"error: {type(error).__name__}"
    try:
        get_storage().check_bucket()
        checks["storage"] = "ok"
    except StorageUnavailable as error:
        checks["storage"] = f"error: {error.message}"
    checks["rate_limits"] = rate_limit_store_state()
    if checks["database"] != "ok":
        raise DatabaseUnavailable("The database does not answer.", details=checks)
    if checks["storage"] != "ok":
        raise StorageUnavailable("The storage bucket does not answer.", details=checks)
    return {"status": "ok", "checks": checks}


@blp.route("/metrics", methods=["GET"])
@errors(401, 403, 404, 503)
@blp.doc(responses={200: {"description": "Prometheus text format", "content": {CONTENT_TYPE_LATEST: {}}}})
def prometheus_metrics():
    """Prometheus metrics: users, files and bytes by status, quota use, the sweeper's backlog.

    Needs `Authorization: Bearer <S3DRIVE_METRICS_TOKEN>` or an admin's access token; without a
    metrics token configured and no admin token given, the route does not exist (404).
    """
    require_metrics_access()
    return Response(metrics.render(), content_type=CONTENT_TYPE_LATEST)


def rate_limit_store_state() -> str:
    """Return "ok", or how the rate limits run while their store (Redis) is unreachable.

    Not a reason to leave the rotation: limits fall back to each process's memory meanwhile.
    """
    try:
        healthy = limiter.storage.check()
    except Exception:  # any failure of the store means: degraded
        healthy = False
    return "ok" if healthy else "degraded: store unreachable, limits counted per process"


def require_metrics_access() -> None:
    """Let the metrics token or an admin's token through; answer 404, 401 or 403 otherwise."""
    expected = current_app.config.get("METRICS_TOKEN")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if expected and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode()):
        return
    if not given:
        if expected:
            raise Unauthorized("Send Authorization: Bearer <S3DRIVE_METRICS_TOKEN>.")
        raise NotFound("No such route or resource.")
    verify_jwt_in_request()  # a bad, expired or revoked token answers 401 like on every route
    if not current_user.is_admin:
        raise Forbidden("Only the metrics token or an administrator may read the metrics.")
