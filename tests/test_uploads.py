"""Presigning: single and batch forms, policy, quota, key layout, POST forms; bytes really PUT to moto."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import BUCKET
from helpers import post_form, presign, put_bytes, sha256_b64, spec

from s3drive.extensions import db
from s3drive.models import File


def test_single_form_returns_one_ticket(client, auth, s3):
    data = b"hello"
    response = client.post("/api/files/upload/", json=spec("hello.txt", data, "text/plain"), headers=auth)
    assert response.status_code == 200
    ticket = response.get_json()
    assert ticket["status"] == "pending" and ticket["method"] == "PUT" and ticket["multipart"] is False
    assert ticket["fields"] is None and ticket["expires_at"].endswith("Z")
    assert ticket["headers"]["Content-Type"] == "text/plain"
    assert ticket["headers"]["x-amz-meta-file-id"] == ticket["id"]
    assert put_bytes(ticket, data).status_code == 200
    stored = s3.get_object(Bucket=BUCKET, Key=ticket["s3_key"])
    assert stored["Body"].read() == data and stored["Metadata"]["file-id"] == ticket["id"]


def test_signed_headers_cover_type_length_checksum_meta_tier(client, auth):
    data = b"abc"
    body = presign(client, auth, spec("a.txt", data, "text/plain", checksum_sha256=sha256_b64(data), tier="glacier_ir"))
    ticket = body["successful"][0]
    signed = parse_qs(urlsplit(ticket["presigned_url"]).query)["X-Amz-SignedHeaders"][0].split(";")
    assert signed == [
        "content-length",
        "content-type",
        "host",
        "x-amz-checksum-sha256",
        "x-amz-meta-file-id",
        "x-amz-sdk-checksum-algorithm",
        "x-amz-storage-class",
    ]
    assert ticket["headers"]["x-amz-storage-class"] == "GLACIER_IR"
    assert "Content-Length" not in ticket["headers"]  # browsers set it; it is still signed


def test_sse_is_signed_when_configured(make_app):
    from conftest import register_and_login

    app = make_app(SSE="aws:kms", SSE_KMS_KEY_ID="alias/s3drive")
    client = app.test_client()
    auth = register_and_login(client, "sse-user")
    ticket = presign(client, auth, spec())["successful"][0]
    assert ticket["headers"]["x-amz-server-side-encryption"] == "aws:kms"
    assert ticket["headers"]["x-amz-server-side-encryption-aws-kms-key-id"] == "alias/s3drive"
    signed = parse_qs(urlsplit(ticket["presigned_url"]).query)["X-Amz-SignedHeaders"][0]
    assert "x-amz-server-side-encryption" in signed


def test_batch_partial_success_with_codes(client, auth, app):
    body = presign(
        client,
        auth,
        spec("ok.jpg"),
        spec("virus.exe", content_type="application/octet-stream"),
        spec("big.bin", content_type="application/octet-stream") | {"file_size": 6 * 1024**3},
        spec("page.html", content_type="application/x-msdownload"),
        spec("neg.jpg") | {"file_size": -1},
        {"file_name": "missing-type.jpg", "file_size": 3},
        "not an object",
    )
    assert body["total_requested"] == 7 and body["total_successful"] == 1 and body["total_failed"] == 6
    assert body["message"] == "Generated upload URLs for 1 file, 6 failed."
    codes = {f["index"]: f["error"]["code"] for f in body["failed"]}
    assert codes == {
        1: "content_type_not_allowed",
        2: "file_too_large",
        3: "content_type_not_allowed",
        4: "validation_error",
        5: "validation_error",
        6: "validation_error",
    }
    assert body["failed"][3]["error"]["details"] == {"file_size": ["Must be greater than or equal to 0."]}
    with app.app_context():
        assert db.session.query(File).count() == 1


@pytest.mark.parametrize(
    ("bad", "status", "code"),
    [
        ({"file_size": -5}, 422, "validation_error"),
        ({"file_size": "12"}, 422, "validation_error"),
        ({"file_size": 1.5}, 422, "validation_error"),
        ({"file_size": True}, 422, "validation_error"),
        ({"file_size": 6 * 1024**3}, 413, "file_too_large"),
        ({"content_type": "application/x-msdownload"}, 415, "content_type_not_allowed"),
        ({"file_name": "setup.EXE"}, 415, "content_type_not_allowed"),
        ({"content_type": "not a mime"}, 422, "validation_error"),
        ({"checksum_sha256": "abc"}, 422, "validation_error"),
        ({"tier": "platinum"}, 422, "validation_error"),
        ({"method": "PATCH"}, 422, "validation_error"),
        ({"folder": "a/../b"}, 422, "validation_error"),
        ({"tags": [1, 2]}, 422, "validation_error"),
        ({"title": "t" * 201}, 422, "validation_error"),
        ({"file_name": "/../.."}, 422, "validation_error"),
        ({"file_name": ""}, 422, "validation_error"),
        ({"file_name": None}, 422, "validation_error"),
    ],
)
def test_single_form_errors_use_file_status(client, auth, app, bad, status, code):
    response = client.post("/api/files/upload/", json=spec() | bad, headers=auth)
    assert response.status_code == status, response.get_json()
    assert response.get_json()["error"]["code"] == code
    with app.app_context():
        assert db.session.query(File).count() == 0


def test_policy_messages_say_sizes_in_words_and_keep_the_bytes_in_details(client, auth):
    too_big = client.post("/api/files/upload/", json=spec() | {"file_size": 6442450944}, headers=auth)
    error = too_big.get_json()["error"]
    assert error["message"] == "File is 6 GiB; the limit is 5 GiB."
    assert error["details"] == {"file_size": 6442450944, "max_file_size": 5368709120}
    # In a batch too; and sizes that round alike are told apart by their bytes.
    body = presign(client, auth, spec() | {"file_size": 5368709120 + 1})
    error = body["failed"][0]["error"]
    assert error["message"] == "File is 5 GiB (5,368,709,121 bytes); the limit is 5 GiB (5,368,709,120 bytes)."
    assert error["details"] == {"file_size": 5368709121, "max_file_size": 5368709120}


def test_file_names_are_sanitized_and_never_raw_in_keys(client, auth, app):
    hostile = [
        "../../etc/passwd",
        "C:\\Windows\\evil.txt",
        'a";\r\nx.txt',
        "\u202etxt.exe.jpg",
        "ünïcödé 日本語 😀.png",
        "spaces and +plus%percent~tilde.txt",
        "x" * 300 + ".txt",
        "é" * 300,
    ]
    body = presign(client, auth, *[spec(name, content_type="text/plain") for name in hostile])
    assert body["total_failed"] == 0, body["failed"]
    tickets = body["successful"]
    names = [t["file_name"] for t in tickets]
    assert names[0] == "passwd" and names[1] == "evil.txt"
    assert names[2] == 'a";x.txt'  # control characters gone
    assert names[3] == "txt.exe.jpg"  # bidi override gone
    assert names[4] == "ünïcödé 日本語 😀.png"
    assert all(len(n.encode()) <= 255 for n in names)
    assert names[6].endswith(".txt")
    for ticket in tickets:
        key = ticket["s3_key"]
        assert key.isascii() and ".." not in key and "\r" not in key and " " not in key
    with app.app_context():
        user_id = db.session.query(File).first().user_id
    assert all(t["s3_key"].startswith(f"users/{user_id}/") for t in tickets)


def test_tags_folder_title_are_normalized(client, auth, app):
    ticket = presign(
        client,
        auth,
        spec(tags=" Holiday, beach ,holiday,,BEACH", folder="/photos//2026/./", title="Sea", description="d"),
    )["successful"][0]
    with app.app_context():
        record = db.session.get(File, ticket["id"])
        assert record.tags == ["holiday", "beach"]
        assert record.folder == "photos/2026"
        assert (record.title, record.description) == ("Sea", "d")


def test_one_batch_shares_a_key_prefix(client, auth):
    tickets = presign(client, auth, spec("a.jpg"), spec("b.jpg"))["successful"]
    prefixes = {t["s3_key"].rsplit("/", 2)[0] for t in tickets}
    assert len(prefixes) == 1


def test_batch_limits(client, auth, database_url, s3):
    response = client.post("/api/files/upload/", json={"files": []}, headers=auth)
    assert response.status_code == 422 and response.get_json()["error"]["code"] == "validation_error"
    response = client.post("/api/files/upload/", json={"files": [spec()] * 1001}, headers=auth)
    assert response.status_code == 413 and response.get_json()["error"]["code"] == "batch_too_large"
    response = client.post("/api/files/upload/", json={"files": "nope"}, headers=auth)
    assert response.status_code == 422


def test_ten_thousand_file_batch_is_refused_cleanly(client, auth, app):
    response = client.post("/api/files/upload/", json={"files": [spec()] * 10000}, headers=auth)
    assert response.status_code == 413
    assert response.get_json()["error"]["details"] == {"max_batch": 1000, "requested": 10000}
    with app.app_context():
        assert db.session.query(File).count() == 0


def test_quota_is_reserved_across_batches(make_app):
    from conftest import register_and_login

    app = make_app(DEFAULT_QUOTA_BYTES=100)
    client = app.test_client()
    auth = register_and_login(client, "quota-user")
    body = presign(client, auth, spec(data=b"x" * 60), spec(data=b"x" * 30), spec(data=b"x" * 20))
    assert [f["error"]["code"] for f in body["failed"]] == ["quota_exceeded"]
    assert body["failed"][0]["index"] == 2
    usage = client.get("/api/files/usage", headers=auth).get_json()
    assert usage == {"used_bytes": 0, "reserved_bytes": 90, "quota_bytes": 100, "file_count": 0}
    response = client.post("/api/files/upload/", json=spec(data=b"x" * 11), headers=auth)
    assert response.status_code == 507 and response.get_json()["error"]["code"] == "quota_exceeded"
    assert response.get_json()["error"]["message"] == "Uploading 11 B would exceed your quota (10 B left)."
    assert response.get_json()["error"]["details"] == {"available_bytes": 10, "file_size": 11}
    assert client.post("/api/files/upload/", json=spec(data=b"x" * 10), headers=auth).status_code == 200


def test_expired_reservation_stops_counting(client, auth, app):
    from datetime import timedelta

    from s3drive.timeutil import utcnow

    presign(client, auth, spec(data=b"x" * 50))
    assert client.get("/api/files/usage", headers=auth).get_json()["reserved_bytes"] == 50
    with app.app_context():
        db.session.query(File).update({"expires_at": utcnow() - timedelta(seconds=1)})
        db.session.commit()
    assert client.get("/api/files/usage", headers=auth).get_json()["reserved_bytes"] == 0


def test_post_form_upload_policy_covers_every_field(client, auth, s3):
    import base64
    import json

    data = b"form bytes"
    ticket = presign(client, auth, spec("f.txt", data, "text/plain", method="POST", tier="standard_ia"))["successful"][
        0
    ]
    assert ticket["method"] == "POST" and ticket["headers"] == {}
    fields = ticket["fields"]
    assert fields["key"] == ticket["s3_key"] and fields["Content-Type"] == "text/plain"
    policy = json.loads(base64.b64decode(fields["policy"]))
    conditions = policy["conditions"]
    assert ["content-length-range", len(data), len(data)] in conditions
    covered = {name.lower() for c in conditions if isinstance(c, dict) for name in c}
    covered |= {c[1].lstrip("$").lower() for c in conditions if isinstance(c, list) and c[0] != "content-length-range"}
    assert {name.lower() for name in fields if name.lower() not in ("policy", "x-amz-signature")} <= covered
    assert post_form(ticket, data).status_code in (200, 201, 204)
    stored = s3.head_object(Bucket=BUCKET, Key=ticket["s3_key"])
    assert stored["ContentLength"] == len(data)


def test_post_with_checksum_is_refused(client, auth):
    response = client.post(
        "/api/files/upload/", json=spec(method="POST", checksum_sha256=sha256_b64(b"x" * 10)), headers=auth
    )
    assert response.status_code == 422
    assert "checksum_sha256" in response.get_json()["error"]["details"]


def test_limits_needs_no_auth(client):
    response = client.get("/api/files/limits")
    assert response.status_code == 200
    body = response.get_json()
    assert body["max_batch"] == 1000 and body["multipart_threshold"] == 100 * 1024**2
    assert "standard" in body["tiers"] and "image/*" in body["allowed_content_types"]


def test_the_batch_message_counts_in_words(client, auth):
    one = presign(client, auth, spec("a.jpg"))
    assert one["message"] == "Generated upload URLs for 1 file."
    two = presign(client, auth, spec("b.jpg"), spec("c.jpg"))
    assert two["message"] == "Generated upload URLs for 2 files."
