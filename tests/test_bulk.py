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


def test_bulk_insert_stores_timestamps_like_the_orm(app, client):
    """Same text on SQLite for a whole-second timestamp, so comparisons and cursors agree."""
    from sqlalchemy import text

    register_and_login(client, "bulk2")
    whole_second = utcnow().replace(microsecond=0)
    with app.app_context():
        user_id = db.session.query(User).one().id
        bulk_id, orm_id = new_ids(2)
        common = {
            "user_id": user_id,
            "batch_id": "b",
            "content_type": "text/plain",
            "size": 1,
            "tier": "standard",
            "tags": [],
            "folder": "",
            "status": "pending",
            "method": "PUT",
            "created_at": whole_second,
        }
        bulk_insert(File.__table__, [{**common, "id": bulk_id, "file_name": "a", "s3_key": f"k/{bulk_id}"}])
        db.session.add(File(**common, id=orm_id, file_name="b", s3_key=f"k/{orm_id}"))
        db.session.commit()
        stored = dict(db.session.execute(text("SELECT id, CAST(created_at AS TEXT) FROM files")).all())
        assert stored[bulk_id] == stored[orm_id]
