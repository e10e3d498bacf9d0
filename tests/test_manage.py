"""File management against real objects in moto: metadata, tier, download, delete, copy.

Every file is uploaded for real (presign, PUT the bytes, confirm); the checks read S3
(HeadObject/GetObject, listings) and the database rows afterwards.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from botocore.exceptions import ClientError
from conftest import BUCKET, register_and_login
from helpers import presign, put_bytes, sha256_b64, spec, upload, usage
from sqlalchemy import func, select
from werkzeug.http import parse_options_header

from s3drive import storage as storage_module
from s3drive.errors import StorageUnavailable
from s3drive.extensions import db
from s3drive.models import File, User
from s3drive.parts import copy_part_ranges
from s3drive.policy import TIERS
from s3drive.services import sweeper
from s3drive.services.files import ascii_fallback, content_disposition
from s3drive.storage import Storage

MIB = 1024**2


# -- helpers --------------------------------------------------------------------------------


def upload_many(client, auth, count: int, size: int = 8) -> list[dict]:
    """Upload count small files in one batch (PUTs sent concurrently) and confirm them."""
    datas = [f"{i:0{size}d}".encode()[:size] for i in range(count)]
    tickets = presign(client, auth, *[spec(f"f{i}.txt", d, "text/plain") for i, d in enumerate(datas)])["successful"]
    assert len(tickets) == count
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda pair: put_bytes(*pair).status_code, zip(tickets, datas, strict=True)))
    assert statuses == [200] * count
    ids = [t["id"] for t in tickets]
    for start in range(0, count, 1000):
        body = client.post("/api/files/confirm_uploads/", json={"ids": ids[start : start + 1000]}, headers=auth)
        assert body.get_json()["total_successful"] == len(ids[start : start + 1000])
    return tickets


def head(s3, key: str) -> dict | None:
    try:
        return s3.head_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED")
    except ClientError as error:
        if error.response["Error"]["Code"] in ("404", "NoSuchKey"):
            return None
        raise


def read(s3, key: str) -> bytes:
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def row(app, file_id: str) -> File:
    with app.app_context():
        record = db.session.get(File, file_id)
        db.session.expunge(record)
        return record


def download(client, auth, file_id: str, **query) -> requests.Response:
    """Ask for a download URL and GET it from S3 like a browser would."""
    response = client.get(f"/api/files/{file_id}/download", query_string=query, headers=auth)
    assert response.status_code == 200, response.get_json()
    return requests.get(response.get_json()["url"], timeout=30)


def disposition_name(header: str) -> str:
    """Parse a Content-Disposition value as a browser would: filename* wins (RFC 6266)."""
    kind, params = parse_options_header(header)
    assert kind in ("attachment", "inline")
    return params["filename"]


def error_code(response) -> str:
    return response.get_json()["error"]["code"]


# -- metadata -------------------------------------------------------------------------------


def test_rename_then_download_names_the_file_and_keeps_the_key(client, auth, app, s3):
    data = b"quarterly numbers\n" * 100
    original = upload(client, auth, "report.txt", data)
    response = client.patch(
        f"/api/files/{original['id']}",
        json={
            "file_name": "Résumé final.txt",
            "title": "My CV",
            "description": "for the job",
            "tags": "Work, CV,work",
            "folder": "/docs//2026/",
        },
        headers=auth,
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["file_name"] == "Résumé final.txt"
    assert (body["title"], body["description"], body["tags"], body["folder"]) == (
        "My CV",
        "for the job",
        ["work", "cv"],
        "docs/2026",
    )
    assert body["s3_key"] == original["s3_key"] and body["status"] == "complete"
    record = row(app, original["id"])
    assert record.file_name == "Résumé final.txt" and record.s3_key == original["s3_key"]
    assert client.get(f"/api/files/{original['id']}", headers=auth).get_json()["file_name"] == "Résumé final.txt"

    got = download(client, auth, original["id"])
    assert got.status_code == 200 and got.content == data
    header = got.headers["Content-Disposition"]
    assert header == "attachment; filename=\"Resume final.txt\"; filename*=UTF-8''R%C3%A9sum%C3%A9%20final.txt"
    assert disposition_name(header) == "Résumé final.txt"


def test_patch_clears_optional_fields(client, auth):
    file = upload(client, auth, title="t", description="d", tags=["a"], folder="x/y")
    body = client.patch(
        f"/api/files/{file['id']}",
        json={"title": None, "description": None, "tags": None, "folder": None},
        headers=auth,
    ).get_json()
    assert (body["title"], body["description"], body["tags"], body["folder"]) == (None, None, [], "")


@pytest.mark.parametrize(
    ("changes", "status", "code"),
    [
        ({}, 422, "validation_error"),
        ({"tier": "platinum"}, 422, "validation_error"),
        ({"tier": None}, 422, "validation_error"),
        ({"file_name": ""}, 422, "validation_error"),
        ({"file_name": None}, 422, "validation_error"),
        ({"file_name": "../.."}, 422, "validation_error"),
        ({"file_name": "setup.EXE"}, 415, "content_type_not_allowed"),
        ({"folder": "a/../b"}, 422, "validation_error"),
        ({"tags": [1, 2]}, 422, "validation_error"),
        ({"tags": ["x" * 65]}, 422, "validation_error"),
        ({"title": "t" * 201}, 422, "validation_error"),
    ],
)
def test_patch_refuses_bad_values(client, auth, app, changes, status, code):
    file = upload(client, auth)
    response = client.patch(f"/api/files/{file['id']}", json=changes, headers=auth)
    assert response.status_code == status and error_code(response) == code
    assert row(app, file["id"]).file_name == "report.txt"


def test_patch_needs_a_json_object(client, auth):
    file = upload(client, auth)
    response = client.patch(f"/api/files/{file['id']}", data="[1]", content_type="application/json", headers=auth)
    assert response.status_code == 400 and error_code(response) == "bad_request"
    response = client.patch(f"/api/files/{file['id']}", data="name=x", headers=auth)
    assert response.status_code == 400 and error_code(response) == "bad_request"


def test_pending_metadata_is_editable_but_tier_is_not(client, auth, app):
    """Documented rule: name/title/tags/folder change while live; tier needs a complete file."""
    ticket = presign(client, auth, spec("draft.txt", b"abc", "text/plain"))["successful"][0]
    response = client.patch(f"/api/files/{ticket['id']}", json={"file_name": "final.txt"}, headers=auth)
    assert response.status_code == 200 and response.get_json()["status"] == "pending"
    response = client.patch(f"/api/files/{ticket['id']}", json={"tier": "standard_ia"}, headers=auth)
    assert response.status_code == 409 and error_code(response) == "invalid_state"
    assert row(app, ticket["id"]).tier == "standard"


def test_history_records_cannot_change(client, auth, app):
    file = upload(client, auth)
    assert client.delete(f"/api/files/{file['id']}", headers=auth).status_code == 200
    response = client.patch(f"/api/files/{file['id']}", json={"title": "late"}, headers=auth)
    assert response.status_code == 409 and error_code(response) == "invalid_state"
    assert row(app, file["id"]).title is None


# -- tier -----------------------------------------------------------------------------------


def test_tier_change_copies_in_place_keeping_type_metadata_and_bytes(client, auth, app, s3):
    data = b"cold data " * 50
    file = upload(client, auth, "cold.txt", data)
    assert head(s3, file["s3_key"]).get("StorageClass", "STANDARD") == "STANDARD"
    response = client.patch(f"/api/files/{file['id']}", json={"tier": "standard_ia", "title": "cold"}, headers=auth)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["tier"] == "standard_ia" and response.get_json()["title"] == "cold"
    info = head(s3, file["s3_key"])
    assert info["StorageClass"] == "STANDARD_IA"
    assert info["ContentType"] == "text/plain" and info["Metadata"] == {"file-id": file["id"]}
    assert info["ChecksumSHA256"] == sha256_b64(data)
    assert read(s3, file["s3_key"]) == data
    assert row(app, file["id"]).tier == "standard_ia"
    assert usage(client, auth)["used_bytes"] == len(data)  # a tier change is not a new file

    # Back to standard works too (in place, storage class is the change).
    response = client.patch(f"/api/files/{file['id']}", json={"tier": "standard"}, headers=auth)
    assert response.status_code == 200
    assert head(s3, file["s3_key"]).get("StorageClass", "STANDARD") == "STANDARD"


def test_archived_files_refuse_reads_until_restored(client, auth, app, s3):
    file = upload(client, auth, "archive.txt", b"old")
    response = client.patch(f"/api/files/{file['id']}", json={"tier": "glacier"}, headers=auth)
    assert response.status_code == 200
    assert head(s3, file["s3_key"])["StorageClass"] == "GLACIER"
    for response in (
        client.get(f"/api/files/{file['id']}/download", headers=auth),
        client.post(f"/api/files/{file['id']}/copy", json={}, headers=auth),
        client.patch(f"/api/files/{file['id']}", json={"tier": "standard"}, headers=auth),
    ):
        assert response.status_code == 409 and error_code(response) == "invalid_state"
    assert head(s3, file["s3_key"])["StorageClass"] == "GLACIER"
    assert row(app, file["id"]).tier == "glacier"
    # Renaming and deleting an archived file still work.
    assert client.patch(f"/api/files/{file['id']}", json={"file_name": "a.txt"}, headers=auth).status_code == 200
    assert client.delete(f"/api/files/{file['id']}", headers=auth).status_code == 200
    assert head(s3, file["s3_key"]) is None


def test_tier_change_holds_no_lock_while_s3_copies(app, client, auth, s3, monkeypatch):
    """A slow copy blocks neither the user's presigns nor edits of the file; a second change waits, then 409."""
    file = upload(client, auth, "slow.txt", b"s" * 32)
    copying, release = threading.Event(), threading.Event()
    real_copy = Storage.copy_object

    def slow_copy(self, *args, **kwargs):
        copying.set()
        assert release.wait(30)
        return real_copy(self, *args, **kwargs)

    monkeypatch.setattr(Storage, "copy_object", slow_copy)
    monkeypatch.setattr("s3drive.services.files.TIER_CHANGE_WAIT", 0.3)
    with ThreadPoolExecutor(1) as pool:
        changing = pool.submit(
            lambda: app.test_client().patch(f"/api/files/{file['id']}", json={"tier": "standard_ia"}, headers=auth)
        )
        assert copying.wait(10)
        # Another request of the same user needs the user's lock (SQLite: the database's write lock).
        assert presign(client, auth, spec("next.txt", b"n"))["total_successful"] == 1
        renamed = client.patch(f"/api/files/{file['id']}", json={"title": "while copying"}, headers=auth)
        assert renamed.status_code == 200 and renamed.get_json()["tier"] == "standard"
        second = client.patch(f"/api/files/{file['id']}", json={"tier": "glacier_ir"}, headers=auth)
        assert second.status_code == 409 and error_code(second) == "conflict"
        release.set()
        assert changing.result(timeout=30).status_code == 200
    record = row(app, file["id"])
    assert (record.tier, record.title, record.tier_changing_until) == ("standard_ia", "while copying", None)
    assert head(s3, file["s3_key"])["StorageClass"] == "STANDARD_IA"


def test_failed_tier_copy_changes_nothing(app, client, auth, s3, monkeypatch):
    file = upload(client, auth, "kept.txt", b"k" * 8)

    def refuse(self, *args, **kwargs):
        raise StorageUnavailable("S3 is down.")

    monkeypatch.setattr(Storage, "copy_object", refuse)
    response = client.patch(f"/api/files/{file['id']}", json={"tier": "standard_ia", "title": "new"}, headers=auth)
    assert response.status_code == 503 and error_code(response) == "storage_unavailable"
    record = row(app, file["id"])
    assert (record.tier, record.title, record.tier_changing_until) == ("standard", None, None)
    monkeypatch.undo()
    response = client.patch(f"/api/files/{file['id']}", json={"tier": "standard_ia", "title": "new"}, headers=auth)
    assert response.status_code == 200 and response.get_json()["title"] == "new"


def test_archived_object_reported_by_s3_is_invalid_state(client, auth, app, s3):
    """The record says standard but S3 holds it archived (changed out of band): 409, not 503."""
    file = upload(client, auth, "sneaky.txt", b"abc")
    s3.copy_object(
        Bucket=BUCKET,
        Key=file["s3_key"],
        CopySource={"Bucket": BUCKET, "Key": file["s3_key"]},
        StorageClass="DEEP_ARCHIVE",
    )
    response = client.patch(f"/api/files/{file['id']}", json={"tier": "standard_ia"}, headers=auth)
    assert response.status_code == 409 and error_code(response) == "invalid_state"
    assert row(app, file["id"]).tier == "standard"


@pytest.mark.parametrize("app_config", [{"SSE": "AES256"}])
def test_tier_change_and_copy_keep_server_side_encryption(client, auth, s3):
    file = upload(client, auth, "secret.txt", b"classified")
    assert head(s3, file["s3_key"])["ServerSideEncryption"] == "AES256"
    assert (
        client.patch(f"/api/files/{file['id']}", json={"tier": "intelligent_tiering"}, headers=auth).status_code == 200
    )
    info = head(s3, file["s3_key"])
    assert info["ServerSideEncryption"] == "AES256" and info["StorageClass"] == "INTELLIGENT_TIERING"
    copy = client.post(f"/api/files/{file['id']}/copy", json={}, headers=auth).get_json()
    info = head(s3, copy["s3_key"])
    assert info["ServerSideEncryption"] == "AES256" and info["StorageClass"] == "INTELLIGENT_TIERING"


# -- download -------------------------------------------------------------------------------


HOSTILE_NAMES = [
    ('a";\r\nx.txt', 'a";x.txt'),
    ("../../etc/passwd.txt", "passwd.txt"),
    ("..\\windows\\evil.txt", "evil.txt"),
    ("日本語の文書.txt", "日本語の文書.txt"),
    ("naïve\u202egnp.txt", "naïvegnp.txt"),
    ("100% done; really.txt", "100% done; really.txt"),
]


@pytest.mark.parametrize(("raw", "stored"), HOSTILE_NAMES)
def test_hostile_names_give_a_safe_header(client, auth, app, raw, stored):
    data = b"payload"
    file = upload(client, auth, "plain.txt", data)
    response = client.patch(f"/api/files/{file['id']}", json={"file_name": raw}, headers=auth)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["file_name"] == stored
    got = download(client, auth, file["id"])
    assert got.content == data
    header = got.headers["Content-Disposition"]
    assert header.isascii() and "\r" not in header and "\n" not in header
    fallback = header.split('filename="', 1)[1].split('"', 1)[0]
    assert header.startswith(f"attachment; filename=\"{fallback}\"; filename*=UTF-8''")
    assert "\\" not in fallback and "/" not in fallback and "%" not in fallback
    assert fallback.strip() and fallback.isprintable()
    assert disposition_name(header) == stored


def test_long_unicode_name_is_cut_to_255_bytes_and_survives_the_header(client, auth, app):
    raw = "ü" * 148 + ".txt"  # 300 bytes of UTF-8
    assert len(raw.encode()) == 300
    data = b"long name"
    file = upload(client, auth, raw, data)
    stored = file["file_name"]
    assert len(stored.encode()) <= 255 and stored.endswith(".txt") and stored.startswith("ü")
    got = download(client, auth, file["id"])
    assert got.content == data
    header = got.headers["Content-Disposition"]
    assert header.isascii() and disposition_name(header) == stored
    assert 'filename="' + "u" * (len(stored) - 4) + '.txt"' in header


def test_inline_vs_attachment(client, auth):
    file = upload(client, auth, "photo.jpg", b"\xff\xd8\xff fake jpeg", "image/jpeg")
    inline = download(client, auth, file["id"], disposition="inline")
    attachment = download(client, auth, file["id"], disposition="attachment")
    default = download(client, auth, file["id"])
    assert inline.headers["Content-Disposition"].startswith('inline; filename="photo.jpg"')
    assert attachment.headers["Content-Disposition"].startswith('attachment; filename="photo.jpg"')
    assert default.headers["Content-Disposition"] == attachment.headers["Content-Disposition"]
    assert inline.headers["Content-Type"] == "image/jpeg"
    bad = client.get(f"/api/files/{file['id']}/download?disposition=evil", headers=auth)
    assert bad.status_code == 422 and error_code(bad) == "validation_error"


@pytest.mark.parametrize(
    ("name", "content_type"), [("page.html", "text/html"), ("logo.svg", "image/svg+xml"), ("feed.xml", "text/xml")]
)
def test_inline_documents_that_could_run_scripts_are_shown_as_text(client, auth, name, content_type):
    data = b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(document.domain)</script></svg>"
    file = upload(client, auth, name, data, content_type)
    inline = download(client, auth, file["id"], disposition="inline")
    assert inline.content == data
    assert inline.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert inline.headers["Content-Disposition"].startswith(f'inline; filename="{name}"')
    attachment = download(client, auth, file["id"])  # saved, not rendered: the real type
    assert attachment.headers["Content-Type"] == content_type


def test_download_link_shape_and_redirect(client, auth, app):
    data = b"redirected bytes"
    file = upload(client, auth, "r.txt", data)
    response = client.get(f"/api/files/{file['id']}/download?redirect=0", headers=auth)
    assert response.headers["Cache-Control"] == "private, no-store"
    body = response.get_json()
    assert set(body) == {"url", "expires_at"} and body["expires_at"].endswith("Z")
    query = parse_qs(urlsplit(body["url"]).query)
    assert query["X-Amz-Expires"] == [str(app.config["URL_EXPIRES_IN"])]
    assert query["response-content-disposition"][0].startswith("attachment;")

    response = client.get(f"/api/files/{file['id']}/download?redirect=1&disposition=inline", headers=auth)
    assert response.status_code == 302 and response.headers["Cache-Control"] == "private, no-store"
    location = response.headers["Location"]
    assert urlsplit(location).path.endswith(file["s3_key"])
    got = requests.get(location, timeout=30)
    assert got.content == data and got.headers["Content-Disposition"].startswith('inline; filename="r.txt"')


def test_download_only_complete_files(client, auth):
    ticket = presign(client, auth, spec("p.txt", b"abc", "text/plain"))["successful"][0]
    response = client.get(f"/api/files/{ticket['id']}/download", headers=auth)
    assert response.status_code == 409 and error_code(response) == "invalid_state"
    file = upload(client, auth)
    client.delete(f"/api/files/{file['id']}", headers=auth)
    response = client.get(f"/api/files/{file['id']}/download", headers=auth)
    assert response.status_code == 409 and error_code(response) == "invalid_state"
    response = client.get("/api/files/00000000-0000-0000-0000-000000000000/download", headers=auth)
    assert response.status_code == 404 and error_code(response) == "not_found"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("plain.txt", "attachment; filename=\"plain.txt\"; filename*=UTF-8''plain.txt"),
        ('a"b\\c.txt', "attachment; filename=\"c.txt\"; filename*=UTF-8''c.txt"),
        ('q"uote.txt', "attachment; filename=\"q_uote.txt\"; filename*=UTF-8''q%22uote.txt"),
        ("line\r\nbreak.txt", "attachment; filename=\"linebreak.txt\"; filename*=UTF-8''linebreak.txt"),
        ("文件.pdf", "attachment; filename=\"download.pdf\"; filename*=UTF-8''%E6%96%87%E4%BB%B6.pdf"),
        ("文件", "attachment; filename=\"download\"; filename*=UTF-8''%E6%96%87%E4%BB%B6"),
        ("", "attachment; filename=\"download\"; filename*=UTF-8''download"),
        ("a b+c&d#e.txt", "attachment; filename=\"a b+c&d#e.txt\"; filename*=UTF-8''a%20b+c&d#e.txt"),
    ],
)
def test_content_disposition_values(name, expected):
    assert content_disposition(name) == expected


def test_ascii_fallback_is_always_a_safe_quoted_string():
    for name in ['"', "\\", "%41", "ü/ü", "\x00\x7f", " . ", "ab\u200dc", "ﬁle.txt"]:
        fallback = ascii_fallback(name)
        assert fallback and fallback.isascii() and fallback.isprintable()
        assert not set(fallback) & set('"\\%/')
    assert ascii_fallback("ﬁle.txt") == "file.txt"  # NFKD folds the ligature


# -- delete ---------------------------------------------------------------------------------


def test_delete_removes_object_releases_quota_keeps_row(client, auth, app, s3):
    data = b"to be deleted"
    file = upload(client, auth, "gone.txt", data)
    keep = upload(client, auth, "keep.txt", b"stay")
    assert usage(client, auth)["used_bytes"] == len(data) + 4
    response = client.delete(f"/api/files/{file['id']}", headers=auth)
    assert response.status_code == 200 and response.get_json() == {"id": file["id"], "status": "deleted"}
    assert head(s3, file["s3_key"]) is None
    assert head(s3, keep["s3_key"]) is not None
    # No longer used; reserved while its upload URL could still store the bytes again.
    assert usage(client, auth) == {
        "used_bytes": 4,
        "reserved_bytes": len(data),
        "quota_bytes": 1024**3,
        "file_count": 1,
    }
    assert row(app, file["id"]).status == "deleted"
    assert client.get(f"/api/files/{file['id']}", headers=auth).get_json()["status"] == "deleted"
    # Deleting again is harmless: same answer, nothing released twice.
    again = client.delete(f"/api/files/{file['id']}", headers=auth)
    assert again.status_code == 200 and again.get_json()["status"] == "deleted"
    assert usage(client, auth)["used_bytes"] == 4


@pytest.mark.parametrize("app_config", [{"DEFAULT_QUOTA_BYTES": 50 * 2**20}])
@pytest.mark.parametrize("confirmed", [False, True], ids=["pending", "complete"])
def test_old_urls_of_deleted_files_store_nothing_beyond_the_quota(client, auth, app, s3, confirmed):
    """Presign 45 MiB, delete, PUT to the old URL, presign again: the old URL keeps its reservation until
    it expires, so the second presign is refused; then the sweeper removes what arrived."""
    data = b"z" * (45 * 2**20)
    ticket = presign(client, auth, spec("big.bin", data, "application/octet-stream"))["successful"][0]
    if confirmed:
        assert put_bytes(ticket, data).status_code == 200
        assert client.post("/api/files/confirm_upload/", json={"id": ticket["id"]}, headers=auth).status_code == 200
    assert client.delete(f"/api/files/{ticket['id']}", headers=auth).status_code == 200
    assert row(app, ticket["id"]).status == "deleted"
    assert usage(client, auth) == {
        "used_bytes": 0,
        "reserved_bytes": len(data),
        "quota_bytes": 50 * 2**20,
        "file_count": 0,
    }
    assert client.post("/api/files/confirm_upload/", json={"id": ticket["id"]}, headers=auth).status_code == 409

    assert put_bytes(ticket, data).status_code == 200  # the URL still works: the bytes are reserved
    again = client.post("/api/files/upload/", json=spec("again.bin", data, "application/octet-stream"), headers=auth)
    assert again.status_code == 507 and error_code(again) == "quota_exceeded"

    with app.app_context():
        later = row(app, ticket["id"]).expires_at + timedelta(hours=1)
        assert sweeper.sweep(now=later).keys_purged == 1
    assert head(s3, ticket["s3_key"]) is None
    assert usage(client, auth)["reserved_bytes"] == 0
    with app.app_context():
        assert sweeper.sweep(now=later).keys_purged == 0  # purged once


def test_delete_multipart_in_progress_points_to_abort(client, auth, app):
    file = upload(client, auth)
    with app.app_context():
        db.session.get(File, file["id"]).status = "uploading"
        db.session.commit()
    response = client.delete(f"/api/files/{file['id']}", headers=auth)
    assert response.status_code == 409 and error_code(response) == "invalid_state"
    assert "multipart" in response.get_json()["error"]["message"]


@pytest.mark.parametrize("app_config", [{"MAX_BATCH": 2000}])
def test_batch_delete_1200_files(client, auth, other_auth, app, s3):
    tickets = upload_many(client, auth, 1200)
    foreign = upload(client, other_auth, "theirs.txt", b"not yours")
    user_prefix = tickets[0]["s3_key"].split("/")[0] + "/" + tickets[0]["s3_key"].split("/")[1] + "/"
    assert usage(client, auth)["used_bytes"] == 1200 * 8
    calls = []
    app.extensions["s3drive.storage"].client.meta.events.register(
        "before-call.s3", lambda model, **_: calls.append(model.name)
    )
    unknown = ["00000000-0000-0000-0000-000000000000", "nope"]
    ids = [t["id"] for t in tickets]
    response = client.post("/api/files/delete", json={"ids": [*ids, *unknown, foreign["id"]]}, headers=auth)
    assert response.status_code == 200
    body = response.get_json()
    assert body["deleted"] == ids
    assert [f["id"] for f in body["failed"]] == [*unknown, foreign["id"]]
    assert {f["error"]["code"] for f in body["failed"]} == {"not_found"}
    assert calls == ["DeleteObjects", "DeleteObjects"]  # chunks of 1,000

    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=user_prefix)
    assert listed["KeyCount"] == 0
    assert head(s3, foreign["s3_key"]) is not None
    # The deleted files' upload URLs still live: their bytes stay reserved until they expire.
    assert usage(client, auth) == {
        "used_bytes": 0,
        "reserved_bytes": 1200 * 8,
        "quota_bytes": 1024**3,
        "file_count": 0,
    }
    assert usage(client, other_auth)["used_bytes"] == len(b"not yours")
    with app.app_context():
        statuses = db.session.execute(
            select(File.status, func.count()).where(File.id.in_(ids[:500] + ids[700:])).group_by(File.status)
        ).all()
        assert dict(statuses) == {"deleted": 1000}


def test_batch_delete_limits_and_validation(client, auth, app):
    too_many = [f"id-{i}" for i in range(app.config["MAX_BATCH"] + 1)]
    response = client.post("/api/files/delete", json={"ids": too_many}, headers=auth)
    assert response.status_code == 413 and error_code(response) == "batch_too_large"
    for body in ({"ids": []}, {"ids": "abc"}, {"ids": [1]}, {}, {"ids": ["x" * 65]}):
        response = client.post("/api/files/delete", json=body, headers=auth)
        assert response.status_code == 422 and error_code(response) == "validation_error", body
    response = client.post("/api/files/delete", data="[]", content_type="application/json", headers=auth)
    assert response.status_code == 400


def test_batch_delete_duplicates_and_already_deleted(client, auth, s3):
    a = upload(client, auth, "a.txt", b"aaaa")
    b = upload(client, auth, "b.txt", b"bbbbbb")
    client.delete(f"/api/files/{a['id']}", headers=auth)
    body = client.post("/api/files/delete", json={"ids": [a["id"], b["id"], b["id"]]}, headers=auth).get_json()
    assert body == {"deleted": [a["id"], b["id"]], "failed": []}
    assert usage(client, auth)["used_bytes"] == 0


def test_batch_delete_releases_quota_only_for_what_s3_deleted(client, auth, app, s3):
    """S3 reports per-key errors (and really keeps those objects): their records stay `deleting`, still counted
    (their bytes are still in S3), until a retry or the sweeper deletes them."""
    files = [upload(client, auth, f"k{i}.txt", b"x" * (i + 1)) for i in range(4)]
    kept = {files[1]["s3_key"], files[3]["s3_key"]}
    events = app.extensions["s3drive.storage"].client.meta.events

    def keep_some(params, **_):
        params["Delete"]["Objects"] = [o for o in params["Delete"]["Objects"] if o["Key"] not in kept]

    def report_errors(parsed, **_):
        parsed.setdefault("Errors", []).extend(
            {"Key": key, "Code": "AccessDenied", "Message": "Access Denied"} for key in sorted(kept)
        )

    events.register("before-parameter-build.s3.DeleteObjects", keep_some)
    events.register("after-call.s3.DeleteObjects", report_errors)
    body = client.post("/api/files/delete", json={"ids": [f["id"] for f in files]}, headers=auth).get_json()
    assert body["deleted"] == [files[0]["id"], files[2]["id"]]
    assert [f["id"] for f in body["failed"]] == [files[1]["id"], files[3]["id"]]
    assert {f["error"]["code"] for f in body["failed"]} == {"storage_unavailable"}
    assert "Access Denied" in body["failed"][0]["error"]["message"]
    for file in files:
        assert (head(s3, file["s3_key"]) is not None) == (file["s3_key"] in kept)
        assert row(app, file["id"]).status == ("deleting" if file["s3_key"] in kept else "deleted")
    assert usage(client, auth)["used_bytes"] == 2 + 4
    listed = client.get("/api/files/", headers=auth).get_json()["items"]
    assert listed == []  # a file being deleted is never listed as complete

    events.unregister("before-parameter-build.s3.DeleteObjects", keep_some)
    events.unregister("after-call.s3.DeleteObjects", report_errors)
    with app.app_context():
        assert sweeper.sweep().deletes_finished == 2
    for file in files:
        assert head(s3, file["s3_key"]) is None and row(app, file["id"]).status == "deleted"
    assert usage(client, auth)["used_bytes"] == 0


def test_concurrent_deletes_of_one_file_release_quota_once(app, client, auth, s3):
    target = upload(client, auth, "race.txt", b"r" * 1000)
    upload(client, auth, "other.txt", b"o" * 7)
    barrier = threading.Barrier(8)

    def attempt(index: int) -> int:
        local = app.test_client()
        barrier.wait()
        if index % 2:
            return local.delete(f"/api/files/{target['id']}", headers=auth).status_code
        return local.post("/api/files/delete", json={"ids": [target["id"]]}, headers=auth).status_code

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(attempt, range(8))) == [200] * 8
    assert usage(client, auth)["used_bytes"] == 7
    with app.app_context():
        assert db.session.scalar(select(User.used_bytes)) == 7


def test_concurrent_tier_changes_and_delete_stay_consistent(app, client, auth, s3):
    """Tier copies and a delete race: the record and S3 must agree at the end, whoever wins."""
    file = upload(client, auth, "contested.txt", b"c" * 64)
    keep = upload(client, auth, "calm.txt", b"k" * 5)
    tiers = ["standard_ia", "intelligent_tiering", "glacier_ir", "standard_ia", "standard"]
    barrier = threading.Barrier(len(tiers))

    def change(tier: str) -> int:
        local = app.test_client()
        barrier.wait()
        return local.patch(f"/api/files/{keep['id']}", json={"tier": tier}, headers=auth).status_code

    with ThreadPoolExecutor(len(tiers)) as pool:
        assert list(pool.map(change, tiers)) == [200] * len(tiers)
    record = row(app, keep["id"])
    assert head(s3, keep["s3_key"]).get("StorageClass", "STANDARD") == TIERS[record.tier]

    barrier = threading.Barrier(4)

    def race(index: int) -> int:
        local = app.test_client()
        barrier.wait()
        if index == 0:
            return local.delete(f"/api/files/{file['id']}", headers=auth).status_code
        return local.patch(f"/api/files/{file['id']}", json={"tier": tiers[index]}, headers=auth).status_code

    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(race, range(4)))
    assert statuses[0] == 200 and set(statuses[1:]) <= {200, 409}
    assert head(s3, file["s3_key"]) is None  # no tier copy brought the object back
    assert row(app, file["id"]).status == "deleted"
    assert usage(client, auth)["used_bytes"] == 5


# -- copy -----------------------------------------------------------------------------------


def test_copy_makes_a_new_file_with_a_new_key(client, auth, app, s3):
    data = b"original bytes " * 20
    source = upload(client, auth, "orig.txt", data, title="T", tags=["a", "b"], folder="src")
    response = client.post(
        f"/api/files/{source['id']}/copy", json={"file_name": "copy of orig.txt", "folder": "dst/sub"}, headers=auth
    )
    assert response.status_code == 201, response.get_json()
    copy = response.get_json()
    assert copy["id"] != source["id"] and copy["s3_key"] != source["s3_key"]
    assert copy["s3_key"].startswith(source["s3_key"].rsplit("/", 3)[0] + "/")  # the owner's prefix
    assert copy["s3_key"].endswith(f"/{copy['id']}/copy_of_orig.txt")
    assert (copy["file_name"], copy["folder"], copy["title"], copy["tags"]) == (
        "copy of orig.txt",
        "dst/sub",
        "T",
        ["a", "b"],
    )
    assert (copy["status"], copy["size"], copy["checksum_sha256"]) == ("complete", len(data), sha256_b64(data))

    info = head(s3, copy["s3_key"])
    assert info["ContentLength"] == len(data) and info["ContentType"] == "text/plain"
    assert info["Metadata"] == {"file-id": copy["id"]}
    assert read(s3, copy["s3_key"]) == data and read(s3, source["s3_key"]) == data
    assert copy["etag"] == info["ETag"].strip('"')
    assert usage(client, auth)["used_bytes"] == 2 * len(data)
    assert usage(client, auth)["reserved_bytes"] == 0
    record = row(app, copy["id"])
    assert record.status == "complete" and record.confirmed_at is not None
    # The copy is an ordinary file: downloadable under its own name, deletable.
    got = download(client, auth, copy["id"])
    assert got.content == data and disposition_name(got.headers["Content-Disposition"]) == "copy of orig.txt"
    assert client.delete(f"/api/files/{copy['id']}", headers=auth).status_code == 200
    assert head(s3, source["s3_key"]) is not None


def test_copy_defaults_to_the_source_name_and_folder(client, auth):
    source = upload(client, auth, "same.txt", b"abc", folder="here")
    copy = client.post(f"/api/files/{source['id']}/copy", json={}, headers=auth).get_json()
    assert (copy["file_name"], copy["folder"]) == ("same.txt", "here")


@pytest.mark.parametrize("app_config", [{"DEFAULT_QUOTA_BYTES": 25}])
def test_copy_over_quota_is_refused_before_s3(client, auth, app, s3):
    source = upload(client, auth, "ten.txt", b"0123456789")
    first = client.post(f"/api/files/{source['id']}/copy", json={}, headers=auth)
    assert first.status_code == 201
    # Pending reservations count: 20 used + 5 reserved leaves 0.
    presign(client, auth, spec("hold.txt", b"12345", "text/plain"))
    response = client.post(f"/api/files/{source['id']}/copy", json={}, headers=auth)
    assert response.status_code == 507 and error_code(response) == "quota_exceeded"
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(File)) == 3
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 2
    assert usage(client, auth)["used_bytes"] == 20


@pytest.mark.parametrize("app_config", [{"DEFAULT_QUOTA_BYTES": 100}])
def test_concurrent_copies_never_exceed_the_quota(app, client, auth, s3):
    source = upload(client, auth, "q.txt", b"q" * 30)
    barrier = threading.Barrier(6)

    def attempt(_):
        local = app.test_client()
        barrier.wait()
        return local.post(f"/api/files/{source['id']}/copy", json={}, headers=auth).status_code

    with ThreadPoolExecutor(6) as pool:
        statuses = sorted(pool.map(attempt, range(6)))
    assert statuses == [201, 201, 507, 507, 507, 507]
    assert usage(client, auth)["used_bytes"] == 90
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 3


def test_copy_refusals(client, auth, app):
    ticket = presign(client, auth, spec("p.txt", b"abc", "text/plain"))["successful"][0]
    response = client.post(f"/api/files/{ticket['id']}/copy", json={}, headers=auth)
    assert response.status_code == 409 and error_code(response) == "invalid_state"
    source = upload(client, auth)
    for body, status, code in (
        ({"file_name": "run.bat"}, 415, "content_type_not_allowed"),
        ({"file_name": "/"}, 422, "validation_error"),
        ({"folder": ".."}, 422, "validation_error"),
        ({"file_name": 5}, 422, "validation_error"),
    ):
        response = client.post(f"/api/files/{source['id']}/copy", json=body, headers=auth)
        assert response.status_code == status and error_code(response) == code, body
    response = client.post("/api/files/" + "x" * 100 + "/copy", json={}, headers=auth)
    assert response.status_code == 404
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(File)) == 2


def test_copy_of_an_object_gone_from_s3_is_object_missing(client, auth, app, s3):
    source = upload(client, auth, "lost.txt", b"abc")
    s3.delete_object(Bucket=BUCKET, Key=source["s3_key"])
    response = client.post(f"/api/files/{source['id']}/copy", json={}, headers=auth)
    assert response.status_code == 409 and error_code(response) == "object_missing"
    with app.app_context():
        statuses = db.session.scalars(select(File.status).where(File.id != source["id"])).all()
    assert statuses == ["aborted"]  # the reservation ended; nothing claims a copy
    assert usage(client, auth) == {"used_bytes": 3, "reserved_bytes": 0, "quota_bytes": 1024**3, "file_count": 1}


# -- multipart copy (threshold lowered so moto can show it) ---------------------------------


@pytest.fixture
def small_multipart_copy(monkeypatch):
    """Copy in parts above 6 MiB, in 5 MiB parts (S3's minimum), instead of above 5 GiB."""
    monkeypatch.setattr(storage_module, "MULTIPART_COPY_THRESHOLD", 6 * MIB)
    monkeypatch.setattr(storage_module, "MULTIPART_COPY_PART_SIZE", 5 * MIB)


def big_payload(size: int) -> bytes:
    block = bytes(range(256)) * 4096  # 1 MiB with a pattern, so misplaced ranges show
    return (block * (size // len(block) + 1))[:size]


def test_multipart_copy_above_threshold(client, auth, app, s3, small_multipart_copy):
    data = big_payload(11 * MIB + 123)
    source = upload(client, auth, "big.bin", data, "application/octet-stream")
    calls = []
    app.extensions["s3drive.storage"].client.meta.events.register(
        "before-call.s3", lambda model, **_: calls.append(model.name)
    )
    response = client.post(f"/api/files/{source['id']}/copy", json={"file_name": "big copy.bin"}, headers=auth)
    assert response.status_code == 201, response.get_json()
    copy = response.get_json()
    assert calls.count("UploadPartCopy") == 3 and "CopyObject" not in calls
    info = head(s3, copy["s3_key"])
    assert info["ContentLength"] == len(data) and info["ETag"].endswith('-3"')
    assert info["ContentType"] == "application/octet-stream" and info["Metadata"] == {"file-id": copy["id"]}
    assert read(s3, copy["s3_key"]) == data
    assert copy["etag"] == info["ETag"].strip('"')
    assert usage(client, auth)["used_bytes"] == 2 * len(data)
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_multipart_tier_change_in_place(client, auth, app, s3, small_multipart_copy):
    data = big_payload(7 * MIB)
    source = upload(client, auth, "big.bin", data, "application/octet-stream")
    response = client.patch(f"/api/files/{source['id']}", json={"tier": "standard_ia"}, headers=auth)
    assert response.status_code == 200, response.get_json()
    info = head(s3, source["s3_key"])
    assert info["StorageClass"] == "STANDARD_IA" and info["ETag"].endswith('-2"')
    assert info["ContentType"] == "application/octet-stream" and info["Metadata"] == {"file-id": source["id"]}
    assert read(s3, source["s3_key"]) == data
    assert row(app, source["id"]).etag == info["ETag"].strip('"')


def _missing_source(params):
    params["CopySource"] = f"{BUCKET}/no/such/key"


def _internal_error(params):
    raise ClientError({"Error": {"Code": "InternalError", "Message": "boom"}}, "UploadPartCopy")


@pytest.mark.parametrize(
    ("break_part", "status", "code"),
    [(_missing_source, 409, "object_missing"), (_internal_error, 503, "storage_unavailable")],
)
def test_failed_multipart_copy_is_aborted(client, auth, app, s3, small_multipart_copy, break_part, status, code):
    data = big_payload(11 * MIB)
    source = upload(client, auth, "big.bin", data, "application/octet-stream")
    events = app.extensions["s3drive.storage"].client.meta.events

    def break_part_two(params, **_):
        if params["PartNumber"] == 2:
            break_part(params)

    events.register("before-parameter-build.s3.UploadPartCopy", break_part_two)
    response = client.post(f"/api/files/{source['id']}/copy", json={}, headers=auth)
    assert response.status_code == status and error_code(response) == code, response.get_json()
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 1
    assert usage(client, auth) == {
        "used_bytes": len(data),
        "reserved_bytes": 0,
        "quota_bytes": 1024**3,
        "file_count": 1,
    }
    with app.app_context():
        assert db.session.scalars(select(File.status).where(File.id != source["id"])).all() == ["aborted"]


def test_copy_part_ranges_cover_the_object_within_10000_parts():
    assert copy_part_ranges(12, 5) == [(1, 0, 4), (2, 5, 9), (3, 10, 11)]
    assert copy_part_ranges(10, 5) == [(1, 0, 4), (2, 5, 9)]
    size = 5 * 1024**4  # 5 TiB, S3's largest object
    ranges = copy_part_ranges(size, 256 * MIB)
    assert len(ranges) <= 10_000 and ranges[-1][2] == size - 1
    assert all(b[1] == a[2] + 1 for a, b in zip(ranges, ranges[1:], strict=False))


# -- storage down ---------------------------------------------------------------------------


@pytest.fixture
def storage_down(app, monkeypatch):
    """Point the app at an S3 endpoint that refuses connections (after the uploads)."""

    def down():
        broken = Storage({**app.config, "S3_ENDPOINT_URL": "http://127.0.0.1:9"})
        monkeypatch.setitem(app.extensions, "s3drive.storage", broken)
        return broken

    return down


def test_storage_failures_change_nothing(client, auth, app, s3, storage_down):
    data = b"precious"
    file = upload(client, auth, "p.txt", data)
    storage_down()
    for response in (
        client.patch(f"/api/files/{file['id']}", json={"tier": "standard_ia", "title": "x"}, headers=auth),
        client.post(f"/api/files/{file['id']}/copy", json={}, headers=auth),
    ):
        assert response.status_code == 503 and error_code(response) == "storage_unavailable"
        assert response.headers["Retry-After"]

    record = row(app, file["id"])
    assert (record.status, record.tier, record.title) == ("complete", "standard", None)
    assert read(s3, file["s3_key"]) == data and head(s3, file["s3_key"]).get("StorageClass", "STANDARD") == "STANDARD"
    assert usage(client, auth) == {
        "used_bytes": len(data),
        "reserved_bytes": 0,
        "quota_bytes": 1024**3,
        "file_count": 1,
    }
    with app.app_context():
        others = db.session.scalars(select(File.status).where(File.id != file["id"])).all()
    assert others == ["aborted"]  # the failed copy's reservation, ended


def test_a_delete_storage_failed_stays_recorded_until_a_retry_or_the_sweeper(client, auth, app, s3, storage_down):
    """The intent is written before S3 is asked: the file is `deleting` (not listed, still counted) whatever
    S3 did; never `complete` without a certain object."""
    data = b"precious"
    file, keep = upload(client, auth, "p.txt", data), upload(client, auth, "k.txt", b"kk")
    real = app.extensions["s3drive.storage"]
    storage_down()
    response = client.delete(f"/api/files/{file['id']}", headers=auth)
    assert response.status_code == 503 and error_code(response) == "storage_unavailable"
    assert response.headers["Retry-After"]
    body = client.post("/api/files/delete", json={"ids": [file["id"]]}, headers=auth).get_json()
    assert body["deleted"] == [] and body["failed"][0]["error"]["code"] == "storage_unavailable"

    assert row(app, file["id"]).status == "deleting"
    assert [item["id"] for item in client.get("/api/files/", headers=auth).get_json()["items"]] == [keep["id"]]
    assert usage(client, auth) == {
        "used_bytes": len(data) + 2,
        "reserved_bytes": 0,
        "quota_bytes": 1024**3,
        "file_count": 1,
    }
    for path in (f"/api/files/{file['id']}/download", f"/api/files/{file['id']}/copy"):
        call = client.get if path.endswith("download") else client.post
        assert call(path, headers=auth, **({} if call is client.get else {"json": {}})).status_code == 409

    app.extensions["s3drive.storage"] = real  # S3 is back: a retry finishes the delete
    again = client.delete(f"/api/files/{file['id']}", headers=auth)
    assert again.status_code == 200 and again.get_json() == {"id": file["id"], "status": "deleted"}
    assert head(s3, file["s3_key"]) is None and row(app, file["id"]).status == "deleted"
    assert usage(client, auth)["used_bytes"] == 2


def test_the_sweeper_finishes_deletes_left_behind(client, auth, app, s3, storage_down):
    files = [upload(client, auth, f"{i}.txt", b"x" * (i + 1)) for i in range(3)]
    real = app.extensions["s3drive.storage"]
    storage_down()
    body = client.post("/api/files/delete", json={"ids": [f["id"] for f in files]}, headers=auth).get_json()
    assert len(body["failed"]) == 3
    app.extensions["s3drive.storage"] = real
    with app.app_context():
        counts = sweeper.sweep()
        assert (counts.deletes_finished, counts.errors) == (3, 0)
        assert sweeper.sweep().deletes_finished == 0  # finished once
    for file in files:
        assert head(s3, file["s3_key"]) is None and row(app, file["id"]).status == "deleted"
    assert usage(client, auth)["used_bytes"] == 0
    with app.app_context():
        assert db.session.scalar(select(User.used_bytes)) == 0


# -- isolation and the contract -------------------------------------------------------------


def test_other_users_get_not_found_on_every_route(client, auth, other_auth, app, s3):
    data = b"alice's secret"
    file = upload(client, auth, "mine.txt", data)
    fid = file["id"]
    for response in (
        client.patch(f"/api/files/{fid}", json={"file_name": "pwned.txt"}, headers=other_auth),
        client.patch(f"/api/files/{fid}", json={"tier": "glacier"}, headers=other_auth),
        client.delete(f"/api/files/{fid}", headers=other_auth),
        client.get(f"/api/files/{fid}/download", headers=other_auth),
        client.get(f"/api/files/{fid}/download?redirect=1", headers=other_auth),
        client.post(f"/api/files/{fid}/copy", json={}, headers=other_auth),
    ):
        assert response.status_code == 404 and error_code(response) == "not_found"
    body = client.post("/api/files/delete", json={"ids": [fid]}, headers=other_auth).get_json()
    assert body == {
        "deleted": [],
        "failed": [{"id": fid, "error": {"code": "not_found", "message": "No such file.", "details": {}}}],
    }

    record = row(app, fid)
    assert (record.file_name, record.tier, record.status) == ("mine.txt", "standard", "complete")
    assert read(s3, file["s3_key"]) == data
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 1
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(File)) == 1
    assert usage(client, other_auth)["used_bytes"] == 0


def test_routes_need_a_token(client, auth):
    file = upload(client, auth)
    fid = file["id"]
    for response in (
        client.patch(f"/api/files/{fid}", json={"title": "x"}),
        client.delete(f"/api/files/{fid}"),
        client.post("/api/files/delete", json={"ids": [fid]}),
        client.get(f"/api/files/{fid}/download"),
        client.post(f"/api/files/{fid}/copy", json={}),
    ):
        assert response.status_code == 401 and error_code(response) == "unauthorized"


def test_openapi_documents_the_routes(client):
    paths = client.get("/openapi.json").get_json()["paths"]
    assert {"get", "patch", "delete"} <= set(paths["/api/files/{file_id}"])
    assert "post" in paths["/api/files/delete"]
    assert "302" in paths["/api/files/{file_id}/download"]["get"]["responses"]
    assert "201" in paths["/api/files/{file_id}/copy"]["post"]["responses"]


def test_disabled_user_cannot_manage(client, app):
    # Disabled straight in the database: seen at once only by a process that asks every time
    # (test_auth_cache.py tests the bound of the default).
    app.config["AUTH_CACHE_SECONDS"] = 0
    headers = register_and_login(client, "bob")
    file = upload(client, headers)
    with app.app_context():
        db.session.execute(User.__table__.update().values(is_active=False))
        db.session.commit()
    assert client.delete(f"/api/files/{file['id']}", headers=headers).status_code == 401
