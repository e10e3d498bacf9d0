"""End to end against MiniStack (AUTH=true): what moto in-process cannot show.

MiniStack checks SigV4 like AWS, so these tests prove that the download URL, with its
signed response-content-disposition, is accepted as signed and refused when altered,
and that copies, tier changes and deletes work against a store that verifies requests.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
import requests
from conftest import empty_tables, register_and_login
from live import head_or_none, s3_app
from s3servers import ministack_server
from werkzeug.http import parse_options_header

from s3drive import storage as storage_module
from s3drive.app import close_app
from s3drive.dev import ministack as dev_s3

pytestmark = pytest.mark.e2e

MIB = 1024**2


@pytest.fixture(scope="module")
def ministack(tmp_path_factory) -> Iterator[str]:
    with ministack_server(tmp_path_factory.mktemp("ministack")) as url:
        yield url


@pytest.fixture
def s3(ministack):
    client = dev_s3.s3_client(ministack)
    client.bucket = f"s3drive-manage-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=client.bucket)
    return client


@pytest.fixture
def app(database_url, ministack, s3):
    # conftest sets the credentials test/test, which MiniStack's AUTH mode accepts.
    app = s3_app(database_url, ministack, s3.bucket, confirm="list")
    empty_tables(app)
    yield app
    close_app(app)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def auth(client):
    return register_and_login(client, "erin")


def upload(client, auth, name: str, data: bytes, content_type: str = "text/plain") -> dict:
    response = client.post(
        "/api/files/upload/",
        json={"file_name": name, "content_type": content_type, "file_size": len(data)},
        headers=auth,
    )
    ticket = response.get_json()
    put = requests.put(ticket["presigned_url"], data=data, headers=ticket["headers"], timeout=30)
    assert put.status_code == 200, put.text
    confirmed = client.post("/api/files/confirm_upload/", json={"id": ticket["id"]}, headers=auth)
    assert confirmed.status_code == 200, confirmed.get_json()
    return confirmed.get_json()["file"]


def head(s3, key: str) -> dict | None:
    return head_or_none(s3, s3.bucket, key)


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def test_signed_download_names_the_file_and_cannot_be_altered(client, auth):
    data = "ünïcode bytes\n".encode() * 50
    file = upload(client, auth, "plain.txt", data)
    renamed = client.patch(f"/api/files/{file['id']}", json={"file_name": 'Straße "β"\r\n.txt'}, headers=auth)
    assert renamed.status_code == 200
    name = renamed.get_json()["file_name"]
    assert name == 'Straße "β".txt'

    url = client.get(f"/api/files/{file['id']}/download", headers=auth).get_json()["url"]
    got = requests.get(url, timeout=30)
    assert got.status_code == 200 and got.content == data
    header = got.headers["Content-Disposition"]
    assert header.isascii() and header.startswith('attachment; filename="Strae __.txt"')
    assert parse_options_header(header) == ("attachment", {"filename": name})

    # The disposition is part of the signature: a changed one is refused.
    forged = with_query(url, **{"response-content-disposition": 'attachment; filename="evil.html"'})
    assert requests.get(forged, timeout=30).status_code == 403

    redirected = client.get(f"/api/files/{file['id']}/download?redirect=1&disposition=inline", headers=auth)
    assert redirected.status_code == 302
    got = requests.get(redirected.headers["Location"], timeout=30)
    assert got.status_code == 200 and got.headers["Content-Disposition"].startswith("inline;")


def test_copy_tier_and_delete_against_a_verifying_store(client, auth, s3):
    data = b"copy me " * 1000
    file = upload(client, auth, "src.txt", data)
    copy = client.post(f"/api/files/{file['id']}/copy", json={"file_name": "dst.txt"}, headers=auth)
    assert copy.status_code == 201, copy.get_json()
    copy = copy.get_json()
    info = head(s3, copy["s3_key"])
    assert info["ContentLength"] == len(data) and info["ContentType"] == "text/plain"
    assert info["Metadata"] == {"file-id": copy["id"]}
    assert s3.get_object(Bucket=s3.bucket, Key=copy["s3_key"])["Body"].read() == data

    changed = client.patch(f"/api/files/{file['id']}", json={"tier": "standard_ia"}, headers=auth)
    assert changed.status_code == 200, changed.get_json()
    info = head(s3, file["s3_key"])
    assert info.get("StorageClass") == "STANDARD_IA" and info["Metadata"] == {"file-id": file["id"]}

    body = client.post("/api/files/delete", json={"ids": [file["id"], copy["id"]]}, headers=auth).get_json()
    assert body == {"deleted": [file["id"], copy["id"]], "failed": []}
    assert head(s3, file["s3_key"]) is None and head(s3, copy["s3_key"]) is None
    assert client.get("/api/files/usage", headers=auth).get_json()["used_bytes"] == 0


def test_multipart_copy_against_a_verifying_store(client, auth, s3, monkeypatch):
    monkeypatch.setattr(storage_module, "MULTIPART_COPY_THRESHOLD", 6 * MIB)
    monkeypatch.setattr(storage_module, "MULTIPART_COPY_PART_SIZE", 5 * MIB)
    data = (bytes(range(256)) * 4096 * 12)[: 11 * MIB + 7]
    file = upload(client, auth, "big.bin", data, "application/octet-stream")
    copy = client.post(f"/api/files/{file['id']}/copy", json={}, headers=auth)
    assert copy.status_code == 201, copy.get_json()
    copy = copy.get_json()
    info = head(s3, copy["s3_key"])
    assert info["ContentLength"] == len(data) and info["Metadata"] == {"file-id": copy["id"]}
    assert s3.get_object(Bucket=s3.bucket, Key=copy["s3_key"])["Body"].read() == data
