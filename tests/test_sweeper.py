"""Sweeper: expired uploads settled by what S3 holds, stale multipart aborted, dead objects purged."""

from __future__ import annotations

import threading
from dataclasses import asdict
from datetime import timedelta

import pytest
from conftest import BUCKET, register_and_login
from helpers import presign, put_bytes, spec
from sqlalchemy import select, update

from s3drive.errors import StorageUnavailable
from s3drive.extensions import db
from s3drive.models import File, FileStatus, RevokedToken, User, new_id
from s3drive.services import sweeper
from s3drive.timeutil import utcnow

ZERO = dict.fromkeys(sweeper.COUNTED, 0)


def backdate(app, ids, by=timedelta(hours=1)) -> None:
    """Make these uploads' URLs expire `by` ago."""
    with app.app_context():
        db.session.execute(update(File).where(File.id.in_(list(ids))).values(expires_at=utcnow() - by))
        db.session.commit()


def run_sweep(app, **kwargs) -> dict:
    with app.app_context():
        try:
            return asdict(sweeper.sweep(**kwargs))
        finally:
            db.session.remove()


def record(app, file_id) -> File:
    with app.app_context():
        row = db.session.get(File, file_id)
        db.session.expunge(row)
        return row


def user_row(app, username) -> User:
    with app.app_context():
        row = db.session.scalar(select(User).where(User.username == username))
        db.session.expunge(row)
        return row


def bucket_keys(s3) -> set[str]:
    return {item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", ())}


def counts(**nonzero) -> dict:
    return {**ZERO, **nonzero, "more": False}


def test_expired_uploads_are_settled_by_what_s3_holds(app, client, auth, s3):
    arrived, missing, differs, recent = presign(
        client, auth, spec("a.jpg"), spec("b.jpg"), spec("c.jpg"), spec("d.jpg")
    )["successful"]
    assert put_bytes(arrived, b"x" * 10).status_code == 200
    assert put_bytes(differs, b"x" * 11).status_code == 200  # moto takes any length; AWS would refuse it
    assert put_bytes(recent, b"x" * 10).status_code == 200
    backdate(app, [arrived["id"], missing["id"], differs["id"]])
    backdate(app, [recent["id"]], by=timedelta(minutes=1))  # inside the grace period: maybe still uploading

    assert run_sweep(app) == counts(confirmed=1, expired=1, rejected=1, keys_purged=2)

    assert record(app, arrived["id"]).status == FileStatus.COMPLETE
    assert record(app, arrived["id"]).etag and record(app, arrived["id"]).confirmed_at
    assert record(app, missing["id"]).status == FileStatus.EXPIRED
    assert record(app, differs["id"]).status == FileStatus.REJECTED
    assert record(app, recent["id"]).status == FileStatus.PENDING
    assert bucket_keys(s3) == {arrived["s3_key"], recent["s3_key"]}
    assert s3.get_object(Bucket=BUCKET, Key=arrived["s3_key"])["Body"].read() == b"x" * 10
    usage = client.get("/api/files/usage", headers=auth).get_json()
    # The last one lapsed a minute ago: it holds no quota, though the sweeper leaves it alone.
    assert usage == {"used_bytes": 10, "reserved_bytes": 0, "quota_bytes": 1024**3, "file_count": 1}

    assert run_sweep(app) == counts()  # nothing left to do: each record is settled once
    # Past its grace, the last one is confirmed too.
    assert run_sweep(app, now=utcnow() + timedelta(hours=2)) == counts(confirmed=1)
    assert client.get("/api/files/usage", headers=auth).get_json()["used_bytes"] == 20


def test_arrived_upload_over_quota_is_expired_and_its_object_deleted(app, client, auth, s3):
    first, second = presign(client, auth, spec("1.jpg"), spec("2.jpg"))["successful"]
    for ticket in (first, second):
        assert put_bytes(ticket, b"y" * 10).status_code == 200
    backdate(app, [first["id"], second["id"]])
    with app.app_context():
        # Quota shrank while the URLs lapsed: only one of the two still fits.
        db.session.execute(update(User).where(User.username == "alice").values(quota_bytes=15))
        db.session.commit()

    assert run_sweep(app) == counts(confirmed=1, expired=1, keys_purged=1)

    assert record(app, first["id"]).status == FileStatus.COMPLETE  # oldest first
    assert record(app, second["id"]).status == FileStatus.EXPIRED
    assert bucket_keys(s3) == {first["s3_key"]}
    assert user_row(app, "alice").used_bytes == 10


def test_rejected_record_with_a_leftover_object_is_purged_once_its_url_is_dead(app, client, auth, s3):
    [ticket] = presign(client, auth, spec("r.jpg"))["successful"]
    put_bytes(ticket, b"z" * 12)
    response = client.post("/api/files/confirm_upload/", json={"id": ticket["id"]}, headers=auth)
    assert response.status_code == 422 and bucket_keys(s3) == set()
    # The URL is still valid: the object comes back (as it would after a failed delete).
    assert put_bytes(ticket, b"z" * 12).status_code == 200

    assert run_sweep(app) == counts()  # the URL still lives: a purge now could be undone
    assert bucket_keys(s3) == {ticket["s3_key"]}

    backdate(app, [ticket["id"]])
    assert run_sweep(app) == counts(keys_purged=1)
    assert bucket_keys(s3) == set()
    purged = record(app, ticket["id"])
    assert purged.status == FileStatus.REJECTED and purged.expires_at is None
    assert run_sweep(app) == counts()


def test_aborted_copy_whose_object_was_left_behind_is_purged(app, client, auth, s3):
    # A copy is marked aborted, then its object deleted: a process killed in between leaves the object.
    [ticket] = presign(client, auth, spec("src.txt", b"c" * 9, "text/plain"))["successful"]
    put_bytes(ticket, b"c" * 9)
    assert client.post("/api/files/confirm_upload/", json={"id": ticket["id"]}, headers=auth).status_code == 200
    copy = client.post(f"/api/files/{ticket['id']}/copy", json={}, headers=auth).get_json()
    with app.app_context():
        db.session.execute(update(File).where(File.id == copy["id"]).values(status=FileStatus.ABORTED))
        db.session.execute(update(User).values(used_bytes=9))
        db.session.commit()
    assert bucket_keys(s3) == {ticket["s3_key"], copy["s3_key"]}
    backdate(app, [copy["id"]], by=timedelta(hours=7))  # past the copy's reservation
    assert run_sweep(app) == counts(keys_purged=1)
    assert bucket_keys(s3) == {ticket["s3_key"]}
    assert record(app, copy["id"]).status == FileStatus.ABORTED


def insert_multipart(app, s3, user_id, expires_in: timedelta, *, in_s3: bool = True) -> File:
    """Start a real multipart upload with one part and record it as `uploading`."""
    file_id = new_id()
    key = f"users/{user_id}/{file_id}/{file_id}/big.bin"
    upload_id = "gone-" + file_id
    if in_s3:
        upload_id = s3.create_multipart_upload(Bucket=BUCKET, Key=key, ContentType="application/octet-stream")[
            "UploadId"
        ]
        s3.upload_part(Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=1, Body=b"p" * 5 * 1024**2)
    with app.app_context():
        row = File(
            id=file_id,
            user_id=user_id,
            batch_id=file_id,
            file_name="big.bin",
            s3_key=key,
            content_type="application/octet-stream",
            size=200 * 1024**2,
            status=FileStatus.UPLOADING,
            upload_id=upload_id,
            part_size=5 * 1024**2,
            expires_at=utcnow() + expires_in,
        )
        db.session.add(row)
        db.session.commit()
        db.session.refresh(row)
        db.session.expunge(row)
    return row


def test_stale_multipart_uploads_are_aborted_in_s3(app, client, auth, s3):
    user_id = client.get("/api/auth/me", headers=auth).get_json()["id"]
    stale = insert_multipart(app, s3, user_id, -timedelta(hours=1))
    live = insert_multipart(app, s3, user_id, timedelta(hours=1))
    forgotten = insert_multipart(app, s3, user_id, -timedelta(hours=1), in_s3=False)  # S3 lost it already
    assert len(s3.list_multipart_uploads(Bucket=BUCKET)["Uploads"]) == 2
    reserved = client.get("/api/files/usage", headers=auth).get_json()["reserved_bytes"]

    assert run_sweep(app) == counts(multipart_aborted=2, keys_purged=2)

    uploads = s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    assert [u["UploadId"] for u in uploads] == [live.upload_id]
    assert record(app, stale.id).status == FileStatus.EXPIRED
    assert record(app, forgotten.id).status == FileStatus.EXPIRED
    assert record(app, live.id).status == FileStatus.UPLOADING
    # Lapsed reservations stopped counting when they expired; expiring them changes nothing.
    assert client.get("/api/files/usage", headers=auth).get_json()["reserved_bytes"] == reserved == 200 * 1024**2


def test_revocations_of_expired_tokens_are_deleted(app, client, auth):
    assert client.post("/api/auth/logout", headers=auth).status_code == 200
    login = client.post("/api/auth/login", json={"username": "alice", "password": "correct horse battery"})
    old = {"Authorization": f"Bearer {login.get_json()['access_token']}"}
    assert client.post("/api/auth/logout", headers=old).status_code == 200
    with app.app_context():
        jtis = db.session.scalars(select(RevokedToken.jti).order_by(RevokedToken.revoked_at)).all()
        db.session.execute(
            update(RevokedToken).where(RevokedToken.jti == jtis[1]).values(expires_at=utcnow() - timedelta(hours=1))
        )
        db.session.commit()

    assert run_sweep(app) == counts(revoked_tokens_deleted=1)

    with app.app_context():
        assert db.session.scalars(select(RevokedToken.jti)).all() == [jtis[0]]
    assert client.get("/api/auth/me", headers=auth).status_code == 401  # the live revocation still holds


def test_two_sweepers_at_once_settle_each_upload_once(app, client, auth, s3, monkeypatch):
    arrived, missing = presign(client, auth, spec("a.jpg"), spec("b.jpg"))["successful"]
    put_bytes(arrived, b"x" * 10)
    backdate(app, [arrived["id"], missing["id"]])
    inner: list[dict] = []
    original = sweeper.inspect_objects

    def racing(rows):
        observed = original(rows)
        if not inner:
            # A second sweeper runs to the end between this one's S3 read and its writes.
            thread = threading.Thread(target=lambda: inner.append(run_sweep(app)))
            inner.append({})
            thread.start()
            thread.join()
        return observed

    monkeypatch.setattr(sweeper, "inspect_objects", racing)
    outer = run_sweep(app)

    assert inner[1] == counts(confirmed=1, expired=1, keys_purged=1)
    assert outer == counts()  # its stale view changed nothing
    assert user_row(app, "alice").used_bytes == 10
    assert record(app, arrived["id"]).status == FileStatus.COMPLETE
    assert bucket_keys(s3) == {arrived["s3_key"]}


def test_storage_failures_leave_records_for_the_next_run(app, client, auth, s3, monkeypatch):
    arrived, differs = presign(client, auth, spec("a.jpg"), spec("b.jpg"))["successful"]
    put_bytes(arrived, b"x" * 10)
    put_bytes(differs, b"x" * 3)
    backdate(app, [arrived["id"], differs["id"]])
    storage = app.extensions["s3drive.storage"]

    def unavailable(*args, **kwargs):
        raise StorageUnavailable()

    monkeypatch.setattr(storage, "head_object", unavailable)
    assert run_sweep(app) == counts(errors=2)
    assert record(app, arrived["id"]).status == record(app, differs["id"]).status == FileStatus.PENDING

    monkeypatch.undo()
    monkeypatch.setattr(storage, "delete_objects", lambda keys: (set(), {key: "down" for key in keys}))
    assert run_sweep(app) == counts(confirmed=1, rejected=1, errors=1)
    assert record(app, differs["id"]).expires_at is not None  # purge still owed
    assert differs["s3_key"] in bucket_keys(s3)

    monkeypatch.undo()
    assert run_sweep(app) == counts(keys_purged=1)
    assert bucket_keys(s3) == {arrived["s3_key"]}


def test_batches_are_bounded_and_until_done_finishes(app, client, auth, s3):
    tickets = presign(client, auth, *[spec(f"{i}.jpg") for i in range(7)])["successful"]
    backdate(app, [t["id"] for t in tickets])

    first = run_sweep(app, limit=3)
    assert first["expired"] == 3 and first["more"] is True
    with app.app_context():
        rest = sweeper.sweep_until_done(limit=3)
    assert rest.expired == 4 and rest.more is False
    with app.app_context():
        statuses = db.session.scalars(select(File.status)).all()
    assert statuses == [FileStatus.EXPIRED] * 7


def test_list_strategy_confirms_with_a_listing(make_app, s3):
    app = make_app(S3_CONFIRM="list")
    client = app.test_client()

    auth = register_and_login(client, "alice")
    tickets = presign(client, auth, *[spec(f"{i}.jpg") for i in range(4)])["successful"]
    for ticket in tickets[:3]:
        put_bytes(ticket, b"x" * 10)
    backdate(app, [t["id"] for t in tickets])
    calls: list[str] = []
    app.extensions["s3drive.storage"].client.meta.events.register(
        "before-call.s3", lambda model, **_: calls.append(model.name)
    )

    assert run_sweep(app) == counts(confirmed=3, expired=1, keys_purged=1)
    assert calls == ["ListObjectsV2", "DeleteObjects"]


def test_cli_sweep_prints_what_it_did(app, client, auth, s3):
    [ticket] = presign(client, auth, spec("a.jpg"))["successful"]
    put_bytes(ticket, b"x" * 10)
    backdate(app, [ticket["id"]])

    result = app.test_cli_runner().invoke(args=["sweep", "--limit", "100"])

    assert result.exit_code == 0, result.output
    assert "confirmed=1 " in result.output and "expired=0 " in result.output and "more=False" in result.output
    assert record(app, ticket["id"]).status == FileStatus.COMPLETE


def test_cli_sweep_grace_option(app, client, auth, s3):
    [ticket] = presign(client, auth, spec("a.jpg"))["successful"]
    backdate(app, [ticket["id"]], by=timedelta(minutes=2))
    runner = app.test_cli_runner()

    assert "expired=0 " in runner.invoke(args=["sweep"]).output  # default grace: 15 minutes
    assert "expired=1 " in runner.invoke(args=["sweep", "--grace", "60"]).output


class StopLoop(BaseException):
    pass


def test_cli_sweep_loop_survives_a_failed_run(app, client, auth, s3, monkeypatch):
    [ticket] = presign(client, auth, spec("a.jpg"))["successful"]
    backdate(app, [ticket["id"]])
    storage = app.extensions["s3drive.storage"]
    real_head = storage.head_object
    heads = iter([StorageUnavailable(), None])
    sleeps: list[float] = []

    def flaky_head(key):
        outcome = next(heads, None)
        if isinstance(outcome, Exception):
            raise outcome
        return real_head(key)

    def sleep(seconds):
        sleeps.append(seconds)
        if len(sleeps) == 3:
            raise StopLoop

    def broken_once(*args, _calls=[], **kwargs):  # noqa: B006 - counts calls across the loop
        _calls.append(1)
        if len(_calls) == 1:
            raise RuntimeError("database went away")
        return real_sweep(*args, **kwargs)

    real_sweep = sweeper.sweep_until_done
    monkeypatch.setattr(storage, "head_object", flaky_head)
    monkeypatch.setattr(sweeper, "sweep_until_done", broken_once)
    monkeypatch.setattr("s3drive.commands.time.sleep", sleep)

    with pytest.raises(StopLoop):
        app.test_cli_runner().invoke(args=["sweep", "--loop", "30"], catch_exceptions=False)

    assert sleeps == [30, 30, 30]
    # Run 1 failed outright, run 2 met an S3 error, run 3 expired the upload.
    assert record(app, ticket["id"]).status == FileStatus.EXPIRED
