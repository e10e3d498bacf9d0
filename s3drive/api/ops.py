"""Operational routes: liveness, readiness and metrics."""

from __future__ import annotations

from flask import Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from ..errors import DatabaseUnavailable, StorageUnavailable
from ..extensions import db
from ..schemas import HealthSchema
from ..services import metrics
from ..storage import get_storage
from .base import Blueprint

blp = Blueprint("ops", __name__, description="Health checks")


@blp.route("/healthz", methods=["GET"])
@blp.response(200, HealthSchema)
def healthz():
    """Answer while the process is alive; checks no dependency."""
    return {"status": "ok"}


@blp.route("/readyz", methods=["GET"])
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
    if checks["database"] != "ok":
        raise DatabaseUnavailable("The database does not answer.", details=checks)
    if checks["storage"] != "ok":
        raise StorageUnavailable("The storage bucket does not answer.", details=checks)
    return {"status": "ok", "checks": checks}


@blp.route("/metrics", methods=["GET"])
@blp.doc(responses={200: {"description": "Prometheus text format", "content": {CONTENT_TYPE_LATEST: {}}}})
def prometheus_metrics():
    """Prometheus metrics: users, files and bytes by status, quota use, the sweeper's backlog."""
    return Response(metrics.render(), content_type=CONTENT_TYPE_LATEST)
