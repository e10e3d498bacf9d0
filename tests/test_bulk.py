"""bulk_insert writes exactly what the ORM would, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, timedelta

import pytest
from conftest import register_and_login

from s3drive.bulk import bulk_insert
from s3drive.extensions import db
from s3drive.models import File, User, new_ids
from s3drive.timeutil import utcnow


def every_type_rows(user_id: str, now) -> list[dict]:
    """Three files rows whose values cover every column type and the text that needs escaping."""
    return [
        {
            "id": file_id,
            "user_id": user_id,
            "batch_id": "b" * 36,
            "file_name": name,
            "s3_key": f"k/{file_id}",
            "content_type": "text/plain",
            "size": size,
            "size_declared": declared,
            "checksum_sha256": checksum,
            "tier": "standard",
            "title": None,
            "description": "d\nwith 'quotes', \"double\", \\ and \t tab",
            "tags": tags,
            "folder": "a/b",
            "status": "pending",
            "method": "PUT",
            "created_at": now,
            "expires_at": expires,
        }
        for file_id, name, size, declared, checksum, tags, expires in zip(
            new_ids(3),
            ["plain.txt", 'ünï 😀 "q".txt', "tab\there\\.txt"],
            [0, 5 * 1024**4, 7],
            [True, False, True],
            [None, "A" * 43 + "=", None],
            [[], ["x", "ü"], ["a,b", '"q"']],
            [now + timedelta(hours=1), now + timedelta(days=7, microseconds=1), now.replace(tzinfo=None)],
            strict=True,
        )
    ]


def assert_stored_as_given(rows: list[dict]) -> None:
    """Each row reads back through the ORM as it was given (a naive timestamp as UTC)."""
    db.session.expire_all()
    for row in rows:
        record = db.session.get(File, row["id"])
        for name, value in row.items():
            if name.endswith("_at") and value.tzinfo is None:
                value = value.replace(tzinfo=UTC)  # naive means UTC here
            assert getattr(record, name) == value, name


def test_bulk_insert_round_trips_every_type(app, client):
    register_and_login(client, "bulk")
    with app.app_context():
        rows = every_type_rows(db.session.query(User).one().id, utcnow())
        bulk_insert(File.__table__, rows)
        db.session.commit()
        assert_stored_as_given(rows)
        assert db.session.get(File, rows[0]["id"]).created_at.tzinfo is not None


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


def test_insert_guarded_round_trips_shared_and_varying_values_of_every_type(app, client):
    """PostgreSQL's one statement: values all rows share go as parameters, the others as one JSON
    document; what lands is what the ORM reads back, whichever way a value went."""
    from sqlalchemy import bindparam, select

    from s3drive.bulk import can_insert_guarded, insert_guarded

    register_and_login(client, "guarded")
    now = utcnow()
    with app.app_context():
        user_id = db.session.query(User).one().id
        guard = select(User.id).where(User.id == bindparam("user_id"))
        if not can_insert_guarded([{}]):
            pytest.skip("one statement on PostgreSQL only; SQLite takes bulk_insert (tested above)")
        rows = every_type_rows(user_id, now)
        one_row = {**rows[0], "id": new_ids(1)[0], "s3_key": "k/one", "tags": ["only", "ü"]}
        assert insert_guarded(File.__table__, rows, guard, {"user_id": user_id})
        assert insert_guarded(File.__table__, [one_row], guard, {"user_id": user_id})
        assert not insert_guarded(File.__table__, [{**one_row, "id": "x", "s3_key": "x"}], guard, {"user_id": "nobody"})
        assert_stored_as_given([*rows, one_row])
        assert db.session.get(File, "x") is None


def test_new_ids_are_unique_uuid7s_in_creation_order():
    first = new_ids(1000)
    time.sleep(0.002)
    later = new_ids(3)
    parsed = [uuid.UUID(value) for value in first + later]
    assert all(value.version == 7 and value.variant == uuid.RFC_4122 for value in parsed)
    assert [str(value) for value in parsed] == first + later  # canonical form
    assert len(set(first + later)) == 1003
    assert max(first) < min(later)  # a later batch sorts after an earlier one
    assert abs((parsed[0].int >> 80) / 1000 - time.time()) < 5  # the first 48 bits: Unix time in ms


def test_insert_guarded_stores_none_as_null_refuses_over_long_text_and_reads_naive_times_as_utc(app, client):
    """A None in a JSON column is SQL NULL whether all rows share it or not; text longer than its
    column is refused, never cut (a cast to VARCHAR(n) would cut it); a naive timestamp is UTC."""
    from sqlalchemy import bindparam, select, text
    from sqlalchemy.exc import DataError

    from s3drive.bulk import can_insert_guarded, insert_guarded

    register_and_login(client, "guarded2")
    now = utcnow().replace(microsecond=0)
    with app.app_context():
        if not can_insert_guarded([{}]):
            pytest.skip("one statement on PostgreSQL only")
        user_id = db.session.query(User).one().id
        guard = select(User.id).where(User.id == bindparam("user_id"))

        def row(file_id: str, inspection, created_at=now) -> dict:
            return {
                **{"user_id": user_id, "batch_id": "b", "content_type": "text/plain", "size": 1, "tier": "standard"},
                **{"tags": [], "folder": "", "status": "pending", "method": "PUT", "file_name": "n"},
                **{"id": file_id, "s3_key": f"k/{file_id}", "inspection": inspection, "created_at": created_at},
            }

        varying, shared = new_ids(2), new_ids(2)
        naive = now.replace(tzinfo=None)
        rows = [row(varying[0], None, naive), row(varying[1], {"kind": "image"}, now)]
        assert insert_guarded(File.__table__, rows, guard, {"user_id": user_id})
        assert insert_guarded(File.__table__, [row(i, None, naive) for i in shared], guard, {"user_id": user_id})
        db.session.commit()
        nulls = set(db.session.scalars(text("SELECT id FROM files WHERE inspection IS NULL")))
        assert nulls == {varying[0], *shared}
        db.session.expire_all()
        assert {db.session.get(File, i).created_at for i in [*varying, *shared]} == {now}
        too_long = row(new_ids(1)[0], None)
        too_long["s3_key"] = "k/" + "x" * 1023
        with pytest.raises(DataError):
            insert_guarded(File.__table__, [too_long, row(new_ids(1)[0], None)], guard, {"user_id": user_id})
        db.session.rollback()
        assert db.session.scalar(text("SELECT count(*) FROM files")) == 4
