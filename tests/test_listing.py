"""Listing: real uploads listed, keyset pages under concurrent writes, search, tags, folders, errors."""

from __future__ import annotations

import base64
import json
import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from conftest import BUCKET
from helpers import presign, put_bytes, spec
from sqlalchemy import delete, insert

from s3drive.cursors import encode_cursor
from s3drive.extensions import db
from s3drive.models import File
from s3drive.schemas import FileSchema
from s3drive.services import listing

BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)
SORTS = ["created_at", "-created_at", "file_name", "-file_name", "size", "-size"]


def user_id(client, auth) -> str:
    return client.get("/api/auth/me", headers=auth).get_json()["id"]


def file_row(owner: str, **values) -> dict:
    """Return a full files row for bulk_insert; `values` override the defaults."""
    file_id = str(uuid.uuid4())
    row = {
        "id": file_id,
        "user_id": owner,
        "batch_id": file_id,
        "file_name": "file.txt",
        "s3_key": f"users/{owner}/b/{file_id}/file.txt",
        "content_type": "text/plain",
        "size": 1,
        "checksum_sha256": None,
        "tier": "standard",
        "title": None,
        "description": None,
        "tags": [],
        "folder": "",
        "status": "complete",
        "method": "PUT",
        "created_at": BASE_TIME,
        "expires_at": None,
        "confirmed_at": BASE_TIME,
    }
    row.update(values)
    return row


def insert_rows(app, rows: list[dict]) -> None:
    # A Core executemany, so every value goes through its column type as the app's own writes do.
    with app.app_context():
        db.session.execute(insert(File), rows)
        db.session.commit()


def delete_rows(app, ids) -> None:
    with app.app_context():
        db.session.execute(delete(File).where(File.id.in_(list(ids))))
        db.session.commit()


def list_files(client, auth, **params) -> dict:
    response = client.get("/api/files/", query_string=params, headers=auth)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def names(body: dict) -> list[str]:
    return sorted(item["file_name"] for item in body["items"])


def upload_and_confirm(client, auth, *specs_and_data: tuple[dict, bytes]) -> list[dict]:
    """Presign, PUT the bytes to S3, confirm; return the tickets."""
    tickets = presign(client, auth, *(s for s, _ in specs_and_data))["successful"]
    assert len(tickets) == len(specs_and_data)
    for ticket, (_, data) in zip(tickets, specs_and_data, strict=True):
        assert put_bytes(ticket, data).status_code == 200
    confirmed = client.post("/api/files/confirm_uploads/", json={"ids": [t["id"] for t in tickets]}, headers=auth)
    assert confirmed.get_json()["total_successful"] == len(tickets), confirmed.get_json()
    return tickets


# -- real uploads ---------------------------------------------------------------------


def test_lists_confirmed_uploads_with_the_file_shape(client, auth, s3):
    uploads = [
        (spec("b.txt", b"bb", "text/plain", title="Second", tags="x, Y", folder="docs"), b"bb"),
        (spec("a.jpg", b"aaaa", tier="standard_ia", description="first"), b"aaaa"),
    ]
    tickets = upload_and_confirm(client, auth, *uploads)
    pending = presign(client, auth, spec("later.jpg"))["successful"][0]  # presigned, never uploaded

    body = list_files(client, auth)
    assert body["next_cursor"] is None and body["folders"] is None
    assert {item["id"] for item in body["items"]} == {t["id"] for t in tickets}
    by_name = {item["file_name"]: item for item in body["items"]}
    assert set(by_name["b.txt"]) == set(FileSchema().fields)
    assert by_name["b.txt"] | {"created_at": None, "confirmed_at": None, "etag": None} == {
        "id": tickets[0]["id"],
        "file_name": "b.txt",
        "s3_key": tickets[0]["s3_key"],
        "content_type": "text/plain",
        "size": 2,
        "checksum_sha256": None,
        "tier": "standard",
        "title": "Second",
        "description": None,
        "tags": ["x", "y"],
        "folder": "docs",
        "profile": "default",
        "status": "complete",
        "created_at": None,
        "confirmed_at": None,
        "etag": None,
        "inspection": None,  # inspection is off in these tests
    }
    assert by_name["a.jpg"]["tier"] == "standard_ia" and by_name["a.jpg"]["description"] == "first"
    for item in body["items"]:
        assert item["created_at"].endswith("Z") and item["confirmed_at"].endswith("Z") and item["etag"]
        head = s3.head_object(Bucket=BUCKET, Key=item["s3_key"])
        assert head["ContentLength"] == item["size"]

    # Same answer as the single-record route, field for field.
    assert client.get(f"/api/files/{tickets[0]['id']}", headers=auth).get_json() == by_name["b.txt"]

    # The unconfirmed upload is listed only under its own status.
    assert [item["id"] for item in list_files(client, auth, status="pending")["items"]] == [pending["id"]]
    assert list_files(client, auth, status="rejected")["items"] == []


def test_default_limit_is_50_and_limit_1000_is_allowed(client, auth, app):
    owner = user_id(client, auth)
    insert_rows(
        app, [file_row(owner, file_name=f"f{i:03d}.txt", created_at=BASE_TIME + timedelta(i)) for i in range(60)]
    )
    first = list_files(client, auth)
    assert len(first["items"]) == 50 and first["next_cursor"]
    assert [i["file_name"] for i in first["items"]] == [f"f{i:03d}.txt" for i in range(59, 9, -1)]
    rest = list_files(client, auth, cursor=first["next_cursor"])
    assert [i["file_name"] for i in rest["items"]] == [f"f{i:03d}.txt" for i in range(9, -1, -1)]
    assert rest["next_cursor"] is None
    assert len(list_files(client, auth, limit=1000)["items"]) == 60


# -- keyset pagination under writes ---------------------------------------------------


def sort_key(item: dict, sort: str):
    name = sort.lstrip("-")
    return (item[name], item["id"])


@pytest.mark.parametrize("sort", SORTS)
def test_pagination_over_2500_files_with_inserts_and_deletes_between_pages(client, auth, other_auth, app, sort):
    rng = random.Random(sort)
    owner, other = user_id(client, auth), user_id(client, other_auth)

    def random_row(owner_id: str, **values) -> dict:
        # Few distinct keys, so that many rows tie on the sort key and the id must break the tie.
        return file_row(
            owner_id,
            file_name=f"doc-{rng.randrange(400):04d}.txt",
            size=rng.randrange(50),
            created_at=BASE_TIME + timedelta(seconds=rng.randrange(300)),
            **values,
        )

    original = [random_row(owner) for _ in range(2500)]
    noise = [random_row(other) for _ in range(300)] + [random_row(owner, status="pending") for _ in range(200)]
    insert_rows(app, original + noise)

    alive = {row["id"] for row in original}  # rows that exist from start to end
    inserted: set[str] = set()
    seen: list[dict] = []
    cursor = None
    pages = 0
    while True:
        body = list_files(client, auth, sort=sort, limit=100, **({"cursor": cursor} if cursor else {}))
        seen.extend(body["items"])
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
        # Between pages: new files land before and after the cursor, and files not yet seen
        # as well as files already seen are deleted.
        new_rows = [random_row(owner) for _ in range(15)]
        insert_rows(app, new_rows)
        inserted |= {row["id"] for row in new_rows}
        doomed = rng.sample(sorted(alive), 10)
        delete_rows(app, doomed)
        alive -= set(doomed)

    ids = [item["id"] for item in seen]
    assert len(ids) == len(set(ids)), "a file was listed twice"
    assert alive <= set(ids), f"{len(alive - set(ids))} files that existed throughout were skipped"
    assert set(ids) <= {row["id"] for row in original} | inserted  # never another user's, never pending
    keys = [sort_key(item, sort) for item in seen]
    assert keys == sorted(keys, reverse=sort.startswith("-"))
    assert pages >= 25


def test_created_at_cursor_keeps_sub_second_order(client, auth, app):
    """Microseconds survive the cursor: rows 1 µs apart on both sides of a page boundary."""
    owner = user_id(client, auth)
    rows = [file_row(owner, file_name=f"m{i}.txt", created_at=BASE_TIME + timedelta(microseconds=i)) for i in range(7)]
    insert_rows(app, rows)
    for sort in ("created_at", "-created_at"):
        seen, cursor = [], None
        while True:
            body = list_files(client, auth, sort=sort, limit=2, **({"cursor": cursor} if cursor else {}))
            seen += [item["file_name"] for item in body["items"]]
            if not (cursor := body["next_cursor"]):
                break
        expected = [f"m{i}.txt" for i in range(7)]
        assert seen == (expected[::-1] if sort.startswith("-") else expected)


# -- search and tags ------------------------------------------------------------------


def test_q_matches_name_and_title_case_insensitively_with_literal_wildcards(client, auth, other_auth, app):
    owner = user_id(client, auth)
    insert_rows(
        app,
        [
            file_row(owner, file_name="Holiday-Photos.jpg"),
            file_row(owner, file_name="notes.txt", title="Trip to the HOLIDAY inn"),
            file_row(owner, file_name="Ärger_im_Büro.pdf"),
            file_row(owner, file_name="report.pdf", title="ÉCOLE d'été"),
            file_row(owner, file_name="100%_done.txt"),
            file_row(owner, file_name="100x done.txt"),
            file_row(owner, file_name="a_b.txt"),
            file_row(owner, file_name="axb.txt"),
            file_row(owner, file_name="quote.txt", title="it's a \\ backslash"),
            file_row(owner, file_name="holiday-draft.jpg", status="pending"),
        ],
    )
    # Mallory has a matching file too; it must never show.
    insert_rows(app, [file_row(user_id(client, other_auth), file_name="holiday-mallory.jpg")])

    assert names(list_files(client, auth, q="holiday")) == ["Holiday-Photos.jpg", "notes.txt"]
    assert names(list_files(client, auth, q="HoLiDaY")) == ["Holiday-Photos.jpg", "notes.txt"]
    assert names(list_files(client, auth, q="ärger")) == ["Ärger_im_Büro.pdf"]
    assert names(list_files(client, auth, q="BÜRO")) == ["Ärger_im_Büro.pdf"]
    assert names(list_files(client, auth, q="école D'ÉTÉ")) == ["report.pdf"]
    # Decomposed input (e + combining accent) finds the composed title.
    assert names(list_files(client, auth, q="e\u0301cole")) == ["report.pdf"]
    assert names(list_files(client, auth, q="%")) == ["100%_done.txt"]
    assert names(list_files(client, auth, q="0%_d")) == ["100%_done.txt"]
    assert names(list_files(client, auth, q="a_b")) == ["a_b.txt"]
    assert names(list_files(client, auth, q="_")) == ["100%_done.txt", "a_b.txt", "Ärger_im_Büro.pdf"]
    assert names(list_files(client, auth, q="it's a \\")) == ["quote.txt"]
    assert names(list_files(client, auth, q="nothing like this")) == []
    assert names(list_files(client, auth, q="holiday", status="pending")) == ["holiday-draft.jpg"]
    assert len(list_files(client, auth, q="")["items"]) == 9  # an empty q filters nothing


def test_q_search_pages_with_cursors(client, auth, app):
    owner = user_id(client, auth)
    rows = [file_row(owner, file_name=f"{'match' if i % 3 == 0 else 'other'}-{i:03d}.txt") for i in range(90)]
    insert_rows(app, rows)
    seen, cursor = [], None
    while True:
        body = list_files(client, auth, q="MATCH", sort="file_name", limit=7, **({"cursor": cursor} if cursor else {}))
        seen += [item["file_name"] for item in body["items"]]
        if not (cursor := body["next_cursor"]):
            break
    assert seen == [f"match-{i:03d}.txt" for i in range(0, 90, 3)]


def test_tag_filter_matches_whole_tags_only(client, auth, other_auth, s3):
    uploads = [
        (spec("only-a.txt", b"1", "text/plain", tags=["a"]), b"1"),
        (spec("only-ab.txt", b"2", "text/plain", tags=["ab"]), b"2"),
        (spec("b-and-A.txt", b"3", "text/plain", tags="b, A"), b"3"),
        (spec("umlaut.txt", b"4", "text/plain", tags=["Ärger", 'x"y']), b"4"),
        (spec("none.txt", b"5", "text/plain"), b"5"),
    ]
    upload_and_confirm(client, auth, *uploads)
    upload_and_confirm(client, other_auth, (spec("mallory-a.txt", b"6", "text/plain", tags=["a"]), b"6"))

    assert names(list_files(client, auth, tag="a")) == ["b-and-A.txt", "only-a.txt"]
    assert names(list_files(client, auth, tag=" A ")) == ["b-and-A.txt", "only-a.txt"]
    assert names(list_files(client, auth, tag="ab")) == ["only-ab.txt"]
    assert names(list_files(client, auth, tag="b")) == ["b-and-A.txt"]
    assert names(list_files(client, auth, tag="ärger")) == ["umlaut.txt"]
    assert names(list_files(client, auth, tag='x"y')) == ["umlaut.txt"]
    assert names(list_files(client, auth, tag='"a"')) == []
    assert names(list_files(client, auth, tag="%")) == []
    assert names(list_files(client, auth, tag="a", q="only")) == ["only-a.txt"]
    assert len(list_files(client, auth, tag="")["items"]) == 5


# -- folders --------------------------------------------------------------------------


@pytest.fixture
def folder_tree(client, auth, other_auth, app):
    owner = user_id(client, auth)
    paths = {
        "root.txt": "",
        "p1.jpg": "photos",
        "p2.jpg": "photos/2026",
        "p3.jpg": "photos/2026/june",
        "p4.jpg": "photos/2025",
        "old.jpg": "photos-old",
        "bang.jpg": "photos!",
        "space.txt": "docs/a b",
        "deep.txt": "docs/x/y/z",
        "umlaut.txt": "Ärger/ü",
    }
    rows = [file_row(owner, file_name=name, folder=folder) for name, folder in paths.items()]
    rows.append(file_row(owner, file_name="pending.jpg", folder="drafts/new", status="pending"))
    rows.append(file_row(user_id(client, other_auth), file_name="mallory.jpg", folder="secret/plans"))
    insert_rows(app, rows)
    return paths


def test_folder_lists_its_files_and_direct_subfolders(client, auth, folder_tree):
    root = list_files(client, auth, folder="")
    assert names(root) == ["root.txt"]
    assert root["folders"] == ["docs", "photos", "photos!", "photos-old", "Ärger"]

    photos = list_files(client, auth, folder="photos")
    assert names(photos) == ["p1.jpg"] and photos["folders"] == ["2025", "2026"]
    assert list_files(client, auth, folder="/photos//2026/")["folders"] == ["june"]
    assert names(list_files(client, auth, folder="photos/2026")) == ["p2.jpg"]
    leaf = list_files(client, auth, folder="photos/2026/june")
    assert names(leaf) == ["p3.jpg"] and leaf["folders"] == []
    assert list_files(client, auth, folder="docs")["folders"] == ["a b", "x"]
    assert list_files(client, auth, folder="docs/x")["folders"] == ["y"]
    assert names(list_files(client, auth, folder="docs/a b")) == ["space.txt"]
    assert list_files(client, auth, folder="Ärger")["folders"] == ["ü"]
    empty = list_files(client, auth, folder="nowhere")
    assert empty == {"items": [], "next_cursor": None, "folders": []}

    # Without `folder`: every file, flat, and no folder list.
    everything = list_files(client, auth)
    assert names(everything) == sorted(folder_tree) and everything["folders"] is None
    # Folders of other statuses show under that status only.
    assert list_files(client, auth, folder="", status="pending")["folders"] == ["drafts"]


def test_subfolders_fall_back_past_the_walk_limit(client, auth, folder_tree, monkeypatch):
    expected = {folder: list_files(client, auth, folder=folder)["folders"] for folder in ("", "photos", "docs")}
    monkeypatch.setattr(listing, "_MAX_WALK_STEPS", 2)
    assert {folder: list_files(client, auth, folder=folder)["folders"] for folder in expected} == expected


def test_folder_with_many_subfolders(client, auth, app):
    owner = user_id(client, auth)
    rows = [file_row(owner, folder=f"big/{i:04d}/inner/{j}") for i in range(300) for j in range(3)]
    rows += [file_row(owner, folder=f"big/{i:04d}") for i in range(0, 300, 7)]
    insert_rows(app, rows)
    assert list_files(client, auth, folder="big")["folders"] == [f"{i:04d}" for i in range(300)]
    assert list_files(client, auth, folder="big/0007")["folders"] == ["inner"]
    assert list_files(client, auth, folder="big/0007/inner")["folders"] == ["0", "1", "2"]


# -- isolation and errors -------------------------------------------------------------


def test_another_users_files_never_appear(client, auth, other_auth, app):
    owner, other = user_id(client, auth), user_id(client, other_auth)
    mine = [file_row(owner, file_name=f"shared-{i}.txt", tags=["t"], folder="f") for i in range(5)]
    theirs = [file_row(other, file_name=f"shared-{i}.txt", tags=["t"], folder="f") for i in range(5)]
    insert_rows(app, mine + theirs)
    for params in ({}, {"q": "shared"}, {"tag": "t"}, {"folder": "f"}, {"folder": ""}, {"sort": "file_name"}):
        body = list_files(client, auth, limit=2, **params)
        got = {item["id"] for item in body["items"]}
        while body["next_cursor"]:
            body = list_files(client, auth, limit=2, cursor=body["next_cursor"], **params)
            got |= {item["id"] for item in body["items"]}
        assert got <= {row["id"] for row in mine}, params
        theirs_body = list_files(client, other_auth, limit=100, **params)
        assert {item["id"] for item in theirs_body["items"]} <= {row["id"] for row in theirs}, params


def test_a_cursor_only_works_for_its_user(client, auth, other_auth, app):
    owner = user_id(client, auth)
    insert_rows(app, [file_row(owner, file_name=f"{i}.txt") for i in range(3)])
    cursor = list_files(client, auth, limit=1)["next_cursor"]
    response = client.get("/api/files/", query_string={"cursor": cursor}, headers=other_auth)
    assert response.status_code == 422 and response.get_json()["error"]["details"] == {
        "cursor": ["Not a valid cursor."]
    }


def test_listing_needs_a_token(client):
    response = client.get("/api/files/")
    assert response.status_code == 401 and response.get_json()["error"]["code"] == "unauthorized"


BAD_PARAMETERS = [
    ({"status": "bogus"}, "status"),
    ({"status": ""}, "status"),
    ({"sort": "name"}, "sort"),
    ({"sort": "--size"}, "sort"),
    ({"limit": "0"}, "limit"),
    ({"limit": "1001"}, "limit"),
    ({"limit": "ten"}, "limit"),
    ({"limit": "1.5"}, "limit"),
    ({"q": "x" * 201}, "q"),
    ({"folder": "a/../b"}, "folder"),
    ({"tag": "t" * 300}, "tag"),
    ({"tag": "t" * 100}, "tag"),  # longer than a tag may be
    ({"cursor": "not-a-cursor"}, "cursor"),
    ({"cursor": "%%%"}, "cursor"),
    ({"cursor": "é"}, "cursor"),
    ({"cursor": "A" * 3000}, "cursor"),
    ({"cursor": base64.urlsafe_b64encode(b'["-created_at","2026-01-01T00:00:00+00:00","x"]').decode()}, "cursor"),
]


def test_bad_parameters_are_422(client, auth):
    for params, field in BAD_PARAMETERS:
        response = client.get("/api/files/", query_string=params, headers=auth)
        assert response.status_code == 422, (params, response.get_json())
        error = response.get_json()["error"]
        assert error["code"] == "validation_error" and field in error["details"], params


def test_forged_cursors_are_422(client, auth, app):
    owner = user_id(client, auth)
    insert_rows(app, [file_row(owner, file_name=f"{i}.txt", size=i) for i in range(3)])
    cursor = list_files(client, auth, limit=1, sort="size")["next_cursor"]
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    payload, mac = raw[:-16], raw[-16:]
    assert json.loads(payload)[0] == "size"  # opaque to clients, but it is our JSON

    moved = payload.replace(b'"size",0', b'"size",2')
    assert moved != payload
    forged = [
        moved + mac,  # changed position, old MAC
        payload + bytes(16),  # zeroed MAC
        payload + mac[:-1],  # truncated
        raw[:10],
    ]
    for blob in forged:
        token = base64.urlsafe_b64encode(blob).rstrip(b"=").decode()
        response = client.get("/api/files/", query_string={"cursor": token, "sort": "size"}, headers=auth)
        assert response.status_code == 422 and response.get_json()["error"]["code"] == "validation_error"

    # A valid cursor used with another sort.
    response = client.get("/api/files/", query_string={"cursor": cursor, "sort": "-size"}, headers=auth)
    assert response.status_code == 422 and "cursor" in response.get_json()["error"]["details"]
    # The genuine one still works.
    assert list_files(client, auth, cursor=cursor, sort="size", limit=1)["items"][0]["size"] == 1


BAD_CURSOR_KEYS = [
    ("-created_at", "yesterday"),
    ("-created_at", "2026-01-01T00:00:00"),  # no zone
    ("-created_at", 5),
    ("size", -1),
    ("size", 2**63),
    ("size", True),
    ("size", "12"),
    ("file_name", None),
    ("file_name", "nul\x00byte"),
    ("file_name", "x" * 2000),
]


def test_signed_cursor_with_bad_values_is_422_not_500(client, auth, app):
    """Even a correctly signed cursor (say, a future format) is checked value by value."""
    owner = user_id(client, auth)
    for sort, key in BAD_CURSOR_KEYS:
        with app.test_request_context():
            token = encode_cursor([sort, key, str(uuid.uuid4())], listing.cursor_scope(owner))
        response = client.get("/api/files/", query_string={"cursor": token, "sort": sort}, headers=auth)
        assert response.status_code == 422, (sort, key, response.get_json())
        assert response.get_json()["error"]["code"] == "validation_error"


def test_signed_cursor_with_a_bad_shape_is_422(client, auth, app):
    owner = user_id(client, auth)
    for value in ([], ["size", 1], {"a": 1}, "text", ["size", 1, 2], ["size", 1, "id", "extra"]):
        with app.test_request_context():
            token = encode_cursor(value, listing.cursor_scope(owner))
        response = client.get("/api/files/", query_string={"cursor": token, "sort": "size"}, headers=auth)
        assert response.status_code == 422, (value, response.get_json())


def test_openapi_documents_the_listing(client):
    spec_doc = client.get("/openapi.json").get_json()
    operation = spec_doc["paths"]["/api/files/"]["get"]
    params = {p["name"] for p in operation["parameters"]}
    assert {"status", "folder", "q", "tag", "sort", "limit", "cursor"} <= params
    assert operation["security"] == [{"bearerAuth": []}]
    schema_ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    listed = spec_doc["components"]["schemas"][schema_ref.rsplit("/", 1)[1]]["properties"]
    assert {"items", "next_cursor", "folders"} <= set(listed)
