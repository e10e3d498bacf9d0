"""Uppy drop-in: the Companion-compatible routes on moto's in-process S3, with real bytes.

Each flow is driven the way `@uppy/aws-s3` drives it (query strings, JSON bodies and the
Companion answer shapes), under /uppy with a Bearer header and under /uppy/<token>; the
bytes go to the signed URLs with `requests`, then S3 and the records are checked.
tests/test_uppy_browser.py runs stock Uppy 5 and 6 in Chromium against MiniStack.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from datetime import timedelta
from urllib.parse import quote

import pytest
import requests
from conftest import BUCKET, register_and_login
from helpers import queued_tasks, spec, usage, wait_until
from sqlalchemy import update
from sqlalchemy.exc import OperationalError

from s3drive import schemas
from s3drive.errors import StorageUnavailable
from s3drive.extensions import db
from s3drive.models import File, FileStatus, new_time_ordered_id
from s3drive.policy import UploadSpec
from s3drive.services import uppy as uppy_service
from s3drive.services.sweeper import sweep
from s3drive.services.uploads import presign_uploads
from s3drive.services.watcher import Check, check_due, check_upload
from s3drive.timeutil import utcnow

MIB = 1024**2
PART = 5 * MIB


def blob(size: int, seed: int = 0) -> bytes:
    """Return `size` bytes that differ per position and seed."""
    block = hashlib.sha256(str(seed).encode()).digest() * (MIB // 32)
    return (block * (size // len(block) + 1))[:size]


@pytest.fixture(params=["header", "session"])
def companion(request, client, auth):
    """Return (base path, headers) for the Companion routes, in both authentication styles."""
    if request.param == "header":
        return "/uppy", auth
    response = client.post("/api/uppy/session", headers=auth)
    assert response.status_code == 200, response.get_json()
    endpoint = response.get_json()["companion_endpoint"]
    assert endpoint.startswith("http://localhost/uppy/")
    return endpoint.removeprefix("http://localhost"), {}


def params(client, base, headers, filename="photo.jpg", type_="image/jpeg", **metadata):
    query = "&".join(
        [f"filename={quote(filename)}", f"type={quote(type_)}"]
        + [f"metadata[{quote(k)}]={quote(str(v))}" for k, v in metadata.items()]
    )
    return client.get(f"{base}/s3/params?{query}", headers=headers)


def post_form(form: dict, data: bytes) -> requests.Response:
    """POST the form to S3 as Uppy does (fields, then the file), and nothing more."""
    upload = requests.post(form["url"], data=form["fields"], files={"file": ("f", data)}, timeout=30)
    assert upload.status_code in (200, 201, 204), upload.text
    return upload


def settled(app, key: str) -> File:
    """Run the upload watcher's checks of the upload, as a worker does, until it is no longer waiting;
    return its record. (A real worker runs them in test_inspection.py and test_e2e_uploads.py.)"""
    record = record_by_key(app, key)
    with app.app_context():
        assert wait_until(lambda: check_upload(record.user_id, record.id) != Check.WAITING, timeout=15)
    return record_by_key(app, key)


def create(client, base, headers, filename="movie.mp4", type_="video/mp4", **metadata):
    body = {"filename": filename, "type": type_, "metadata": metadata}
    return client.post(f"{base}/s3/multipart", json=body, headers=headers)


def sign_part(client, base, headers, created, number):
    url = f"{base}/s3/multipart/{quote(created['uploadId'])}/{number}?key={quote(created['key'])}"
    return client.get(url, headers=headers)


def sign_batch(client, base, headers, created, numbers):
    joined = ",".join(map(str, numbers))
    url = f"{base}/s3/multipart/{quote(created['uploadId'])}/batch?key={quote(created['key'])}&partNumbers={joined}"
    return client.get(url, headers=headers)


def list_parts(client, base, headers, created):
    url = f"{base}/s3/multipart/{quote(created['uploadId'])}?key={quote(created['key'])}"
    return client.get(url, headers=headers)


def complete(client, base, headers, created, etags: dict[int, str]):
    url = f"{base}/s3/multipart/{quote(created['uploadId'])}/complete?key={quote(created['key'])}"
    parts = [{"PartNumber": n, "ETag": e} for n, e in sorted(etags.items())]
    return client.post(url, json={"parts": parts}, headers=headers)


def abort(client, base, headers, created):
    url = f"{base}/s3/multipart/{quote(created['uploadId'])}?key={quote(created['key'])}"
    return client.delete(url, headers=headers)


def put_part(url: str, data: bytes) -> str:
    """PUT a part to its URL as Uppy does (no extra headers); return S3's (quoted) ETag."""
    response = requests.put(url, data=data, timeout=30)
    assert response.status_code == 200, response.text
    return response.headers["ETag"]


def upload_parts(client, base, headers, created, data: bytes, part_size: int = PART) -> dict[int, str]:
    """Sign every part one by one (as Uppy does) and PUT its slice; return part number -> ETag."""
    etags = {}
    for number in range(1, -(-len(data) // part_size) + 1):
        response = sign_part(client, base, headers, created, number)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        assert body["expires"] == 3600
        etags[number] = put_part(body["url"], data[(number - 1) * part_size : number * part_size])
    return etags


def record_by_key(app, key: str) -> File:
    with app.app_context():
        return db.session.query(File).filter_by(s3_key=key).one()


def assert_companion_error(response, status: int) -> str:
    """Assert Companion's error shape with this status; return the message."""
    assert response.status_code == status, response.get_json()
    body = response.get_json()
    assert set(body) == {"error", "message"} and isinstance(body["error"], str) and body["error"]
    return body["error"]


# -- sessions ------------------------------------------------------------------------------


def test_session_endpoint_is_scoped_to_its_user(client, auth, other_auth, app, s3):
    response = client.post("/api/uppy/session", headers=auth)
    assert response.status_code == 200
    body = response.get_json()
    assert body["expires_at"].endswith("Z")
    base = body["companion_endpoint"].removeprefix("http://localhost")
    created = create(client, base, {}).get_json()
    assert record_by_key(app, created["key"]).user_id == client.get("/api/auth/me", headers=auth).get_json()["id"]
    # Mallory's session cannot reach Alice's upload.
    other = client.post("/api/uppy/session", headers=other_auth).get_json()["companion_endpoint"]
    other_base = other.removeprefix("http://localhost")
    assert_companion_error(list_parts(client, other_base, {}, created), 404)
    assert_companion_error(abort(client, "/uppy", other_auth, created), 404)
    assert list_parts(client, base, {}, created).get_json() == []


def test_session_needs_an_access_token(client):
    response = client.post("/api/uppy/session")
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"  # the API's envelope here


@pytest.mark.parametrize("token", ["nonsense", "a.b", "x" * 300])
def test_bad_session_tokens_are_401_in_companion_shape(client, token):
    message = assert_companion_error(params(client, f"/uppy/{token}", {}, size=3), 401)
    assert "invalid" in message


def test_expired_and_logged_out_sessions_are_refused(client, auth, app):
    me = client.get("/api/auth/me", headers=auth).get_json()
    with app.test_request_context():
        expired = uppy_service._serializer().dumps([me["id"], "", 1])
    assert "expired" in assert_companion_error(params(client, f"/uppy/{expired}", {}, size=3), 401)

    base = client.post("/api/uppy/session", headers=auth).get_json()["companion_endpoint"]
    base = base.removeprefix("http://localhost")
    assert params(client, base, {}, size=3).status_code == 200
    assert client.post("/api/auth/logout", headers=auth).status_code == 200
    assert "revoked" in assert_companion_error(params(client, base, {}, size=3), 401)


def test_a_session_token_seen_before_still_expires_on_time(client, auth, app):
    # Its claims are remembered once its signature is checked; its expiry is read on every use.
    me = client.get("/api/auth/me", headers=auth).get_json()
    expires = int(time.time()) + 2
    with app.test_request_context():
        soon = uppy_service._serializer().dumps([me["id"], "", expires])
    assert params(client, f"/uppy/{soon}", {}, size=3).status_code == 200
    time.sleep(max(0.0, expires - time.time()) + 0.1)
    assert "expired" in assert_companion_error(params(client, f"/uppy/{soon}", {}, size=3), 401)


def test_header_routes_need_a_valid_bearer_token(client, auth):
    assert_companion_error(params(client, "/uppy", {}, size=3), 401)
    assert_companion_error(params(client, "/uppy", {"Authorization": "Bearer junk"}, size=3), 401)
    refresh = client.post("/api/auth/login", json={"username": "alice", "password": "correct horse battery"})
    refresh_header = {"Authorization": f"Bearer {refresh.get_json()['refresh_token']}"}
    assert_companion_error(create(client, "/uppy", refresh_header), 401)


# -- simple uploads: /s3/params ----------------------------------------------------------


def test_params_form_uploads_real_bytes_and_confirms(client, auth, app, s3, companion):
    base, headers = companion
    data = b"hello uppy \x00\xff" * 100
    title = "=?UTF-8?B?" + base64.b64encode("Ferien in Zürich".encode()).decode() + "?="
    response = params(
        client,
        base,
        headers,
        filename="Straße.txt",
        type_="text/plain",
        size=len(data),
        title=title,
        tags="Trip, Summer",
        folder="docs",
        relativePath="2026/july/Straße.txt",
        name="Straße.txt",
        unknownField="ignored",
        **{"x-amz-acl": "public-read"},
    )
    assert response.status_code == 200, response.get_json()
    form = response.get_json()
    assert form["method"] == "POST" and form["expires"] == 3600
    fields = form["fields"]
    assert fields["Content-Type"] == "text/plain"
    assert "x-amz-acl" not in fields and not any("unknown" in name.lower() for name in fields)
    policy = json.loads(base64.b64decode(fields["policy"]))
    conditions = policy["conditions"]
    assert ["content-length-range", len(data), len(data)] in conditions
    signed = {name.lower() for cond in conditions if isinstance(cond, dict) for name in cond}
    # A condition for every field of the form (only the signature and the policy itself carry none).
    assert {name.lower() for name in fields} - {"policy", "x-amz-signature"} <= signed

    post_form(form, data)
    assert s3.get_object(Bucket=BUCKET, Key=fields["key"])["Body"].read() == data

    # Nobody reports the upload: the watcher sees it arrive and confirms it.
    file_id = settled(app, fields["key"]).id
    file = client.get(f"/api/files/{file_id}", headers=auth).get_json()
    assert file["status"] == "complete" and file["size"] == len(data)
    assert file["file_name"] == "Straße.txt"
    assert file["title"] == "Ferien in Zürich"
    assert file["tags"] == ["trip", "summer"]
    assert file["folder"] == "docs/2026/july"
    assert usage(client, auth)["used_bytes"] == len(data)


def test_params_decodes_an_encoded_file_name(client, auth, app, s3):
    encoded = "=?utf-8?q?r=C3=A9sum=C3=A9=2Epdf?="
    response = params(client, "/uppy", auth, filename=encoded, type_="application/pdf", size=4)
    assert response.status_code == 200, response.get_json()
    assert record_by_key(app, response.get_json()["fields"]["key"]).file_name == "résumé.pdf"


@pytest.mark.parametrize(
    ("overrides", "status", "needle"),
    [
        ({"size": "-1"}, 422, "size"),
        ({"size": "12abc"}, 422, "size"),
        ({"size": "3", "type_": "application/x-msdownload"}, 415, "not allowed"),
        ({"size": "3", "filename": "setup.exe", "type_": "application/octet-stream"}, 415, ".exe"),
        ({"size": "3", "filename": "../.."}, 422, "name"),
        ({"size": "3", "title": "=?x-unknown?B?AAAA?="}, 422, "RFC 2047"),
        ({"size": str(200 * MIB)}, 413, "parts"),  # above the multipart threshold
        ({"size": str(2 * 1024**3)}, 413, ""),
        ({"size": "3", "tier": "platinum"}, 422, ""),
    ],
)
def test_params_refusals_use_companion_shape(client, auth, app, s3, overrides, status, needle):
    args = {"filename": "a.jpg", "type_": "image/jpeg", **overrides}
    response = params(client, "/uppy", auth, **args)
    assert needle.lower() in assert_companion_error(response, status).lower()
    with app.app_context():
        assert db.session.query(File).count() == 0


def test_params_needs_a_file_name(client, auth):
    response = client.get("/uppy/s3/params?type=image/jpeg&metadata[size]=3", headers=auth)
    assert "filename" in assert_companion_error(response, 422)


def test_params_reserves_quota_and_refuses_beyond_it(make_app, s3):
    app = make_app(DEFAULT_QUOTA_BYTES=1000)
    client = app.test_client()
    auth = register_and_login(client, "alice")
    assert params(client, "/uppy", auth, size=600).status_code == 200
    assert usage(client, auth)["reserved_bytes"] == 600
    assert "quota" in assert_companion_error(params(client, "/uppy", auth, size=500), 507)


def test_stock_uppy_form_without_a_size_reserves_nothing_and_keeps_what_arrived(client, auth, app, s3, companion):
    base, headers = companion
    response = params(client, base, headers, filename="notes.txt", type_="text/plain")
    assert response.status_code == 200, response.get_json()
    form = response.get_json()
    fields = form["fields"]
    conditions = json.loads(base64.b64decode(fields["policy"]))["conditions"]
    # Anything up to the multipart threshold (where stock Uppy switches to multipart) may come.
    assert ["content-length-range", 0, 100 * MIB] in conditions
    # Nothing is held for it (other forms of unknown size must not be starved): its bytes must fit on arrival.
    assert usage(client, auth)["reserved_bytes"] == 0
    listed = client.get("/api/files/?status=pending", headers=auth).get_json()["items"]
    assert [item["size"] for item in listed] == [100 * MIB]

    data = b"a few bytes of notes\n" * 50
    post_form(form, data)
    record = settled(app, fields["key"])
    assert record.status == FileStatus.COMPLETE and record.size == len(data) and record.size_declared
    assert record.etag == s3.head_object(Bucket=BUCKET, Key=fields["key"])["ETag"].strip('"')
    assert usage(client, auth) == {
        "used_bytes": len(data),
        "reserved_bytes": 0,
        "quota_bytes": 1024**3,
        "file_count": 1,
    }


def test_form_bound_is_what_the_quota_has_left(make_app, s3):
    app = make_app(DEFAULT_QUOTA_BYTES=1000)
    client = app.test_client()
    auth = register_and_login(client, "alice")
    form = params(client, "/uppy", auth).get_json()
    assert form_bound(form) == 1000
    post_form(form, b"x" * 10)
    assert settled(app, form["fields"]["key"]).status == FileStatus.COMPLETE
    assert usage(client, auth)["used_bytes"] == 10
    assert form_bound(params(client, "/uppy", auth).get_json()) == 990
    # A declared reservation is held: it narrows the next bound.
    assert params(client, "/uppy", auth, size=90).status_code == 200
    assert form_bound(params(client, "/uppy", auth).get_json()) == 900
    assert params(client, "/uppy", auth, size=900).status_code == 200
    assert "quota" in assert_companion_error(params(client, "/uppy", auth), 507)  # nothing left at all


def form_bound(form: dict) -> int:
    """Return the most bytes a signed POST form lets S3 take."""
    conditions = json.loads(base64.b64decode(form["fields"]["policy"]))["conditions"]
    [(_, smallest, largest)] = [c for c in conditions if isinstance(c, list) and c[0] == "content-length-range"]
    assert smallest == 0
    return largest


def test_forms_of_unknown_size_do_not_starve_each_other(make_app, s3):
    # Stock Uppy asks for a form per file, several at once, never saying a size (the 507s).
    app = make_app(DEFAULT_QUOTA_BYTES=1000)
    client = app.test_client()
    auth = register_and_login(client, "alice")
    forms = [params(client, "/uppy", auth, filename=f"{n}.jpg").get_json() for n in range(3)]
    assert [form_bound(form) for form in forms] == [1000, 1000, 1000]
    assert usage(client, auth)["reserved_bytes"] == 0
    post_form(forms[0], b"a" * 400)
    post_form(forms[1], b"b" * 500)
    keys = [form["fields"]["key"] for form in forms[:2]]
    assert {settled(app, key).status for key in keys} == {FileStatus.COMPLETE}
    # What overflows is settled on arrival: rejected, its object deleted, never counted.
    post_form(forms[2], b"c" * 101)
    assert settled(app, forms[2]["fields"]["key"]).status == FileStatus.REJECTED
    assert sorted(o["Size"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]) == [400, 500]
    assert usage(client, auth) == {"used_bytes": 900, "reserved_bytes": 0, "quota_bytes": 1000, "file_count": 2}


def test_form_upload_beyond_its_bound_is_rejected_and_removed(make_app, s3):
    # moto ignores the policy's content-length-range (MiniStack and S3 refuse the POST): confirm catches it.
    app = make_app(DEFAULT_QUOTA_BYTES=1000)
    client = app.test_client()
    auth = register_and_login(client, "alice")
    form = params(client, "/uppy", auth).get_json()
    post_form(form, b"x" * 1001)
    assert settled(app, form["fields"]["key"]).status == FileStatus.REJECTED
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0
    assert usage(client, auth)["used_bytes"] == 0 and usage(client, auth)["reserved_bytes"] == 0


def test_form_of_another_type_than_declared_is_rejected(client, auth, app, s3):
    form = params(client, "/uppy", auth, filename="a.png", type_="image/png").get_json()
    form["fields"]["Content-Type"] = "text/html"  # moto ignores the policy; S3 refuses this POST
    post_form(form, b"<script>")
    assert settled(app, form["fields"]["key"]).status == FileStatus.REJECTED
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0


def _watch_at(app, key: str):
    return record_by_key(app, key).watch_at


def test_each_form_is_watched_until_its_object_arrives_backing_off(make_app, s3):
    app = make_app(URL_EXPIRES_IN=3600)
    client = app.test_client()
    auth = register_and_login(client, "alice")
    queued_tasks(app)  # what earlier tests left
    signed_at = utcnow()
    late = params(client, "/uppy", auth, filename="late.txt", type_="text/plain").get_json()
    key = late["fields"]["key"]
    record = record_by_key(app, key)
    assert queued_tasks(app) == []  # signing a form sends no message: its record carries the schedule
    first = _watch_at(app, key)
    assert timedelta(seconds=0.5) < first - signed_at < timedelta(seconds=2)  # the first look, about 1 s on

    with app.app_context():
        assert check_due(now=first - timedelta(milliseconds=1)).checked["waiting"] == 0  # not due yet
        # Due: nothing arrived, so it is looked for again later, the later the older the form is.
        assert check_due(now=first).checked["waiting"] == 1
        second = _watch_at(app, key)
        assert second - first == timedelta(seconds=1)  # 1 s old: again in 1 s
        ten_minutes_on = record.created_at + timedelta(minutes=10)
        assert check_due(now=ten_minutes_on).checked["waiting"] == 1
        assert _watch_at(app, key) - ten_minutes_on == timedelta(seconds=60)  # at most a minute apart
    assert record_by_key(app, key).status == FileStatus.PENDING

    post_form(late, b"at last")
    with app.app_context():
        assert check_due(now=utcnow() + timedelta(minutes=11)).checked["settled"] == 1
    record = record_by_key(app, key)
    assert (record.status, record.size, record.watch_at) == (FileStatus.COMPLETE, 7, None)  # no longer watched


def test_one_run_confirms_the_due_forms_of_several_users_and_leaves_the_rest(make_app, s3):
    app = make_app()
    client = app.test_client()
    forms = {}
    for name in ("alice", "bob"):
        auth = register_and_login(client, name)
        forms[name] = [params(client, "/uppy", auth, filename=f"{n}.txt", type_="text/plain").get_json() for n in "ab"]
    for form in (forms["alice"][0], forms["bob"][0], forms["bob"][1]):
        post_form(form, b"here")
    native = client.post(
        "/api/files/upload/", json=spec("n.txt", b"here", "text/plain"), headers=register_and_login(client, "carol")
    )
    with app.app_context():
        run = check_due(now=utcnow() + timedelta(seconds=2))
    assert run.checked == {"settled": 3, "waiting": 1, "expired": 0}
    statuses = {record_by_key(app, f["fields"]["key"]).status for f in (forms["alice"][0], *forms["bob"])}
    assert statuses == {FileStatus.COMPLETE}
    assert record_by_key(app, forms["alice"][1]["fields"]["key"]).status == FileStatus.PENDING
    # A native upload is reported by its client: never watched.
    assert record_by_key(app, native.get_json()["s3_key"]).watch_at is None


def test_the_watch_ends_when_the_form_expires(make_app, s3):
    app = make_app(URL_EXPIRES_IN=60)
    client = app.test_client()
    auth = register_and_login(client, "alice")
    never = params(client, "/uppy", auth, filename="never.txt", type_="text/plain").get_json()
    record = record_by_key(app, never["fields"]["key"])
    with app.app_context():
        db.session.execute(update(File).where(File.id == record.id).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
        assert check_upload(record.user_id, record.id) == Check.EXPIRED
        assert check_due(now=utcnow() + timedelta(seconds=2)).checked["expired"] == 1
    record = record_by_key(app, never["fields"]["key"])
    assert (record.status, record.watch_at) == (FileStatus.PENDING, None)  # the sweeper settles it


def test_watcher_retries_when_storage_fails(client, auth, app, s3, monkeypatch):
    form = params(client, "/uppy", auth, filename="a.txt", type_="text/plain").get_json()
    post_form(form, b"hello")
    storage = app.extensions["s3drive.storage"]
    real_head, failures = storage.head_object, []

    def flaky_head(key):
        if not failures:
            failures.append(key)
            raise StorageUnavailable("S3 is down")
        return real_head(key)

    monkeypatch.setattr(storage, "head_object", flaky_head)
    record = record_by_key(app, form["fields"]["key"])
    with app.app_context():
        assert check_upload(record.user_id, record.id) == Check.WAITING  # S3 did not answer: ask again later
        assert check_upload(record.user_id, record.id) == Check.SETTLED
    record = record_by_key(app, form["fields"]["key"])
    assert failures and record.status == FileStatus.COMPLETE and record.size == 5


def test_a_form_is_signed_even_when_the_broker_is_down(make_app, s3):
    # Signing a form needs no broker: the watcher's schedule is in the record.
    app = make_app(BROKER_URL="redis://127.0.0.1:9/0")
    client = app.test_client()
    auth = register_and_login(client, "alice")
    started = time.monotonic()
    response = params(client, "/uppy", auth, filename="a.txt", type_="text/plain")
    assert response.status_code == 200, response.get_json()
    assert time.monotonic() - started < 2  # the broker is not asked


def test_undeclared_form_confirmed_by_the_app_or_the_sweeper_keeps_the_arrived_size(client, auth, app, s3):
    # A process that stopped forgets what it watched: the app's confirm or the sweeper settles it.
    user_id = client.get("/api/auth/me", headers=auth).get_json()["id"]
    with app.app_context():
        specs = [
            UploadSpec(index, name, "text/plain", 1000, method="POST", size_declared=False)
            for index, name in enumerate(("a.txt", "b.txt"))
        ]
        tickets = presign_uploads(user_id, specs).tickets
    forms = [{"url": t["presigned_url"], "fields": t["fields"]} for t in tickets]
    post_form(forms[0], b"1" * 123)
    post_form(forms[1], b"2" * 45)
    confirmed = client.post("/api/files/confirm_upload/", json={"s3_key": tickets[0]["s3_key"]}, headers=auth)
    assert confirmed.status_code == 200 and confirmed.get_json()["file"]["size"] == 123

    with app.app_context():
        done = sweep(now=utcnow() + timedelta(hours=2))
    assert done.confirmed == 1, done
    record = record_by_key(app, tickets[1]["s3_key"])
    assert record.status == FileStatus.COMPLETE and record.size == 45 and record.size_declared
    assert usage(client, auth)["used_bytes"] == 168 and usage(client, auth)["reserved_bytes"] == 0


# -- multipart ------------------------------------------------------------------------------


def test_multipart_without_declared_size_learns_it_at_complete(client, auth, app, s3, companion):
    base, headers = companion
    data = blob(2 * PART + 123_456, seed=1)
    response = create(client, base, headers, relativePath="null", title="Clip")
    assert response.status_code == 200, response.get_json()
    created = response.get_json()
    assert set(created) == {"key", "uploadId", "bucket"} and created["bucket"] == BUCKET
    assert record_by_key(app, created["key"]).status == FileStatus.UPLOADING
    assert usage(client, auth)["reserved_bytes"] == 0  # nothing to reserve yet

    etags = upload_parts(client, base, headers, created, data)
    listed = list_parts(client, base, headers, created).get_json()
    assert [(p["PartNumber"], p["Size"]) for p in listed] == [(1, PART), (2, PART), (3, 123_456)]
    assert [p["ETag"] for p in listed] == [etags[n].strip('"') for n in (1, 2, 3)]

    # ETags as S3 sent them (quoted) for two parts, unquoted for the third.
    etags[3] = etags[3].strip('"')
    response = complete(client, base, headers, created, etags)
    assert response.status_code == 200, response.get_json()
    done = response.get_json()
    assert done["key"] == created["key"] and done["bucket"] == BUCKET
    assert done["location"].endswith("/" + quote(created["key"], safe="/~"))
    assert s3.get_object(Bucket=BUCKET, Key=created["key"])["Body"].read() == data
    record = record_by_key(app, created["key"])
    assert (record.status, record.size, record.part_size, record.title) == ("complete", len(data), PART, "Clip")
    assert usage(client, auth)["used_bytes"] == len(data)
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []

    # Completing again answers the same (idempotent), listing shows nothing left to resume.
    assert complete(client, base, headers, created, etags).get_json() == done
    assert list_parts(client, base, headers, created).get_json() == []


def test_multipart_with_declared_size_reserves_it_and_accepts_uppys_part_size(client, auth, app, s3):
    part_size = 6 * MIB  # a getChunkSize of the app's own
    data = blob(part_size + 1000, seed=2)
    created = create(client, "/uppy", auth, size=len(data)).get_json()
    assert usage(client, auth)["reserved_bytes"] == len(data)
    etags = upload_parts(client, "/uppy", auth, created, data, part_size=part_size)
    response = complete(client, "/uppy", auth, created, etags)
    assert response.status_code == 200, response.get_json()
    record = record_by_key(app, created["key"])
    assert (record.status, record.size, record.part_size) == ("complete", len(data), part_size)
    assert s3.get_object(Bucket=BUCKET, Key=created["key"])["Body"].read() == data
    assert usage(client, auth)["reserved_bytes"] == 0


def test_resume_after_a_reload_lists_the_stored_parts(client, auth, app, s3):
    data = blob(3 * PART + 10, seed=3)
    created = create(client, "/uppy", auth).get_json()
    first = upload_parts(client, "/uppy", auth, created, data[: 2 * PART])
    # The page reloads: Uppy asks which parts S3 has, then uploads the rest.
    listed = list_parts(client, "/uppy", auth, created).get_json()
    assert [p["PartNumber"] for p in listed] == [1, 2]
    etags = {p["PartNumber"]: p["ETag"] for p in listed}
    batch = sign_batch(client, "/uppy", auth, created, [3, 4]).get_json()["presignedUrls"]
    assert set(batch) == {"3", "4"}
    etags[3] = put_part(batch["3"], data[2 * PART : 3 * PART])
    etags[4] = put_part(batch["4"], data[3 * PART :])
    assert etags[1] == first[1].strip('"')
    assert complete(client, "/uppy", auth, created, etags).status_code == 200
    assert s3.get_object(Bucket=BUCKET, Key=created["key"])["Body"].read() == data


def test_declared_size_differing_from_the_parts_rejects_the_upload(client, auth, app, s3):
    data = blob(PART + 100, seed=4)
    created = create(client, "/uppy", auth, size=len(data) + 1).get_json()
    etags = upload_parts(client, "/uppy", auth, created, data)
    message = assert_companion_error(complete(client, "/uppy", auth, created, etags), 422)
    assert "declared" in message
    assert record_by_key(app, created["key"]).status == FileStatus.REJECTED
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)
    assert usage(client, auth)["reserved_bytes"] == 0


def test_undeclared_upload_over_the_quota_is_rejected_at_complete(make_app, s3):
    app = make_app(DEFAULT_QUOTA_BYTES=PART + 10)
    client = app.test_client()
    auth = register_and_login(client, "alice")
    data = blob(PART + 11, seed=5)
    created = create(client, "/uppy", auth).get_json()
    etags = upload_parts(client, "/uppy", auth, created, data)
    assert "quota" in assert_companion_error(complete(client, "/uppy", auth, created, etags), 507)
    assert record_by_key(app, created["key"]).status == FileStatus.REJECTED
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)
    assert usage(client, auth)["used_bytes"] == 0
    # Uppy then aborts the upload it was refused: Companion answers {} (the contract), not 409.
    aborted = abort(client, "/uppy", auth, created)
    assert aborted.status_code == 200 and aborted.get_json() == {}
    assert record_by_key(app, created["key"]).status == FileStatus.REJECTED


def test_undeclared_upload_over_the_file_size_limit_is_rejected(make_app, s3):
    app = make_app(MAX_FILE_SIZE=PART)
    client = app.test_client()
    auth = register_and_login(client, "alice")
    created = create(client, "/uppy", auth).get_json()
    # A second part could only take the file beyond the limit: it is not signed.
    assert "file limit" in assert_companion_error(sign_part(client, "/uppy", auth, created, 2), 413)
    # A part URL signs no length, so one part may carry more: complete refuses the file.
    etags = upload_parts(client, "/uppy", auth, created, blob(PART + 1, seed=6), part_size=PART + 1)
    assert_companion_error(complete(client, "/uppy", auth, created, etags), 413)
    assert record_by_key(app, created["key"]).status == FileStatus.REJECTED


def test_wrong_or_missing_parts_are_integrity_mismatch(client, auth, app, s3):
    data = blob(PART + 5, seed=7)
    created = create(client, "/uppy", auth).get_json()
    etags = upload_parts(client, "/uppy", auth, created, data)
    wrong = {**etags, 2: '"' + "0" * 32 + '"'}
    assert_companion_error(complete(client, "/uppy", auth, created, wrong), 422)
    assert_companion_error(complete(client, "/uppy", auth, created, {1: etags[1]} | {3: etags[2]}), 422)
    assert_companion_error(complete(client, "/uppy", auth, created, {**etags, 3: etags[2]}), 422)
    # The upload stays open: the right list still completes it.
    assert record_by_key(app, created["key"]).status == FileStatus.UPLOADING
    assert complete(client, "/uppy", auth, created, etags).status_code == 200
    assert s3.get_object(Bucket=BUCKET, Key=created["key"])["Body"].read() == data


def test_completion_done_in_s3_but_not_recorded_is_recovered(client, auth, app, s3):
    data = blob(2 * PART + 7, seed=8)
    created = create(client, "/uppy", auth).get_json()
    etags = upload_parts(client, "/uppy", auth, created, data)
    # An earlier complete reached S3, but its answer (and the record update) was lost.
    s3.complete_multipart_upload(
        Bucket=BUCKET,
        Key=created["key"],
        UploadId=created["uploadId"],
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in sorted(etags.items())]},
    )
    response = complete(client, "/uppy", auth, created, etags)
    assert response.status_code == 200, response.get_json()
    record = record_by_key(app, created["key"])
    assert (record.status, record.size) == ("complete", len(data))
    assert usage(client, auth)["used_bytes"] == len(data)


def test_abort_leaves_nothing_in_s3_and_releases_the_reservation(client, auth, app, s3, companion):
    base, headers = companion
    created = create(client, base, headers, size=PART + 1).get_json()
    put_part(sign_part(client, base, headers, created, 1).get_json()["url"], blob(PART))
    assert usage(client, auth)["reserved_bytes"] == PART + 1
    response = abort(client, base, headers, created)
    assert response.status_code == 200 and response.get_json() == {}
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert record_by_key(app, created["key"]).status == FileStatus.ABORTED
    assert usage(client, auth)["reserved_bytes"] == 0
    assert abort(client, base, headers, created).get_json() == {}  # idempotent
    assert_companion_error(sign_part(client, base, headers, created, 2), 409)


def test_sign_refuses_part_numbers_the_upload_cannot_have(make_app, s3):
    client = make_app(DEFAULT_QUOTA_BYTES=6 * 1024**3).test_client()
    auth = register_and_login(client, "alice")
    declared = create(client, "/uppy", auth, size=2 * PART).get_json()
    assert sign_part(client, "/uppy", auth, declared, 2).status_code == 200
    assert_companion_error(sign_part(client, "/uppy", auth, declared, 3), 422)
    assert_companion_error(sign_part(client, "/uppy", auth, declared, 0), 422)
    undeclared = create(client, "/uppy", auth).get_json()
    # Undeclared: only parts that can fit the 5 GiB file limit (1,024 parts of 5 MiB) and the quota.
    assert sign_part(client, "/uppy", auth, undeclared, 1024).status_code == 200
    assert "file limit" in assert_companion_error(sign_part(client, "/uppy", auth, undeclared, 1025), 413)
    assert "file limit" in assert_companion_error(sign_part(client, "/uppy", auth, undeclared, 10_000), 413)
    assert_companion_error(sign_part(client, "/uppy", auth, undeclared, 10_001), 422)
    assert_companion_error(sign_batch(client, "/uppy", auth, undeclared, range(1, 1002)), 422)
    assert_companion_error(sign_batch(client, "/uppy", auth, undeclared, ["x"]), 422)
    urls = sign_batch(client, "/uppy", auth, undeclared, list(range(1, 1001))).get_json()["presignedUrls"]
    assert len(urls) == 1000 and "partNumber=1000" in urls["1000"]
    # A part URL signs no length: Uppy chooses its part size.
    assert "content-length" not in urls["1"].lower()


def test_declared_size_beyond_ten_thousand_parts_of_5_mib(make_app, s3):
    app = make_app(MAX_FILE_SIZE=60 * 1024**3, DEFAULT_QUOTA_BYTES=100 * 1024**3)
    client = app.test_client()
    auth = register_and_login(client, "alice")
    response = create(client, "/uppy", auth, size=55 * 1024**3)
    assert response.status_code == 200, response.get_json()
    created = response.get_json()
    assert sign_part(client, "/uppy", auth, created, 10_000).status_code == 200
    assert_companion_error(sign_part(client, "/uppy", auth, created, 10_001), 422)
    assert usage(client, auth)["reserved_bytes"] == 55 * 1024**3


def test_unknown_keys_and_upload_ids_are_not_found(client, auth, app, s3):
    created = create(client, "/uppy", auth).get_json()
    other = {"key": created["key"], "uploadId": "not-the-id"}
    assert_companion_error(list_parts(client, "/uppy", auth, other), 404)
    assert_companion_error(sign_part(client, "/uppy", auth, other, 1), 404)
    missing = {"key": "users/x/y/z/a.bin", "uploadId": created["uploadId"]}
    assert_companion_error(complete(client, "/uppy", auth, missing, {1: "abc"}), 404)
    assert_companion_error(client.get(f"/uppy/s3/multipart/{created['uploadId']}", headers=auth), 422)


def test_create_refuses_what_policy_refuses(client, auth, app, s3):
    assert_companion_error(create(client, "/uppy", auth, type_="application/x-msdownload"), 415)
    assert_companion_error(create(client, "/uppy", auth, size=str(6 * 1024**3)), 413)
    response = client.post("/uppy/s3/multipart", json={"type": "video/mp4"}, headers=auth)
    assert "filename" in assert_companion_error(response, 422)
    response = client.post("/uppy/s3/multipart", data="nope", headers=auth)
    assert_companion_error(response, 400)
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_complete_body_is_validated(client, auth, app, s3):
    created = create(client, "/uppy", auth).get_json()
    url = f"/uppy/s3/multipart/{quote(created['uploadId'])}/complete?key={quote(created['key'])}"
    for body in ({}, {"parts": []}, {"parts": [{"PartNumber": 1}]}, {"parts": "x"}):
        assert_companion_error(client.post(url, json=body, headers=auth), 422)


def test_cors_preflight_for_configured_origins(make_app, s3):
    app = make_app(CORS_ORIGINS=["http://app.example"])
    client = app.test_client()
    auth = register_and_login(client, "alice")
    endpoint = client.post("/api/uppy/session", headers=auth).get_json()["companion_endpoint"]
    preflight = client.options(
        endpoint.removeprefix("http://localhost") + "/s3/multipart",
        headers={
            "Origin": "http://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "http://app.example"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    refused = client.options(
        "/uppy/s3/params", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"}
    )
    assert "Access-Control-Allow-Origin" not in refused.headers


# -- metadata ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("plain text", "plain text"),
        ("=?UTF-8?B?w6lsw6hudQ==?=", "élènu"),
        ("=?utf-8?q?caf=C3=A9?= au lait", "café au lait"),
        ("=?ISO-8859-1?Q?Gr=FC=DFe?=", "Grüße"),
        (42, "42"),
    ],
)
def test_decode_text_handles_rfc2047(raw, decoded):
    assert schemas.decode_text(raw, "title") == decoded


def test_metadata_is_limited_to_the_allow_list():
    metadata = schemas.decode_metadata(
        {"title": "T", "relativePath": "null", "secret": "x", "x-amz-acl": "public-read", "size": "5", "tags": None}
    )
    assert metadata == {"title": "T", "size": "5"}


def test_time_ordered_ids_sort_by_creation():
    ids = []
    for _ in range(5):
        ids.append(new_time_ordered_id())
        time.sleep(0.002)
    assert ids == sorted(ids) and len(set(ids)) == 5
    parsed = [uuid.UUID(value) for value in ids]
    assert all(value.version == 7 and value.variant == uuid.RFC_4122 for value in parsed)
    assert abs((parsed[0].int >> 80) / 1000 - time.time()) < 5  # the first 48 bits: Unix time in ms


@pytest.mark.parametrize(
    ("failure", "status"),
    [(RuntimeError("bug"), 500), (OperationalError("SELECT 1", {}, Exception("connection refused")), 503)],
)
def test_server_failures_on_companion_routes_use_companion_shape(client, auth, app, s3, monkeypatch, failure, status):
    def broken(*args, **kwargs):
        raise failure

    monkeypatch.setattr(uppy_service, "upload_params", broken)
    response = params(client, "/uppy", auth)
    assert_companion_error(response, status)
    assert "request id" in response.get_json()["error"] or status == 503
    # The session route, outside /uppy, keeps the API's envelope.
    session = client.post("/api/uppy/session")
    assert session.status_code == 401 and session.get_json()["error"]["code"] == "unauthorized"


def test_undeclared_upload_gets_no_part_urls_beyond_the_quota(make_app, s3):
    # The issue: 60 MiB of parts were stored under a 50 MiB quota, and part 10,000 could be signed.
    app = make_app(DEFAULT_QUOTA_BYTES=2 * PART + 10)
    client = app.test_client()
    auth = register_and_login(client, "alice")
    created = create(client, "/uppy", auth).get_json()
    # Parts 1 and 2 of 5 MiB leave 10 bytes: a third part could still fit, a fourth never.
    assert sign_batch(client, "/uppy", auth, created, [1, 2, 3]).status_code == 200
    message = assert_companion_error(sign_batch(client, "/uppy", auth, created, [3, 4]), 507)
    assert "Part 4" in message and "quota" in message
    assert_companion_error(sign_part(client, "/uppy", auth, created, 4), 507)
    # Reservations count: with 5 MiB of the quota reserved elsewhere, 5 MiB + 10 bytes are left (2 parts).
    assert create(client, "/uppy", auth, size=PART).status_code == 200
    assert sign_part(client, "/uppy", auth, created, 2).status_code == 200
    assert_companion_error(sign_part(client, "/uppy", auth, created, 3), 507)


def test_open_form_of_unknown_size_does_not_block_a_multipart_upload(make_app, s3):
    # The issue: a form held all that was left, so a multipart upload was refused at complete.
    app = make_app(DEFAULT_QUOTA_BYTES=4 * PART)
    client = app.test_client()
    auth = register_and_login(client, "alice")
    form = params(client, "/uppy", auth, filename="later.jpg").get_json()
    assert form_bound(form) == 4 * PART
    data = blob(2 * PART + 100, seed=9)
    created = create(client, "/uppy", auth).get_json()
    etags = upload_parts(client, "/uppy", auth, created, data)
    assert complete(client, "/uppy", auth, created, etags).status_code == 200
    assert usage(client, auth)["used_bytes"] == len(data)
    # The form still works for what is left; a file that no longer fits is refused on arrival.
    assert form_bound(params(client, "/uppy", auth).get_json()) == 2 * PART - 100


def test_sweeper_rejects_an_undeclared_upload_whose_parts_outgrew_the_quota(make_app, s3):
    # A part URL signs no length: one part can carry more than the quota. The sweeper does not wait for expiry.
    app = make_app(DEFAULT_QUOTA_BYTES=PART + 10)
    client = app.test_client()
    auth = register_and_login(client, "alice")
    fits = create(client, "/uppy", auth, filename="fits.mp4").get_json()
    put_part(sign_part(client, "/uppy", auth, fits, 1).get_json()["url"], blob(MIB, seed=10))
    grows = create(client, "/uppy", auth, filename="grows.mp4").get_json()
    put_part(sign_part(client, "/uppy", auth, grows, 1).get_json()["url"], blob(PART, seed=11))
    with app.app_context():
        done = sweep()
    assert done.rejected == 1 and done.errors == 0, done
    assert record_by_key(app, grows["key"]).status == FileStatus.REJECTED
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=BUCKET)["Uploads"]] == [fits["uploadId"]]
    # The upload that fits is untouched and completes.
    assert complete(client, "/uppy", auth, fits, {1: s3_part_etag(s3, fits)}).status_code == 200
    assert usage(client, auth)["used_bytes"] == MIB


def s3_part_etag(s3, created: dict) -> str:
    """Return the ETag S3 holds for part 1 of an upload."""
    parts = s3.list_parts(Bucket=BUCKET, Key=created["key"], UploadId=created["uploadId"])["Parts"]
    return parts[0]["ETag"]
