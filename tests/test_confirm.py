"""Confirm: HeadObject and listing strategies, mismatches, idempotency, quota settlement."""

from __future__ import annotations

import pytest
from conftest import BUCKET
from helpers import presign, put_bytes, queued_tasks, sha256_b64, spec, usage

from s3drive.extensions import db
from s3drive.models import File, User


def count_s3_calls(app) -> list[str]:
    """Record the name of every S3 operation the broker performs from now on."""
    calls: list[str] = []
    client = app.extensions["s3drive.storage"].client
    client.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    return calls


def test_confirm_single_success_and_idempotent(client, auth, app):
    data = b"0123456789"
    ticket = presign(client, auth, spec(data=data, checksum_sha256=sha256_b64(data)))["successful"][0]
    assert put_bytes(ticket, data).status_code == 200
    for _ in range(2):
        response = client.post("/api/files/confirm_upload/", json={"id": ticket["id"]}, headers=auth)
        assert response.status_code == 200
        body = response.get_json()
        assert body["status"] == "success" and body["file"]["status"] == "complete"
        assert body["file"]["size"] == 10 and body["file"]["etag"]
    assert usage(client, auth) == {"used_bytes": 10, "reserved_bytes": 0, "quota_bytes": 1024**3, "file_count": 1}
    by_key = client.post("/api/files/confirm_upload/", json={"s3_key": ticket["s3_key"]}, headers=auth)
    assert by_key.status_code == 200
    assert usage(client, auth)["used_bytes"] == 10
    record = client.get(f"/api/files/{ticket['id']}", headers=auth).get_json()
    assert record["status"] == "complete" and record["confirmed_at"].endswith("Z")


def test_confirm_before_upload_is_object_missing(client, auth, app):
    ticket = presign(client, auth, spec())["successful"][0]
    response = client.post("/api/files/confirm_upload/", json={"id": ticket["id"]}, headers=auth)
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "object_missing"
    with app.app_context():
        assert db.session.get(File, ticket["id"]).status == "pending"


@pytest.mark.parametrize(
    ("upload", "problem"),
    [
        (lambda t, d: put_bytes(t, d + b"extra"), "size"),
        (lambda t, d: put_bytes(t, d, **{"Content-Type": "text/html"}), "content type"),
        (lambda t, d: put_bytes(t, d, **{"x-amz-checksum-sha256": sha256_b64(b"other")}), "checksum"),
    ],
)
def test_mismatch_rejects_deletes_and_releases_quota(client, auth, app, s3, upload, problem):
    """moto enforces no signed header, so the broker's own comparison must catch each lie."""
    data = b"declared-bytes"
    ticket = presign(client, auth, spec(data=data, checksum_sha256=sha256_b64(data)))["successful"][0]
    assert upload(ticket, data).status_code == 200
    assert usage(client, auth)["reserved_bytes"] == len(data)
    response = client.post("/api/files/confirm_upload/", json={"id": ticket["id"]}, headers=auth)
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "integrity_mismatch" and problem in error["message"]
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0
    with app.app_context():
        assert db.session.get(File, ticket["id"]).status == "rejected"
    assert usage(client, auth) == {"used_bytes": 0, "reserved_bytes": 0, "quota_bytes": 1024**3, "file_count": 0}
    again = client.post("/api/files/confirm_upload/", json={"id": ticket["id"]}, headers=auth)
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "invalid_state"


def test_batch_confirm_statuses_in_request_order(client, auth, other_auth, s3):
    good = b"good"
    tickets = presign(client, auth, spec("a.jpg", good), spec("b.jpg", good), spec("c.jpg", good))["successful"]
    put_bytes(tickets[0], good)
    put_bytes(tickets[1], good + b"!")
    foreign = presign(client, other_auth, spec("m.jpg", good))["successful"][0]
    put_bytes(foreign, good)
    ids = [tickets[0]["id"], tickets[1]["id"], tickets[2]["id"], foreign["id"], "no-such-id"]
    response = client.post("/api/files/confirm_uploads/", json={"ids": ids}, headers=auth)
    assert response.status_code == 200
    body = response.get_json()
    assert [r["status"] for r in body["results"]] == ["success", "mismatch", "missing", "not_found", "not_found"]
    assert [r["id"] for r in body["results"]][:3] == ids[:3]
    assert (body["total_requested"], body["total_successful"], body["total_failed"]) == (5, 1, 4)
    # The other user's file is untouched by alice's request.
    assert client.get(f"/api/files/{foreign['id']}", headers=other_auth).get_json()["status"] == "pending"


def test_batch_confirm_by_keys(client, auth):
    data = b"k"
    tickets = presign(client, auth, spec("a.jpg", data), spec("b.jpg", data))["successful"]
    for ticket in tickets:
        put_bytes(ticket, data)
    keys = [t["s3_key"] for t in tickets]
    body = client.post("/api/files/confirm_uploads/", json={"s3_keys": keys}, headers=auth).get_json()
    assert [r["status"] for r in body["results"]] == ["success", "success"]
    assert [r["s3_key"] for r in body["results"]] == keys


def test_confirm_request_validation(client, auth):
    for body in ({}, {"id": "a", "s3_key": "b"}):
        response = client.post("/api/files/confirm_upload/", json=body, headers=auth)
        assert response.status_code == 422
    for body in ({}, {"ids": []}, {"ids": "x"}, {"ids": ["a"], "s3_keys": ["b"]}):
        response = client.post("/api/files/confirm_uploads/", json=body, headers=auth)
        assert response.status_code == 422, body
    response = client.post("/api/files/confirm_uploads/", json={"ids": ["x"] * 1001}, headers=auth)
    assert response.status_code == 413


@pytest.mark.parametrize("app_config", [{"S3_CONFIRM": "list"}, {"S3_CONFIRM": "list", "INSPECT": True}])
def test_thousand_file_batch_confirmed_with_few_s3_requests(client, auth, app, s3, app_config):
    """A 1,000-file batch is confirmed by one listing, not 1,000 HeadObjects; inspection only queues."""
    data = b"tiny"
    tickets = presign(client, auth, *[spec(f"p{i}.jpg", data) for i in range(1000)])["successful"]
    assert len(tickets) == 1000
    for ticket in tickets[:998]:  # two never arrive
        s3.put_object(Bucket=BUCKET, Key=ticket["s3_key"], Body=data, ContentType="image/jpeg")
    calls = count_s3_calls(app)
    queued_tasks(app)
    body = client.post("/api/files/confirm_uploads/", json={"ids": [t["id"] for t in tickets]}, headers=auth).get_json()
    assert len(calls) <= 5, calls
    assert calls.count("HeadObject") == 0
    assert body["total_successful"] == 998
    tasks = queued_tasks(app)
    if app_config.get("INSPECT"):  # 25 files a message, sent once the confirm committed
        assert {task["task"] for task in tasks} == {"s3drive.inspect"} and len(tasks) == 40
        assert sorted(i for task in tasks for i in task["args"][0]) == sorted(t["id"] for t in tickets[:998])
    else:
        assert tasks == []
    assert [r["status"] for r in body["results"][998:]] == ["missing", "missing"]
    assert usage(client, auth)["used_bytes"] == 998 * len(data)


@pytest.mark.parametrize("app_config", [{"S3_CONFIRM": "list"}])
def test_list_strategy_still_catches_size(client, auth, app, s3, app_config):
    data = b"abc"
    tickets = presign(client, auth, *[spec(f"{i}.jpg", data) for i in range(4)])["successful"]
    for ticket in tickets:
        put_bytes(ticket, data)
    put_bytes(tickets[3], b"abcdef")
    body = client.post("/api/files/confirm_uploads/", json={"ids": [t["id"] for t in tickets]}, headers=auth).get_json()
    assert [r["status"] for r in body["results"]] == ["success", "success", "success", "mismatch"]


def test_head_strategy_runs_concurrently_and_counts_one_head_per_file(client, auth, app):
    data = b"abc"
    tickets = presign(client, auth, *[spec(f"{i}.jpg", data) for i in range(20)])["successful"]
    for ticket in tickets:
        put_bytes(ticket, data)
    calls = count_s3_calls(app)
    body = client.post("/api/files/confirm_uploads/", json={"ids": [t["id"] for t in tickets]}, headers=auth).get_json()
    assert body["total_successful"] == 20
    assert calls == ["HeadObject"] * 20


def test_late_upload_after_lapsed_reservation_must_fit_quota(make_app):
    from datetime import timedelta

    from conftest import register_and_login

    from s3drive.timeutil import utcnow

    app = make_app(DEFAULT_QUOTA_BYTES=10)
    client = app.test_client()
    auth = register_and_login(client, "late")
    first = presign(client, auth, spec(data=b"x" * 8))["successful"][0]
    put_bytes(first, b"x" * 8)
    with app.app_context():
        db.session.query(File).update({"expires_at": utcnow() - timedelta(seconds=1)})
        db.session.commit()
    # The lapsed reservation no longer holds the quota, so another upload takes it.
    second = presign(client, auth, spec(data=b"y" * 8))["successful"][0]
    put_bytes(second, b"y" * 8)
    assert client.post("/api/files/confirm_upload/", json={"id": second["id"]}, headers=auth).status_code == 200
    late = client.post("/api/files/confirm_upload/", json={"id": first["id"]}, headers=auth)
    assert late.status_code == 507 and late.get_json()["error"]["code"] == "quota_exceeded"
    with app.app_context():
        assert db.session.query(User).one().used_bytes == 8


def test_storage_down_gives_503_and_changes_nothing(make_app):
    from conftest import register_and_login

    app = make_app(S3_ENDPOINT_URL="http://127.0.0.1:9", S3_ADDRESSING_STYLE="path")
    client = app.test_client()
    auth = register_and_login(client, "offline")
    # Presigning needs no network: it still works with S3 down.
    ticket = presign(client, auth, spec())["successful"][0]
    response = client.post("/api/files/confirm_upload/", json={"id": ticket["id"]}, headers=auth)
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "storage_unavailable"
    assert response.headers["Retry-After"]
    batch = client.post("/api/files/confirm_uploads/", json={"ids": [ticket["id"]]}, headers=auth).get_json()
    assert batch["results"][0]["status"] == "error"
    with app.app_context():
        assert db.session.get(File, ticket["id"]).status == "pending"
