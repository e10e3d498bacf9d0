"""Big batches (more than uploads.STREAM_CHUNK files): on PostgreSQL they go to the database in
chunks as they are validated, in one transaction that the quota's guard closes; elsewhere in one
piece. Either way: request order, partial success, exact reservations, nothing half-kept."""

from __future__ import annotations

import psycopg
import pytest
from conftest import register_and_login
from helpers import KNOWN_CALLER, plain_url, presign, put_bytes, spec, usage
from sqlalchemy import delete, func, select

from s3drive import schemas
from s3drive.extensions import db
from s3drive.models import File, User
from s3drive.services import uploads

MIB = 1024 * 1024
COUNT = 2 * uploads.STREAM_CHUNK + 50  # three chunks
INVALID = {3, uploads.STREAM_CHUNK + 7, COUNT - 1}  # a failure in the first, second and last chunk
MULTIPART = {5, uploads.STREAM_CHUNK + 1, COUNT - 2}  # multipart uploads among the others


def batch_specs() -> list[dict]:
    specs = []
    for i in range(COUNT):
        if i in INVALID:
            specs.append({"file_name": f"{i}.bin", "content_type": "image/jpeg", "file_size": -1})
        elif i in MULTIPART:
            specs.append({"file_name": f"{i}.bin", "content_type": "image/jpeg", "file_size": 6 * MIB})
        else:
            specs.append(spec(f"{i}.bin", b"x" * 10))
    return specs


def signed_in(make_app, **settings):
    """Return (app, client, auth) of alice on an app with these settings, after one small presign: the
    caller is known afterwards (auth cache), so no session transaction is open."""
    app = make_app(**KNOWN_CALLER, **settings)
    client = app.test_client()
    auth = register_and_login(client, "alice")
    presign(client, auth, spec("warm-up.bin", b"x"))
    return app, client, auth


def test_a_big_batch_answers_in_request_order_with_exact_reservations(make_app):
    app, client, auth = signed_in(make_app, DEFAULT_QUOTA_BYTES=10**9, MULTIPART_THRESHOLD=5 * MIB)
    answer = presign(client, auth, *batch_specs())
    assert (answer["total_successful"], answer["total_failed"]) == (COUNT - len(INVALID), len(INVALID))
    assert [failure["index"] for failure in answer["failed"]] == sorted(INVALID)
    assert {failure["error"]["code"] for failure in answer["failed"]} == {"validation_error"}
    expected = [f"{i}.bin" for i in range(COUNT) if i not in INVALID]
    assert [ticket["file_name"] for ticket in answer["successful"]] == expected
    multipart = {ticket["file_name"] for ticket in answer["successful"] if ticket["multipart"]}
    assert multipart == {f"{i}.bin" for i in MULTIPART}
    with app.app_context():
        stored = dict(db.session.execute(select(File.id, File.file_name)).all())
    tickets = {ticket["id"]: ticket["file_name"] for ticket in answer["successful"]}
    assert {i: n for i, n in stored.items() if n != "warm-up.bin"} == tickets
    declared = 10 * (COUNT - len(INVALID) - len(MULTIPART)) + 6 * MIB * len(MULTIPART)
    assert usage(client, auth)["reserved_bytes"] == 1 + declared
    simple = next(t for t in answer["successful"] if t["file_name"] == f"{COUNT - 3}.bin")
    assert put_bytes(simple, b"x" * 10).status_code == 200
    assert client.post("/api/files/confirm_upload/", json={"id": simple["id"]}, headers=auth).status_code == 200
    assert usage(client, auth)["used_bytes"] == 10


def test_a_big_batch_is_in_the_database_before_its_last_files_are_validated(make_app, database_url, monkeypatch):
    """PostgreSQL gets the first chunk's INSERT before the second chunk is validated; the guard's
    reservation comes last, once all are."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite takes a batch in one piece")
    app, client, auth = signed_in(make_app, DEFAULT_QUOTA_BYTES=10**9)
    events: list[str] = []
    load = schemas.load_upload_spec
    execute = psycopg.Cursor.execute

    def load_and_note(raw, policy, index=0, **kwargs):
        events.append(f"validate {index}")
        return load(raw, policy, index, **kwargs)

    def execute_and_note(cursor, query, params=None, **kwargs):
        events.append(" ".join(str(query).split()[:3]).lower())
        return execute(cursor, query, params, **kwargs)

    monkeypatch.setattr(schemas, "load_upload_spec", load_and_note)
    monkeypatch.setattr(psycopg.Cursor, "execute", execute_and_note)
    assert presign(client, auth, *[spec(f"{i}.bin", b"x" * 10) for i in range(COUNT)])["total_successful"] == COUNT
    inserts = [i for i, event in enumerate(events) if event == "insert into files"]
    assert len(inserts) == 3, events[-10:]
    assert inserts[0] < events.index(f"validate {uploads.STREAM_CHUNK + 1}")
    assert inserts[1] < events.index(f"validate {COUNT - 1}")
    assert events.index("update users set") > events.index(f"validate {COUNT - 1}")
    assert usage(client, auth)["reserved_bytes"] == 1 + 10 * COUNT


def test_a_big_batch_over_the_quota_keeps_only_what_the_ledger_lets_in(make_app):
    """The guard finds no room for the whole batch: every chunk already inserted is rolled back and
    the batch is decided file by file."""
    app, client, auth = signed_in(make_app, DEFAULT_QUOTA_BYTES=1 + 10 * 300)
    answer = presign(client, auth, *[spec(f"{i}.bin", b"x" * 10) for i in range(COUNT)])
    assert (answer["total_successful"], answer["total_failed"]) == (300, COUNT - 300)
    assert {failure["error"]["code"] for failure in answer["failed"]} == {"quota_exceeded"}
    assert [t["file_name"] for t in answer["successful"]] == [f"{i}.bin" for i in range(300)]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(File)) == 1 + 300
    assert usage(client, auth)["reserved_bytes"] == 1 + 10 * 300
    ticket = answer["successful"][-1]
    assert put_bytes(ticket, b"x" * 10).status_code == 200
    assert client.post("/api/files/confirm_upload/", json={"id": ticket["id"]}, headers=auth).status_code == 200


@pytest.mark.parametrize("count", [25, COUNT], ids=["one-statement", "streamed"])
def test_a_batch_whose_connection_dies_before_it_commits_is_a_503_and_keeps_nothing(
    make_app, database_url, monkeypatch, count
):
    """PostgreSQL ends the batch's connection after its statement (or chunks and guard) were sent,
    while its URLs are signed: a 503, no record and no reservation kept, and the next batch gets a
    working connection."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has no server to end a connection")
    app, client, auth = signed_in(make_app, DEFAULT_QUOTA_BYTES=10**9)
    sign, ended = uploads.sign_tickets, []

    def end_the_transaction_then_sign(rows):
        with psycopg.connect(plain_url(database_url), autocommit=True) as other:
            ended.extend(
                other.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND pid <> pg_backend_pid() AND state <> 'idle'"
                ).fetchall()
            )
        return sign(rows)

    specs = [spec(f"{i}.bin", b"x" * 10) for i in range(count)]
    with monkeypatch.context() as patch:
        patch.setattr(uploads, "sign_tickets", end_the_transaction_then_sign)
        response = client.post("/api/files/upload/", json={"files": specs}, headers=auth)
    assert ended == [(True,)]
    assert response.status_code == 503, response.get_json()
    assert response.get_json()["error"]["code"] == "database_unavailable" and response.headers["Retry-After"]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(File)) == 1  # the warm-up's
    with app.app_context():
        assert db.session.scalar(select(User.reserved_bound)) == 1  # the bound too, not only the records
    assert usage(client, auth)["reserved_bytes"] == 1
    assert presign(client, auth, *specs)["total_successful"] == count
    assert usage(client, auth)["reserved_bytes"] == 1 + 10 * count


@pytest.mark.parametrize("count", [25, COUNT], ids=["one-statement", "streamed"])
def test_a_batch_whose_signing_fails_keeps_no_record_and_no_reservation(make_app, database_url, monkeypatch, count):
    """On PostgreSQL the URLs are signed while the batch's statements are uncommitted: if signing
    fails, the transaction is rolled back, so no record or reservation outlives the error."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite signs after the commit (its records wait for the sweeper, as a lost answer's would)")
    app, client, auth = signed_in(make_app, DEFAULT_QUOTA_BYTES=10**9)

    def fail(rows):
        raise RuntimeError("the signer broke")

    specs = [spec(f"{i}.bin", b"x" * 10) for i in range(count)]
    with monkeypatch.context() as patch:
        patch.setattr(uploads, "sign_tickets", fail)
        response = client.post("/api/files/upload/", json={"files": specs}, headers=auth)
    assert response.status_code == 500 and response.get_json()["error"]["code"] == "internal_error"
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(File)) == 1  # the warm-up's
    assert usage(client, auth)["reserved_bytes"] == 1
    assert presign(client, auth, *specs)["total_successful"] == count


def test_a_big_batch_from_a_user_deleted_meanwhile_is_a_401(make_app, database_url):
    """The account is deleted while this process still knows the caller (the auth cache): the
    chunks' foreign key fails, and the answer is the 401 a deleted user gets, not a 500."""
    app, client, auth = signed_in(make_app, DEFAULT_QUOTA_BYTES=10**9)
    with app.app_context():
        db.session.execute(delete(User).where(User.username == "alice"))
        db.session.commit()
    response = client.post(
        "/api/files/upload/", json={"files": [spec(f"{i}.bin", b"x") for i in range(COUNT)]}, headers=auth
    )
    assert response.status_code == 401, response.get_json()
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(File)) == 0
