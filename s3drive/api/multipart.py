"""Multipart uploads for large files: create, sign parts, status, complete, abort."""

from __future__ import annotations

from . import Blueprint

blp = Blueprint("multipart", __name__, url_prefix="/api/files/multipart", description="Large files")
