"""Text no database can store (NUL, unpaired surrogates) answers 422 validation_error, never a 500.

PostgreSQL refuses NUL in text, and neither NUL-free lone surrogates nor NUL survive UTF-8;
CI runs this module on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json

import pytest
from helpers import presign, spec

NUL, SURROGATE = "a\u0000b", "a\ud800b"


def post_raw(client, path: str, body: dict, headers: dict | None = None):
    """POST a body serialized by hand: json.dumps escapes NUL and lone surrogates as \\u escapes."""
    return client.post(path, data=json.dumps(body), content_type="application/json", headers=headers or {})


def assert_422(response, field: str | None = None) -> dict:
    body = response.get_json()
    assert response.status_code == 422, body
    assert body["error"]["code"] == "validation_error"
    if field is not None:
        assert field in body["error"]["details"], body
    return body


@pytest.mark.parametrize("bad", [NUL, SURROGATE])
def test_login_and_register_refuse_unstorable_names_unauthenticated(client, bad):
    assert_422(post_raw(client, "/api/auth/login", {"username": bad, "password": "whatever1"}), "username")
    assert_422(post_raw(client, "/api/auth/register", {"username": bad, "password": "whatever1"}), "username")
    assert_422(post_raw(client, "/api/auth/login", {"username": "alice", "password": bad}), "password")


@pytest.mark.parametrize("bad", [NUL, SURROGATE])
@pytest.mark.parametrize("field", ["file_name", "title", "description", "folder", "content_type", "checksum_sha256"])
def test_presign_refuses_unstorable_text_in_any_field(client, auth, field, bad):
    single = post_raw(
        client, "/api/files/upload/", spec(**{field: bad}) if field != "file_name" else {**spec(), field: bad}, auth
    )
    assert_422(single, field)
    batch = post_raw(client, "/api/files/upload/", {"files": [spec("ok.jpg"), {**spec(), field: bad}]}, auth)
    assert_422(batch, f"files.1.{field}")
    assert client.get("/api/files/?status=pending", headers=auth).get_json()["items"] == []


@pytest.mark.parametrize("bad", [NUL, SURROGATE])
def test_tags_and_keys_are_checked_too(client, auth, bad):
    assert_422(post_raw(client, "/api/files/upload/", spec(tags=["fine", bad]), auth), "tags.1")
    assert_422(post_raw(client, "/api/files/upload/", {**spec(), bad: "x"}, auth))


@pytest.mark.parametrize("bad", [NUL, SURROGATE])
def test_metadata_changes_and_copies_refuse_unstorable_text(client, auth, bad):
    [ticket] = presign(client, auth, spec("a.jpg"))["successful"]
    for field in ("title", "description", "file_name", "folder"):
        assert_422(
            client.patch(
                f"/api/files/{ticket['id']}",
                data=json.dumps({field: bad}),
                content_type="application/json",
                headers=auth,
            ),
            field,
        )
    assert_422(post_raw(client, f"/api/files/{ticket['id']}/copy", {"file_name": bad}, auth), "file_name")
    assert_422(post_raw(client, "/api/files/confirm_uploads/", {"ids": [bad]}, auth), "ids.0")
    assert_422(post_raw(client, "/api/files/delete", {"ids": [ticket["id"], bad]}, auth), "ids.1")
    assert client.get(f"/api/files/{ticket['id']}", headers=auth).get_json()["title"] is None


@pytest.mark.parametrize("param", ["q", "tag", "folder", "cursor", "sort"])
def test_query_strings_with_nul_are_422(client, auth, param):
    assert_422(client.get(f"/api/files/?{param}=a%00b", headers=auth), param)


def test_paths_with_nul_are_422_not_500(client, auth):
    assert_422(client.get("/api/files/a%00b", headers=auth), "file_id")
    assert_422(client.get("/api/files/multipart/a%00b", headers=auth), "file_id")


def test_admin_search_with_nul_is_422(client, app):
    from s3drive.services.users import create_user

    with app.app_context():
        create_user("root", "adminpass1", is_admin=True)
    admin = _login(client, "root", "adminpass1")
    assert_422(client.get("/api/admin/users?q=a%00b", headers=admin), "q")


def _login(client, username: str, password: str) -> dict:
    token = client.post("/api/auth/login", json={"username": username, "password": password}).get_json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("bad", [NUL, SURROGATE])
def test_uppy_routes_answer_in_companions_shape(client, auth, bad):
    created = post_raw(
        client, "/uppy/s3/multipart", {"filename": "a.bin", "type": "text/plain", "metadata": {"title": bad}}, auth
    )
    assert (
        created.status_code == 422 and "error" in created.get_json() and "metadata.title" in created.get_json()["error"]
    )
    form = client.get(
        "/uppy/s3/params", query_string={"filename": "a.txt", "metadata[title]": "a\u0000b"}, headers=auth
    )
    assert form.status_code == 422 and "metadata[title]" in form.get_json()["error"]


@pytest.mark.parametrize("bad", [NUL, SURROGATE])
@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_bodies_in_other_unicode_encodings_are_checked_too(client, auth, bad, encoding):
    """JSON in UTF-16 or UTF-32 (which orjson refuses and the standard library reads) is checked for
    unstorable text like any other body: 422, never a 500, nothing kept."""
    text = json.dumps({"files": [spec("ok.jpg"), {**spec(), "file_name": bad}]})
    response = client.post(
        "/api/files/upload/", data=text.encode(encoding), content_type="application/json", headers=auth
    )
    assert_422(response, "files.1.file_name")
    good = json.dumps({"files": [spec("ok.jpg")]}).encode(encoding)
    answer = client.post("/api/files/upload/", data=good, content_type="application/json", headers=auth).get_json()
    assert answer["total_successful"] == 1
    assert [f["file_name"] for f in client.get("/api/files/?status=pending", headers=auth).get_json()["items"]] == [
        "ok.jpg"
    ]


@pytest.mark.parametrize("size", [2**63, 10**30, 10**400])
def test_absurd_file_sizes_are_too_large_not_a_500(client, auth, size):
    """A size no float holds (orjson refuses it; the standard parser reads it) is still just too large."""
    body = '{"file_name": "a.bin", "content_type": "application/octet-stream", "file_size": ' + str(size) + "}"
    for path, payload in (("/api/files/upload/", body), ("/api/files/upload/", '{"files": [' + body + "]}")):
        answer = client.post(path, data=payload, headers={**auth, "Content-Type": "application/json"})
        error = answer.get_json()["error"] if answer.status_code != 200 else answer.get_json()["failed"][0]["error"]
        # Too large; or, where the fast parser read the number as a float, not an integer: never a 500.
        assert error["code"] in ("file_too_large", "validation_error"), answer.get_json()
        if error["code"] == "file_too_large":
            assert error["message"].startswith("File is more than 8 EiB; the limit is "), error
    multipart = client.post("/api/files/multipart/", data=body, headers={**auth, "Content-Type": "application/json"})
    assert multipart.status_code in (413, 422), multipart.get_json()
