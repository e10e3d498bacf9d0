"""The quota's fast path: users.reserved_bound, never less than what live reservations hold.

A batch that surely fits under the bound reserves in one statement; one that does not is decided
exactly (the live reservations summed) and the bound is reset to that sum. Every test checks the
bytes against the exact sums the API reports, with real uploads on moto.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta

import psycopg
import pytest
from conftest import register_and_login
from helpers import KNOWN_CALLER, plain_url, presign, put_bytes, spec, statements, usage
from sqlalchemy import select, update

from s3drive.extensions import db
from s3drive.models import File, User
from s3drive.services import uploads
from s3drive.timeutil import utcnow

QUOTA = 1000


@contextmanager
def driver_statements(monkeypatch):
    """Collect the SQL statements (lowercased) psycopg runs inside the block, whoever sends them."""
    seen: list[str] = []
    execute = psycopg.Cursor.execute

    def record(cursor, query, params=None, **kwargs):
        seen.append(str(query).lower())
        return execute(cursor, query, params, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(psycopg.Cursor, "execute", record)
        yield seen


def bound(app, username: str) -> int:
    with app.app_context():
        return db.session.scalar(select(User.reserved_bound).where(User.username == username))


def upload_and_confirm(client, auth, name: str, size: int) -> dict:
    """Presign, PUT `size` bytes and confirm one file; return its ticket."""
    [ticket] = presign(client, auth, spec(name, b"x" * size))["successful"]
    assert put_bytes(ticket, b"x" * size).status_code == 200
    assert client.post("/api/files/confirm_upload/", json={"id": ticket["id"]}, headers=auth).status_code == 200
    return ticket


def test_a_batch_that_surely_fits_reserves_without_summing_the_reservations(make_app):
    app = make_app(DEFAULT_QUOTA_BYTES=QUOTA)
    client = app.test_client()
    auth = register_and_login(client, "alice")
    presign(client, auth, spec("a.bin", b"x" * 100))
    with statements(app) as seen:
        answer = presign(client, auth, spec("b.bin", b"x" * 200), spec("c.bin", b"x" * 300))
    assert answer["total_successful"] == 2
    assert not [s for s in seen if "sum(" in s], seen  # no sum over the user's records
    assert bound(app, "alice") == 600
    assert usage(client, auth)["reserved_bytes"] == 600  # the exact sum agrees


def test_one_file_within_the_bound_is_reserved_and_recorded_by_one_statement_on_postgresql(make_app, monkeypatch):
    """The presign of a single file (an Uppy form, the hot path): on PostgreSQL the reservation and the
    record go in one round trip; SQLite takes two statements. Either way both are written, and the
    file uploads and confirms."""
    app = make_app(DEFAULT_QUOTA_BYTES=QUOTA)
    client = app.test_client()
    auth = register_and_login(client, "alice")
    presign(client, auth, spec("a.bin", b"x" * 100))
    with app.app_context():
        postgres = db.engine.dialect.name == "postgresql"
    # On PostgreSQL the statement may run on the driver's connection, unseen by SQLAlchemy's events.
    with driver_statements(monkeypatch) if postgres else statements(app) as seen:
        [ticket] = presign(client, auth, spec("b.bin", b"x" * 200))["successful"]
    writes = [s for s in seen if s.startswith(("insert", "update", "with"))]
    if postgres:
        assert len(writes) == 1, writes
        assert "update users" in writes[0] and "insert into files" in writes[0]
    else:
        assert [s.split()[0] for s in writes] == ["update", "insert"], writes
    assert bound(app, "alice") == 300
    assert usage(client, auth)["reserved_bytes"] == 300
    assert put_bytes(ticket, b"x" * 200).status_code == 200
    assert client.post("/api/files/confirm_upload/", json={"id": ticket["id"]}, headers=auth).status_code == 200
    assert usage(client, auth)["used_bytes"] == 200


def test_an_arrival_turns_its_reservation_into_used_bytes_and_lowers_the_bound(make_app):
    app = make_app(DEFAULT_QUOTA_BYTES=QUOTA)
    client = app.test_client()
    auth = register_and_login(client, "alice")
    upload_and_confirm(client, auth, "a.bin", 400)
    assert bound(app, "alice") == 0
    assert usage(client, auth) | {"file_count": None} == {
        "used_bytes": 400,
        "reserved_bytes": 0,
        "quota_bytes": QUOTA,
        "file_count": None,
    }
    # What is left is usable at once, through the fast path.
    assert presign(client, auth, spec("b.bin", b"x" * 600))["total_successful"] == 1


def test_reservations_that_lapsed_are_counted_exactly_once_the_bound_is_in_the_way(make_app):
    app = make_app(DEFAULT_QUOTA_BYTES=QUOTA)
    client = app.test_client()
    auth = register_and_login(client, "alice")
    presign(client, auth, spec("a.bin", b"x" * 700))
    with app.app_context():  # its URL expired: it holds nothing any more, but the bound still counts it
        db.session.execute(update(File).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    assert bound(app, "alice") == 700
    with statements(app) as seen:
        answer = presign(client, auth, spec("b.bin", b"x" * 600))
    assert answer["total_successful"] == 1  # the exact count says it fits
    assert [s for s in seen if "sum(" in s]
    assert bound(app, "alice") == 600  # reset to the exact sum
    # Nothing more than the quota: 600 reserved, so 401 bytes do not fit, 400 do.
    refused = presign(client, auth, spec("c.bin", b"x" * 401))
    assert refused["failed"][0]["error"]["code"] == "quota_exceeded"
    assert presign(client, auth, spec("d.bin", b"x" * 400))["total_successful"] == 1
    assert usage(client, auth)["reserved_bytes"] == QUOTA


def test_a_deleted_file_whose_url_lives_still_holds_its_bytes(make_app):
    # Its URL could store the bytes again: released from used, the bytes go to the bound.
    app = make_app(DEFAULT_QUOTA_BYTES=QUOTA)
    client = app.test_client()
    auth = register_and_login(client, "alice")
    ticket = upload_and_confirm(client, auth, "a.bin", 700)
    assert client.delete(f"/api/files/{ticket['id']}", headers=auth).status_code == 200
    assert usage(client, auth)["used_bytes"] == 0 and usage(client, auth)["reserved_bytes"] == 700
    assert bound(app, "alice") >= 700
    refused = presign(client, auth, spec("b.bin", b"x" * 500))
    assert refused["failed"][0]["error"]["code"] == "quota_exceeded"


def test_a_batch_partly_over_the_quota_is_decided_file_by_file(make_app):
    app = make_app(DEFAULT_QUOTA_BYTES=QUOTA)
    client = app.test_client()
    auth = register_and_login(client, "alice")
    answer = presign(client, auth, *[spec(f"{i}.bin", b"x" * 300) for i in range(4)])
    assert (answer["total_successful"], answer["total_failed"]) == (3, 1)
    assert bound(app, "alice") == 900 == usage(client, auth)["reserved_bytes"]


def test_a_migrated_user_starts_at_a_bound_that_always_holds(make_app):
    # Migration 0006 sets the bound to the quota: the first reservation counts exactly and resets it.
    app = make_app(DEFAULT_QUOTA_BYTES=QUOTA)
    client = app.test_client()
    auth = register_and_login(client, "alice")
    with app.app_context():
        db.session.execute(update(User).values(reserved_bound=User.quota_bytes))
        db.session.commit()
    assert presign(client, auth, spec("a.bin", b"x" * 1000))["total_successful"] == 1
    assert bound(app, "alice") == 1000


BIG_BATCH = 25  # >= uploads.SIGN_MEANWHILE_MIN_ROWS


def test_a_big_batch_is_signed_while_postgresql_reserves_and_inserts_it(make_app, database_url, monkeypatch):
    """On PostgreSQL the batch's one statement is sent before its URLs are signed: while they are,
    the statement holds the user's row lock and its rows are not yet visible to anyone. The URLs go
    out once it committed, and they work."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite reserves and inserts before the signing, one statement at a time")
    assert BIG_BATCH >= uploads.SIGN_MEANWHILE_MIN_ROWS
    app = make_app(**KNOWN_CALLER, DEFAULT_QUOTA_BYTES=QUOTA)
    client = app.test_client()
    auth = register_and_login(client, "alice")
    presign(client, auth, spec("warm-up.bin", b"x"))  # the caller is known now: no session transaction
    sign, seen = uploads.sign_tickets, {}

    def sign_while_looking(rows):
        with psycopg.connect(plain_url(database_url), autocommit=True) as other:
            other.execute("SET lock_timeout = '500ms'")
            seen["files visible"] = other.execute("SELECT count(*) FROM files").fetchone()[0] - 1
            try:
                other.execute("SELECT 1 FROM users WHERE username = 'alice' FOR UPDATE")
            except psycopg.errors.LockNotAvailable:
                seen["user row locked"] = True
        return sign(rows)

    monkeypatch.setattr(uploads, "sign_tickets", sign_while_looking)
    answer = presign(client, auth, *[spec(f"{i}.bin", b"x" * 10) for i in range(BIG_BATCH)])
    assert seen == {"files visible": 0, "user row locked": True}
    assert answer["total_successful"] == BIG_BATCH
    assert bound(app, "alice") == 1 + 10 * BIG_BATCH == usage(client, auth)["reserved_bytes"]
    ticket = answer["successful"][-1]
    assert put_bytes(ticket, b"x" * 10).status_code == 200
    assert client.post("/api/files/confirm_upload/", json={"id": ticket["id"]}, headers=auth).status_code == 200


def test_a_big_batch_partly_over_the_quota_signs_only_what_the_ledger_lets_in(make_app, monkeypatch):
    """The one statement's guard finds no room for the whole batch: nothing of it is written, the
    URLs signed meanwhile (PostgreSQL) are dropped, and the batch is decided file by file."""
    app = make_app(**KNOWN_CALLER, DEFAULT_QUOTA_BYTES=QUOTA)
    client = app.test_client()
    auth = register_and_login(client, "alice")
    sign, signed = uploads.sign_tickets, []
    monkeypatch.setattr(uploads, "sign_tickets", lambda rows: signed.append(len(rows)) or sign(rows))
    answer = presign(client, auth, *[spec(f"{i}.bin", b"x" * 50) for i in range(BIG_BATCH)])
    assert (answer["total_successful"], answer["total_failed"]) == (20, BIG_BATCH - 20)
    assert {f["error"]["code"] for f in answer["failed"]} == {"quota_exceeded"}
    assert signed[-1] == 20  # what went out was signed for the rows the ledger let in
    with app.app_context():
        ids = set(db.session.scalars(select(File.id)))
    assert ids == {ticket["id"] for ticket in answer["successful"]}
    assert bound(app, "alice") == 1000 == usage(client, auth)["reserved_bytes"]
    ticket = answer["successful"][0]
    assert put_bytes(ticket, b"x" * 50).status_code == 200
    assert client.post("/api/files/confirm_upload/", json={"id": ticket["id"]}, headers=auth).status_code == 200
