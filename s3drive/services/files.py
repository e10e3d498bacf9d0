"""Reading a user's file records."""

from __future__ import annotations

from ..errors import NotFound
from ..extensions import db
from ..models import File


def get_owned_file(user_id: str, file_id: str) -> File:
    """Return the user's file, or not_found (also for other users' files)."""
    record = db.session.get(File, file_id) if len(file_id) <= 64 else None
    if record is None or record.user_id != user_id:
        raise NotFound("No such file.")
    return record
