"""bulk_insert writes exactly what the ORM would, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from datetime import timedelta

from conftest import register_and_login

from s3drive.bulk import bulk_insert
from s3drive.extensions import db
from s3drive.models import File, User, new_ids
from s3drive.timeutil import utcnow


def test_bulk_insert_round_trips_every_type(app, client):
    register_and_login(client, "bulk")
    now = utcnow()
    with app.app_context():
        user_id = db.session.query(User).one().id
        ids = new_ids(3)
        rows = [
            {
                "id": file_id,
                "user_id": user_id,
                "batch_id": "b" * 36,
                "file_name": name,
                "s3_key": f"k/{file_id}",
                "content_type": "text/plain",
                "size": size,
                "checksum_sha256": checksum,
                "tier": "standard",
                "title": None,
                "description": "d\nwith 'quotes' and \\ and \t tab",
                "tags": tags,
                "folder": "a/b",
                "status": "pending",
                "method": "PUT",
                "created_at": now,
                "expires_at": now + timedelta(hours=1),
            }
            for file_id, name, size, checksum, tags in zip(
                ids,
                ["plain.txt", "ünï 😀.txt", "tab\there.txt"],
                [0, 5 * 1024**4, 7],
                [None, "A" * 43 + "=", None],
                [[], ["x", "ü"], ["a,b", '"q"']],
                strict=True,
            )
        ]
        bulk_insert(File.__table__, rows)
        db.session.commit()
        db.session.expire_all()
        for row in rows:
            record = db.session.get(File, row["id"])
            for name, value in row.items():
                assert getattr(record, name) == value, name
        assert db.session.get(File, ids[0]).created_at.tzinfo is not None
