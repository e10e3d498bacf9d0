"""Folders: made empty, listed, renamed or moved with what they hold, deleted when empty; files moved
in bulk. Every file is uploaded for real (presign, PUT to S3, confirm); moving never touches S3."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from conftest import BUCKET, register_and_login
from helpers import upload

from s3drive.extensions import db
from s3drive.models import File, Folder


def folders_in(client, auth, folder: str = "") -> list[str]:
    """The subfolder names the listing shows under folder."""
    answer = client.get("/api/files/", query_string={"folder": folder}, headers=auth)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["folders"]


def names_in(client, auth, folder: str) -> list[str]:
    answer = client.get("/api/files/", query_string={"folder": folder, "sort": "file_name"}, headers=auth)
    return [item["file_name"] for item in answer.get_json()["items"]]


def make(client, auth, path: str):
    return client.post("/api/folders", json={"path": path}, headers=auth)


def test_an_empty_folder_is_kept_and_listed_with_its_parents(client, auth):
    created = make(client, auth, " photos//2026/ ")
    assert created.status_code == 201 and created.get_json() == {"path": "photos/2026"}
    again = make(client, auth, "photos/2026")
    assert again.status_code == 200 and again.get_json() == {"path": "photos/2026"}
    assert folders_in(client, auth) == ["photos"]
    assert folders_in(client, auth, "photos") == ["2026"]
    assert folders_in(client, auth, "photos/2026") == []
    # A folder that holds files exists without a row; making it again changes nothing.
    upload(client, auth, "a.txt", b"aaa", folder="docs")
    assert make(client, auth, "docs").status_code == 200
    assert folders_in(client, auth) == ["docs", "photos"]


def test_renaming_a_folder_moves_its_files_and_subfolders_not_their_objects(client, auth, s3):
    top = upload(client, auth, "top.txt", b"top", folder="work")
    deep = upload(client, auth, "deep.txt", b"deep", folder="work/2026/q1")
    other = upload(client, auth, "other.txt", b"other", folder="workshop")  # shares the prefix, not the folder
    assert make(client, auth, "work/empty").status_code == 201

    moved = client.patch("/api/folders/work", json={"new_path": "archive/old work"}, headers=auth)
    assert moved.status_code == 200, moved.get_json()
    assert moved.get_json() == {"path": "archive/old work", "files_moved": 2}
    assert names_in(client, auth, "archive/old work") == ["top.txt"]
    assert names_in(client, auth, "archive/old work/2026/q1") == ["deep.txt"]
    assert folders_in(client, auth, "archive/old work") == ["2026", "empty"]
    assert names_in(client, auth, "workshop") == ["other.txt"]
    assert "work" not in folders_in(client, auth)
    # Keys do not hold folders: the objects stay where they are, bytes and all.
    for record, data in ((top, b"top"), (deep, b"deep"), (other, b"other")):
        assert s3.get_object(Bucket=BUCKET, Key=record["s3_key"])["Body"].read() == data
        assert client.get(f"/api/files/{record['id']}", headers=auth).get_json()["s3_key"] == record["s3_key"]


def test_moving_into_an_existing_folder_merges(client, auth):
    upload(client, auth, "a.txt", b"a", folder="inbox/sub")
    upload(client, auth, "b.txt", b"b", folder="keep/sub")
    assert make(client, auth, "inbox/sub/empty").status_code == 201
    assert make(client, auth, "keep/sub/empty").status_code == 201
    moved = client.patch("/api/folders/inbox", json={"new_path": "keep"}, headers=auth)
    assert moved.status_code == 200 and moved.get_json()["files_moved"] == 1
    assert names_in(client, auth, "keep/sub") == ["a.txt", "b.txt"]
    assert folders_in(client, auth, "keep/sub") == ["empty"]
    assert folders_in(client, auth) == ["keep"]


def test_moving_up_into_a_parent_keeps_every_made_folder(client, auth, app):
    for path in ("a/b", "a/b/b", "a/b/b/c"):
        assert make(client, auth, path).status_code == 201
    assert client.patch("/api/folders/a/b", json={"new_path": "a"}, headers=auth).status_code == 200
    with app.app_context():
        paths = sorted(db.session.scalars(db.select(Folder.path)))
    assert paths == ["a", "a/b", "a/b/c"]


def test_bad_folder_moves_are_refused(client, auth):
    upload(client, auth, "a.txt", b"a", folder="tree")
    cases = [
        ("/api/folders/tree", {"new_path": "tree/inside"}, 422, "validation_error"),
        ("/api/folders/tree", {"new_path": "../up"}, 422, "validation_error"),
        ("/api/folders/tree", {"new_path": "/"}, 422, "validation_error"),
        ("/api/folders/tree", {"new_path": "x" * 1025}, 422, "validation_error"),
        ("/api/folders/tree", {"new_path": 7}, 422, "validation_error"),
        ("/api/folders/tree", {}, 422, "validation_error"),
        ("/api/folders/nowhere", {"new_path": "else"}, 404, "not_found"),
    ]
    for path, body, status, code in cases:
        answer = client.patch(path, json=body, headers=auth)
        assert (answer.status_code, answer.get_json()["error"]["code"]) == (status, code), (path, body)
    assert names_in(client, auth, "tree") == ["a.txt"]
    for body in ({"path": ""}, {"path": "/"}, {"path": "a/../b"}, {"path": None}, {}):
        answer = client.post("/api/folders", json=body, headers=auth)
        assert answer.status_code == 422, body
        assert answer.get_json()["error"]["code"] == "validation_error"


def test_a_folder_is_deleted_only_when_empty(client, auth):
    record = upload(client, auth, "a.txt", b"a", folder="full/inner")
    assert make(client, auth, "full/empty").status_code == 201
    refused = client.delete("/api/folders/full", headers=auth)
    assert refused.status_code == 409
    assert refused.get_json()["error"]["details"] == {"file_count": 1}
    assert client.delete("/api/folders/full/empty", headers=auth).get_json() == {
        "path": "full/empty",
        "status": "deleted",
    }
    assert folders_in(client, auth, "full") == ["inner"]
    assert client.delete(f"/api/files/{record['id']}", headers=auth).status_code == 200
    assert client.delete("/api/folders/full", headers=auth).status_code == 404  # nothing made it exist now
    assert folders_in(client, auth) == []


def test_folders_of_other_users_are_invisible(client, auth):
    upload(client, auth, "mine.txt", b"mine", folder="private")
    other = register_and_login(client, "folder-other")
    assert client.patch("/api/folders/private", json={"new_path": "stolen"}, headers=other).status_code == 404
    assert client.delete("/api/folders/private", headers=other).status_code == 404
    assert folders_in(client, other) == []
    assert make(client, other, "private").status_code == 201  # a folder of the same name, its own
    assert names_in(client, auth, "private") == ["mine.txt"]


def test_files_move_in_bulk_with_a_result_per_id(client, auth, app):
    records = [upload(client, auth, f"f{i}.txt", f"{i}".encode(), folder="from") for i in range(4)]
    deleted = records[3]
    assert client.delete(f"/api/files/{deleted['id']}", headers=auth).status_code == 200
    other = register_and_login(client, "move-other")
    theirs = upload(client, other, "theirs.txt", b"theirs")
    ids = [r["id"] for r in records] + [theirs["id"], "not-an-id", records[0]["id"]]

    answer = client.post("/api/files/move", json={"ids": ids, "folder": "to/here"}, headers=auth)
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["folder"] == "to/here"
    assert body["moved"] == [r["id"] for r in records[:3]]
    assert {f["id"]: f["error"]["code"] for f in body["failed"]} == {
        deleted["id"]: "invalid_state",
        theirs["id"]: "not_found",
        "not-an-id": "not_found",
    }
    assert names_in(client, auth, "to/here") == ["f0.txt", "f1.txt", "f2.txt"]
    assert client.get(f"/api/files/{theirs['id']}", headers=other).get_json()["folder"] == ""
    with app.app_context():
        assert db.session.get(File, deleted["id"]).folder == "from"  # history stays where it was

    top = client.post("/api/files/move", json={"ids": [records[0]["id"]], "folder": None}, headers=auth)
    assert top.get_json()["folder"] == "" and names_in(client, auth, "") == ["f0.txt"]


def test_bad_file_moves_are_refused(client, auth, app):
    for body, status, code in (
        ({"ids": [], "folder": "x"}, 422, "validation_error"),
        ({"ids": ["a"], "folder": "../x"}, 422, "validation_error"),
        ({"ids": "abc", "folder": "x"}, 422, "validation_error"),
        ({"ids": ["a"]}, 422, "validation_error"),
        ({"ids": ["a"] * (app.config["MAX_BATCH"] + 1), "folder": "x"}, 413, "batch_too_large"),
    ):
        answer = client.post("/api/files/move", json=body, headers=auth)
        assert (answer.status_code, answer.get_json()["error"]["code"]) == (status, code), body
    malformed = client.post("/api/files/move", data="[", headers={**auth, "Content-Type": "application/json"})
    assert (malformed.status_code, malformed.get_json()["error"]["code"]) == (400, "bad_request")


def test_concurrent_moves_and_deletes_never_move_a_deleted_file(client, auth, app):
    """A bulk move racing bulk deletes: every file ends either deleted where it was, or moved and live."""
    records = [upload(client, auth, f"r{i}.txt", f"{i}".encode(), folder="race") for i in range(20)]
    ids = [r["id"] for r in records]

    def move():
        return client.post("/api/files/move", json={"ids": ids, "folder": "moved"}, headers=auth).get_json()

    def delete():
        return client.post("/api/files/delete", json={"ids": ids[::2]}, headers=auth).get_json()

    with ThreadPoolExecutor(2) as pool:
        moved, deleted = pool.submit(move), pool.submit(delete)
        moved, deleted = moved.result(), deleted.result()
    assert set(deleted["deleted"]) == set(ids[::2])
    with app.app_context():
        rows = {row.id: row for row in db.session.scalars(db.select(File).where(File.id.in_(ids)))}
    for file_id, row in rows.items():
        if row.status == "deleted":
            assert file_id in ids[::2]
        else:
            assert row.status == "complete" and row.folder == "moved" and file_id in moved["moved"]


def test_folder_paths_are_limited_in_bytes_not_characters(client, auth):
    """1,024 characters of emoji are 4 KiB: over PostgreSQL's limit of an index entry. The limit is bytes."""
    emoji = "/".join(["\U0001f600" * 60] * 5)  # 304 characters, 1,204 bytes
    assert len(emoji) < 1024 < len(emoji.encode())
    made = make(client, auth, emoji)
    assert made.status_code == 422 and made.get_json()["error"]["details"] == {
        "folder": ["Folder is limited to 1024 bytes (UTF-8)."]
    }
    spec = {"file_name": "a.txt", "content_type": "text/plain", "file_size": 1, "folder": emoji}
    presigned = client.post("/api/files/upload/", json=spec, headers=auth)
    assert presigned.status_code == 422 and presigned.get_json()["error"]["code"] == "validation_error"
    fits = "/".join(["\U0001f600" * 60] * 4)  # 964 bytes
    upload(client, auth, "deep.txt", b"deep", folder=fits + "/x")
    assert make(client, auth, "top").status_code == 201
    moved = client.patch(
        "/api/folders/" + fits.split("/")[0], json={"new_path": "a" * 200 + "/" + "b" * 200}, headers=auth
    )
    assert moved.status_code == 422 and moved.get_json()["error"]["details"]["new_path"]
    assert client.patch("/api/folders/" + fits.split("/")[0], json={"new_path": "ok"}, headers=auth).status_code == 200
