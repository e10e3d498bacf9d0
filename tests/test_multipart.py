"""Multipart uploads on moto's in-process S3: real part bytes PUT to the signed URLs, then S3 and the DB checked.

moto enforces no signatures, so these tests also show what the broker itself catches
(sizes, ETags, missing parts); tests/test_e2e_multipart.py runs the same flows over HTTP
against moto server and MiniStack, which enforces each part's signed Content-Length.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from conftest import BUCKET, make_test_app, register_and_login
from helpers import sha256_b64, spec, usage

from s3drive.config import ConfigError
from s3drive.errors import StorageUnavailable
from s3drive.extensions import db
from s3drive.models import File
from s3drive.timeutil import utcnow

MIB = 1024**2
PART = 5 * MIB


def blob(size: int, seed: int = 0) -> bytes:
    """Return `size` bytes that differ per position and seed (so swapped parts would show)."""
    block = hashlib.sha256(str(seed).encode()).digest() * (MIB // 32)
    return (block * (size // len(block) + 1))[:size]


def start(client, auth, data: bytes, name: str = "movie.mp4", **extra):
    """Create a multipart upload for data (5 MiB parts unless told) and return its JSON."""
    body = {"file_name": name, "content_type": "video/mp4", "file_size": len(data), "part_size": PART, **extra}
    response = client.post("/api/files/multipart/", json=body, headers=auth)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def sign(client, auth, upload_id: str, numbers: list[int]) -> dict:
    response = client.post(f"/api/files/multipart/{upload_id}/sign", json={"part_numbers": numbers}, headers=auth)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def put_parts(signed: dict, data: bytes, part_size: int = PART) -> dict[int, str]:
    """PUT each signed part's slice of data; return part number -> ETag as S3 sent it (quoted)."""
    etags = {}
    for part in signed["parts"]:
        number = part["part_number"]
        chunk = data[(number - 1) * part_size : number * part_size]
        assert len(chunk) == part["size"]
        response = requests.put(part["url"], data=chunk, headers=part["headers"], timeout=30)
        assert response.status_code == 200, response.text
        etags[number] = response.headers["ETag"]
    return etags


def complete(client, auth, upload_id: str, etags: dict[int, str] | None = None):
    body = {} if etags is None else {"parts": [{"part_number": n, "etag": e} for n, e in sorted(etags.items())]}
    return client.post(f"/api/files/multipart/{upload_id}/complete", json=body, headers=auth)


def record(app, file_id: str) -> File:
    with app.app_context():
        return db.session.get(File, file_id)


def count_s3_calls(app) -> list[str]:
    """Record the name of every S3 operation the broker performs from now on."""
    calls: list[str] = []
    app.extensions["s3drive.storage"].client.meta.events.register(
        "before-call.s3", lambda model, **_: calls.append(model.name)
    )
    return calls


# -- the whole flow ---------------------------------------------------------------------------


def test_create_sign_put_complete_with_etags(client, auth, app, s3):
    data = blob(2 * PART + 1234567)
    upload = start(client, auth, data, title="Trip", tags="video, 2026", folder="videos")
    assert upload["status"] == "uploading" and upload["part_size"] == PART and upload["part_count"] == 3
    assert upload["file_size"] == len(data) and upload["upload_id"] and upload["file_name"] == "movie.mp4"
    assert upload["expires_at"].endswith("Z")
    assert usage(client, auth)["reserved_bytes"] == len(data)
    listed = s3.list_multipart_uploads(Bucket=BUCKET)["Uploads"]
    assert [(u["Key"], u["UploadId"]) for u in listed] == [(upload["s3_key"], upload["upload_id"])]

    signed = sign(client, auth, upload["id"], [1, 2, 3])
    assert [p["size"] for p in signed["parts"]] == [PART, PART, 1234567]
    for part in signed["parts"]:
        query = parse_qs(urlsplit(part["url"]).query)
        assert query["partNumber"] == [str(part["part_number"])] and query["uploadId"] == [upload["upload_id"]]
        assert query["X-Amz-SignedHeaders"] == ["content-length;host"]
        assert part["headers"] == {}
    etags = put_parts(signed, data)
    etags[2] = etags[2].strip('"')  # ETags are accepted quoted or not

    response = complete(client, auth, upload["id"], etags)
    assert response.status_code == 200, response.get_json()
    done = response.get_json()
    assert done["status"] == "complete" and done["size"] == len(data) and done["id"] == upload["id"]
    assert done["etag"].endswith("-3") and done["confirmed_at"] and done["tags"] == ["video", "2026"]
    stored = s3.get_object(Bucket=BUCKET, Key=upload["s3_key"])
    assert stored["Body"].read() == data
    assert stored["ContentType"] == "video/mp4" and stored["Metadata"]["file-id"] == upload["id"]
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert usage(client, auth) == {
        "used_bytes": len(data),
        "reserved_bytes": 0,
        "quota_bytes": 1024**3,
        "file_count": 1,
    }

    # Idempotent: completing again answers the same file and charges nothing more.
    again = complete(client, auth, upload["id"], etags)
    assert again.status_code == 200 and again.get_json() == done
    assert complete(client, auth, upload["id"]).get_json() == done
    assert usage(client, auth)["used_bytes"] == len(data)
    assert client.get(f"/api/files/{upload['id']}", headers=auth).get_json()["status"] == "complete"


def test_resume_after_reload_then_complete_from_server_listing(client, auth, app, s3):
    data = blob(3 * PART + 777, seed=1)
    upload = start(client, auth, data)
    assert upload["part_count"] == 4
    put_parts(sign(client, auth, upload["id"], [1, 2]), data)

    # A reload: the client knows only the id and asks what S3 already holds.
    status = client.get(f"/api/files/multipart/{upload['id']}", headers=auth).get_json()
    assert status["status"] == "uploading" and status["bytes_uploaded"] == 2 * PART
    assert [(p["part_number"], p["size"]) for p in status["parts"]] == [(1, PART), (2, PART)]
    assert all(p["etag"] and not p["etag"].startswith('"') for p in status["parts"])
    have = {p["part_number"] for p in status["parts"]}
    missing = [n for n in range(1, status["part_count"] + 1) if n not in have]
    put_parts(sign(client, auth, upload["id"], missing), data)

    response = complete(client, auth, upload["id"])  # {}: the server lists the parts itself
    assert response.status_code == 200, response.get_json()
    assert s3.get_object(Bucket=BUCKET, Key=upload["s3_key"])["Body"].read() == data
    status = client.get(f"/api/files/multipart/{upload['id']}", headers=auth).get_json()
    assert status["status"] == "complete" and status["bytes_uploaded"] == len(data) and status["parts"] == []


def test_list_parts_reads_every_page(client, auth, app, s3):
    data = blob(3 * PART + 10, seed=2)
    upload = start(client, auth, data)
    put_parts(sign(client, auth, upload["id"], [1, 2, 3, 4]), data)
    calls = count_s3_calls(app)
    with app.app_context():
        parts = app.extensions["s3drive.storage"].list_parts(upload["s3_key"], upload["upload_id"], page_size=2)
    assert [p.part_number for p in parts] == [1, 2, 3, 4] and [p.size for p in parts] == [PART] * 3 + [10]
    assert calls == ["ListParts", "ListParts"]


def test_default_part_size_grows_to_fit_ten_thousand_parts(make_app):
    tib = 1024**4
    app = make_app(MAX_FILE_SIZE=5 * tib, DEFAULT_QUOTA_BYTES=10 * tib)
    client = app.test_client()
    auth = register_and_login(client, "big")
    body = {"file_name": "disk.img", "content_type": "application/octet-stream"}
    small = client.post("/api/files/multipart/", json=body | {"file_size": 200 * MIB}, headers=auth).get_json()
    assert small["part_size"] == 16 * MIB and small["part_count"] == 13  # DEFAULT_PART_SIZE
    huge = client.post("/api/files/multipart/", json=body | {"file_size": 5 * tib}, headers=auth).get_json()
    assert huge["part_size"] % MIB == 0 and huge["part_count"] <= 10_000
    assert huge["part_size"] * (huge["part_count"] - 1) < 5 * tib <= huge["part_size"] * huge["part_count"]
    too_many = client.post(
        "/api/files/multipart/", json=body | {"file_size": 10_001 * PART, "part_size": PART}, headers=auth
    )
    assert too_many.status_code == 422 and "part_size" in too_many.get_json()["error"]["details"]
    empty = client.post("/api/files/multipart/", json=body | {"file_size": 0}, headers=auth).get_json()
    assert empty["part_count"] == 1
    # The last part of a 5 TiB upload signs exactly the remainder.
    last = sign(client, auth, huge["id"], [huge["part_count"]])["parts"][0]
    assert last["size"] == 5 * tib - huge["part_size"] * (huge["part_count"] - 1)


@pytest.mark.parametrize(
    ("bad", "status", "code", "field"),
    [
        ({"part_size": 5 * MIB - 1}, 422, "validation_error", "part_size"),
        ({"part_size": 5 * 1024**3 + 1}, 422, "validation_error", "part_size"),
        ({"part_size": "5242880"}, 422, "validation_error", "part_size"),
        ({"file_size": 6 * 1024**3}, 413, "file_too_large", None),
        ({"file_size": 2 * 1024**3}, 507, "quota_exceeded", None),
        ({"file_name": "setup.exe"}, 415, "content_type_not_allowed", None),
        ({"content_type": "application/x-msdownload"}, 415, "content_type_not_allowed", None),
        ({"checksum_sha256": sha256_b64(b"x")}, 422, "validation_error", "checksum_sha256"),
        ({"file_size": -1}, 422, "validation_error", "file_size"),
        ({"file_name": None}, 422, "validation_error", "file_name"),
    ],
)
def test_create_refuses_bad_specs(client, auth, app, s3, bad, status, code, field):
    body = {"file_name": "a.mp4", "content_type": "video/mp4", "file_size": 20 * MIB} | bad
    response = client.post("/api/files/multipart/", json=body, headers=auth)
    assert response.status_code == status, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == code
    if field:
        assert field in error["details"]
    with app.app_context():
        assert db.session.query(File).count() == 0
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_create_answers_503_and_keeps_nothing_when_s3_fails(client, auth, app, monkeypatch):
    def refuse(*args, **kwargs):
        raise StorageUnavailable()

    monkeypatch.setattr(app.extensions["s3drive.storage"], "create_multipart_upload", refuse)
    response = client.post("/api/files/multipart/", json=spec("a.mp4", b"x" * 100, "video/mp4"), headers=auth)
    assert response.status_code == 503 and response.get_json()["error"]["code"] == "storage_unavailable"
    assert response.headers["Retry-After"]
    with app.app_context():
        assert db.session.query(File).count() == 0
    assert usage(client, auth)["reserved_bytes"] == 0


# -- signing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "numbers",
    [[], [0], [4], [1, 10_001], ["1"], [1.5], [True], list(range(1, 1002)), "1,2", None],
)
def test_sign_refuses_part_numbers_outside_the_plan(client, auth, numbers):
    upload = start(client, auth, blob(2 * PART + 1))  # three parts
    response = client.post(f"/api/files/multipart/{upload['id']}/sign", json={"part_numbers": numbers}, headers=auth)
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["error"]["code"] == "validation_error"
    assert "part_numbers" in response.get_json()["error"]["details"]


def test_sign_deduplicates_and_allows_a_thousand(make_app):
    app = make_app(DEFAULT_QUOTA_BYTES=10 * 1024**4, MAX_FILE_SIZE=1024**4)
    client = app.test_client()
    auth = register_and_login(client, "signer")
    upload = start(client, auth, b"", file_size=2000 * PART)
    signed = sign(client, auth, upload["id"], list(range(1, 1001)))
    assert len(signed["parts"]) == 1000 and len({p["url"] for p in signed["parts"]}) == 1000
    assert [p["part_number"] for p in sign(client, auth, upload["id"], [3, 3, 2])["parts"]] == [3, 2]


def test_sign_keeps_the_reservation_alive_and_refuses_a_lapsed_one(client, auth, app):
    upload = start(client, auth, blob(PART + 1))
    with app.app_context():
        db.session.get(File, upload["id"]).expires_at = utcnow() + timedelta(seconds=30)
        db.session.commit()
    signed = sign(client, auth, upload["id"], [1])
    expires_at = record(app, upload["id"]).expires_at
    assert expires_at >= utcnow() + timedelta(seconds=app.config["URL_EXPIRES_IN"] - 5)
    assert signed["expires_at"] <= expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")

    with app.app_context():
        db.session.get(File, upload["id"]).expires_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
    assert usage(client, auth)["reserved_bytes"] == 0
    response = client.post(f"/api/files/multipart/{upload['id']}/sign", json={"part_numbers": [1]}, headers=auth)
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "invalid_state"


# -- completing: what goes wrong --------------------------------------------------------------


def test_wrong_etag_is_integrity_mismatch_and_the_upload_stays_open(client, auth, app, s3):
    data = blob(2 * PART + 5, seed=3)
    upload = start(client, auth, data)
    etags = put_parts(sign(client, auth, upload["id"], [1, 2, 3]), data)
    wrong = {**etags, 2: '"' + "0" * 32 + '"'}
    response = complete(client, auth, upload["id"], wrong)
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["error"]["code"] == "integrity_mismatch"
    assert response.get_json()["error"]["details"]["s3_error"] == "InvalidPart"
    assert record(app, upload["id"]).status == "uploading"
    assert usage(client, auth)["reserved_bytes"] == len(data)

    missing = complete(client, auth, upload["id"], {1: etags[1], 3: etags[3]})
    assert missing.status_code == 422 and missing.get_json()["error"]["code"] == "integrity_mismatch"
    assert missing.get_json()["error"]["details"]["missing_parts"] == [2]

    assert complete(client, auth, upload["id"], etags).status_code == 200
    assert s3.get_object(Bucket=BUCKET, Key=upload["s3_key"])["Body"].read() == data


def test_complete_with_parts_missing_in_s3_names_them(client, auth, app):
    data = blob(3 * PART + 5, seed=4)
    upload = start(client, auth, data)
    put_parts(sign(client, auth, upload["id"], [1, 3]), data)
    response = complete(client, auth, upload["id"])
    assert response.status_code == 422
    assert response.get_json()["error"]["details"] == {"missing_parts": [2, 4], "missing_count": 2}
    assert record(app, upload["id"]).status == "uploading"


@pytest.mark.parametrize(
    "parts",
    [
        [],
        [{"part_number": 1}],
        [{"etag": "abc"}],
        [{"part_number": 9, "etag": "abc"}],
        [{"part_number": "1", "etag": "abc"}],
        [{"part_number": 1, "etag": ""}],
        [{"part_number": 1, "etag": '""'}],
        [{"part_number": 1, "etag": "a\nb"}],
        [{"part_number": 1, "etag": "abc"}, {"part_number": 1, "etag": "abc"}],
        "1:abc",
    ],
)
def test_complete_refuses_malformed_part_lists(client, auth, app, parts):
    upload = start(client, auth, blob(PART + 1))
    calls = count_s3_calls(app)
    response = client.post(f"/api/files/multipart/{upload['id']}/complete", json={"parts": parts}, headers=auth)
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["error"]["code"] == "validation_error"
    assert calls == []  # refused before asking S3


def test_total_size_differing_from_declared_rejects_and_deletes(client, auth, app, s3):
    data = blob(2 * PART + 100, seed=5)
    upload = start(client, auth, data)
    signed = sign(client, auth, upload["id"], [1, 2, 3])
    etags = put_parts({"parts": signed["parts"][:2]}, data)
    # moto ignores the signed Content-Length: a longer last part lands.
    last = signed["parts"][2]
    response = requests.put(last["url"], data=data[2 * PART :] + b"extra", timeout=30)
    assert response.status_code == 200
    etags[3] = response.headers["ETag"]

    response = complete(client, auth, upload["id"], etags)
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "integrity_mismatch"
    assert error["details"] == {"size": len(data) + 5, "declared_size": len(data)}
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)  # the object was deleted
    assert record(app, upload["id"]).status == "rejected"
    assert usage(client, auth) == {"used_bytes": 0, "reserved_bytes": 0, "quota_bytes": 1024**3, "file_count": 0}
    again = complete(client, auth, upload["id"], etags)
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "invalid_state"


def test_complete_after_the_reservation_lapsed_needs_room_in_the_quota(make_app, s3):
    app = make_app(DEFAULT_QUOTA_BYTES=3 * PART)
    client = app.test_client()
    auth = register_and_login(client, "late")
    late, fits = blob(2 * PART, seed=6), blob(PART + 9, seed=7)
    first = start(client, auth, late)
    etags = put_parts(sign(client, auth, first["id"], [1, 2]), late)
    with app.app_context():
        db.session.get(File, first["id"]).expires_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
    second = start(client, auth, fits)  # takes the room the lapsed reservation left
    response = complete(client, auth, first["id"], etags)
    assert response.status_code == 507 and response.get_json()["error"]["code"] == "quota_exceeded"
    assert record(app, first["id"]).status == "rejected"
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0
    put_parts(sign(client, auth, second["id"], [1, 2]), fits)
    assert complete(client, auth, second["id"]).status_code == 200


def test_upload_gone_from_s3_is_409_never_500(client, auth, app, s3):
    data = blob(PART + 1, seed=8)
    upload = start(client, auth, data)
    put_parts(sign(client, auth, upload["id"], [1, 2]), data)
    s3.abort_multipart_upload(Bucket=BUCKET, Key=upload["s3_key"], UploadId=upload["upload_id"])
    # (Completing with ETags is left to the e2e tests: in-process moto raises KeyError there
    # instead of answering NoSuchUpload.)
    for response in (
        client.get(f"/api/files/multipart/{upload['id']}", headers=auth),
        complete(client, auth, upload["id"]),
    ):
        assert response.status_code == 409, response.get_json()
        assert response.get_json()["error"]["code"] == "invalid_state"
        assert response.get_json()["error"]["details"]["s3_error"] == "NoSuchUpload"
    response = client.delete(f"/api/files/multipart/{upload['id']}", headers=auth)
    assert response.status_code == 200 and response.get_json() == {"id": upload["id"], "status": "aborted"}
    assert usage(client, auth)["reserved_bytes"] == 0


def test_completion_done_in_s3_but_not_recorded_is_recovered(client, auth, app, s3):
    """A complete whose answer was lost (crash, timeout) is settled by the next complete call."""
    data = blob(PART + 3, seed=9)
    upload = start(client, auth, data)
    etags = put_parts(sign(client, auth, upload["id"], [1, 2]), data)
    s3.complete_multipart_upload(
        Bucket=BUCKET,
        Key=upload["s3_key"],
        UploadId=upload["upload_id"],
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in sorted(etags.items())]},
    )
    response = complete(client, auth, upload["id"])
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["status"] == "complete" and response.get_json()["size"] == len(data)
    assert usage(client, auth)["used_bytes"] == len(data)


# -- abort ------------------------------------------------------------------------------------


def test_abort_releases_quota_and_leaves_nothing_in_s3(client, auth, app, s3):
    data = blob(2 * PART + 1, seed=10)
    upload = start(client, auth, data)
    put_parts(sign(client, auth, upload["id"], [1]), data)
    assert usage(client, auth)["reserved_bytes"] == len(data)
    for _ in range(2):  # idempotent
        response = client.delete(f"/api/files/multipart/{upload['id']}", headers=auth)
        assert response.status_code == 200
        assert response.get_json() == {"id": upload["id"], "status": "aborted"}
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0
    assert usage(client, auth)["reserved_bytes"] == 0
    assert record(app, upload["id"]).status == "aborted"
    for response in (
        client.post(f"/api/files/multipart/{upload['id']}/sign", json={"part_numbers": [2]}, headers=auth),
        complete(client, auth, upload["id"]),
    ):
        assert response.status_code == 409 and response.get_json()["error"]["code"] == "invalid_state"
    status = client.get(f"/api/files/multipart/{upload['id']}", headers=auth).get_json()
    assert status["status"] == "aborted" and status["parts"] == [] and status["bytes_uploaded"] == 0


def test_abort_of_a_complete_upload_is_refused(client, auth):
    data = blob(PART, seed=11)
    upload = start(client, auth, data)
    etags = put_parts(sign(client, auth, upload["id"], [1]), data)
    assert complete(client, auth, upload["id"], etags).status_code == 200
    response = client.delete(f"/api/files/multipart/{upload['id']}", headers=auth)
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "invalid_state"


# -- ownership --------------------------------------------------------------------------------


def test_other_users_and_simple_uploads_are_not_found(client, auth, other_auth, app, s3):
    upload = start(client, auth, blob(PART + 1))
    simple = client.post("/api/files/upload/", json=spec(), headers=auth).get_json()
    for file_id, headers in ((upload["id"], other_auth), (simple["id"], auth), ("nope", auth), ("x" * 100, auth)):
        base = f"/api/files/multipart/{file_id}"
        for response in (
            client.get(base, headers=headers),
            client.post(base + "/sign", json={"part_numbers": [1]}, headers=headers),
            client.post(base + "/complete", json={}, headers=headers),
            client.delete(base, headers=headers),
        ):
            assert response.status_code == 404, response.get_json()
            assert response.get_json()["error"]["code"] == "not_found"
    assert record(app, upload["id"]).status == "uploading"
    assert len(s3.list_multipart_uploads(Bucket=BUCKET)["Uploads"]) == 1


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/files/multipart/"),
        ("POST", "/api/files/multipart/x/sign"),
        ("GET", "/api/files/multipart/x"),
        ("POST", "/api/files/multipart/x/complete"),
        ("DELETE", "/api/files/multipart/x"),
    ],
)
def test_multipart_routes_need_a_token(client, method, path):
    response = client.open(path, method=method, json={})
    assert response.status_code == 401 and response.get_json()["error"]["code"] == "unauthorized"


# -- mixed batches ----------------------------------------------------------------------------


def test_mixed_batch_gets_multipart_tickets_in_request_order(make_app, s3):
    app = make_app(MULTIPART_THRESHOLD=PART, DEFAULT_PART_SIZE=PART)
    client = app.test_client()
    auth = register_and_login(client, "mixed")
    specs = [spec(f"IMG_{i:04d}.jpg", b"x" * (1000 + i)) for i in range(500)]
    big = {"file_name": "clip.mp4", "content_type": "video/mp4"}
    for position, size in ((0, 3 * PART), (250, PART + 1), (502, 12 * PART + 5)):
        specs.insert(position, big | {"file_name": f"clip{position}.mp4", "file_size": size})
    specs.insert(100, big | {"file_name": "exact.mp4", "file_size": PART})  # at the threshold: a PUT
    calls = count_s3_calls(app)
    response = client.post("/api/files/upload/", json={"files": specs}, headers=auth)
    body = response.get_json()
    assert response.status_code == 200 and body["total_successful"] == 504 and body["failed"] == []
    assert calls == ["CreateMultipartUpload"] * 3

    tickets = body["successful"]
    assert [t["file_name"] for t in tickets] == [s["file_name"] for s in specs]
    multipart = [t for t in tickets if t["multipart"]]
    assert [t["file_name"] for t in multipart] == ["clip0.mp4", "clip250.mp4", "clip502.mp4"]
    assert [(t["part_count"], t["part_size"]) for t in multipart] == [(3, PART), (2, PART), (13, PART)]
    assert all(t["status"] == "uploading" and t["upload_id"] and "presigned_url" not in t for t in multipart)
    assert sum(not t["multipart"] and t["method"] == "PUT" for t in tickets) == 501
    uploads = s3.list_multipart_uploads(Bucket=BUCKET)["Uploads"]
    assert sorted((u["Key"], u["UploadId"]) for u in uploads) == sorted(
        (t["s3_key"], t["upload_id"]) for t in multipart
    )
    with app.app_context():
        statuses = {f.id: (f.status, f.upload_id) for f in db.session.query(File)}
    assert all(statuses[t["id"]] == ("uploading", t["upload_id"]) for t in multipart)
    assert usage(client, auth)["reserved_bytes"] == sum(s["file_size"] for s in specs)

    # A multipart ticket from a batch goes through the multipart routes like any other.
    clip = multipart[1]
    data = blob(PART + 1, seed=12)
    put_parts(sign(client, auth, clip["id"], [1, 2]), data)
    assert complete(client, auth, clip["id"]).status_code == 200
    assert s3.get_object(Bucket=BUCKET, Key=clip["s3_key"])["Body"].read() == data


def test_mixed_batch_reports_a_refused_create_as_that_files_failure(make_app, s3, monkeypatch):
    app = make_app(MULTIPART_THRESHOLD=PART)
    client = app.test_client()
    auth = register_and_login(client, "half")
    storage = app.extensions["s3drive.storage"]
    real_create = storage.create_multipart_upload

    def create(key, **kwargs):
        if "broken" in key:
            raise StorageUnavailable()
        return real_create(key, **kwargs)

    monkeypatch.setattr(storage, "create_multipart_upload", create)
    big = {"content_type": "video/mp4", "file_size": 2 * PART}
    specs = [
        spec("a.jpg"),
        big | {"file_name": "broken.mp4"},
        spec("b.jpg"),
        big | {"file_name": "fine.mp4"},
        spec("c.exe"),
    ]
    body = client.post("/api/files/upload/", json={"files": specs}, headers=auth).get_json()
    assert [t["file_name"] for t in body["successful"]] == ["a.jpg", "b.jpg", "fine.mp4"]
    assert [(f["index"], f["error"]["code"]) for f in body["failed"]] == [
        (1, "storage_unavailable"),
        (4, "content_type_not_allowed"),
    ]
    with app.app_context():
        assert sorted(f.file_name for f in db.session.query(File)) == ["a.jpg", "b.jpg", "fine.mp4"]
    assert usage(client, auth)["reserved_bytes"] == 20 + 2 * PART


def test_single_form_above_the_threshold_answers_a_multipart_ticket(make_app, s3):
    app = make_app(MULTIPART_THRESHOLD=PART)
    client = app.test_client()
    auth = register_and_login(client, "single")
    body = {"file_name": "big.zip", "content_type": "application/zip", "file_size": 40 * MIB}
    response = client.post("/api/files/upload/", json=body, headers=auth)
    assert response.status_code == 200
    ticket = response.get_json()
    assert ticket["multipart"] is True and ticket["part_size"] == 16 * MIB and ticket["part_count"] == 3
    assert ticket["status"] == "uploading" and ticket["expires_at"].endswith("Z")
    response = client.post("/api/files/upload/", json=body | {"checksum_sha256": sha256_b64(b"")}, headers=auth)
    assert response.status_code == 422 and "checksum_sha256" in response.get_json()["error"]["details"]


def test_confirm_points_multipart_uploads_to_the_multipart_route(client, auth):
    upload = start(client, auth, blob(PART + 1))
    response = client.post("/api/files/confirm_upload/", json={"id": upload["id"]}, headers=auth)
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "invalid_state"


def test_tier_and_encryption_are_set_when_the_upload_is_created(make_app, s3):
    app = make_app(SSE="AES256")
    client = app.test_client()
    auth = register_and_login(client, "tiered")
    data = blob(PART + 5, seed=13)
    upload = start(client, auth, data, tier="standard_ia")
    put_parts(sign(client, auth, upload["id"], [1, 2]), data)
    done = complete(client, auth, upload["id"]).get_json()
    assert done["tier"] == "standard_ia"
    head = s3.head_object(Bucket=BUCKET, Key=upload["s3_key"])
    assert head["StorageClass"] == "STANDARD_IA" and head["ServerSideEncryption"] == "AES256"


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("DEFAULT_PART_SIZE", 5 * MIB - 1),
        ("DEFAULT_PART_SIZE", 5 * 1024**3 + 1),
        ("MULTIPART_THRESHOLD", 5 * 1024**3 + 1),
        ("MULTIPART_EXPIRES_IN", 59),
        ("MULTIPART_EXPIRES_IN", 31 * 24 * 3600),
        ("MULTIPART_EXPIRES_IN", "a day"),
    ],
)
def test_multipart_settings_are_checked_at_start_up(database_url, setting, value):
    with pytest.raises(ConfigError, match=f"S3DRIVE_{setting}"):
        make_test_app(database_url, **{setting: value})
