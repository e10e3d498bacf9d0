"""Admin routes: statistics and user management (admins only)."""

from __future__ import annotations

from . import Blueprint

blp = Blueprint("admin", __name__, url_prefix="/api/admin", description="Administration")
