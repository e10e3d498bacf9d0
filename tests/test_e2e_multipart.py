"""End to end: multipart uploads over real HTTP, parts really sent to moto server and MiniStack.

The broker runs in a werkzeug server thread; parts go with ``requests`` straight to the S3
endpoint, in parallel, as a browser or script would send them.

- MiniStack (AUTH=true) enforces each part URL's signed Content-Length, and refuses a
  completion whose parts do not add up to the declared size (MpuObjectSize).
- moto enforces neither, so a part of the wrong size lands and complete must catch it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from live import Api, Env, LiveApp, S3Calls, served_apps

pytestmark = pytest.mark.e2e

MIB = 1024**2
PART = 5 * MIB
HTTP_TIMEOUT = 60
SETTINGS = {"MULTIPART_THRESHOLD": PART, "DEFAULT_PART_SIZE": PART}


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live_apps(database_url, tmp_path_factory) -> Iterator[Callable[..., LiveApp]]:
    """One served broker per S3 endpoint (made on first use) for the whole module."""
    with served_apps(database_url, "s3drive-mp", tmp_path_factory) as get:
        yield get


class MultipartEnv(Env):
    """One test's world, with the multipart calls."""

    def start(self, data: bytes, name: str = "video.mp4", **extra) -> dict:
        body = {"file_name": name, "content_type": "video/mp4", "file_size": len(data), **extra}
        response = self.api.post("/api/files/multipart/", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    def sign(self, file_id: str, numbers: list[int]) -> list[dict]:
        response = self.api.post(f"/api/files/multipart/{file_id}/sign", json={"part_numbers": numbers})
        assert response.status_code == 200, response.text
        return response.json()["parts"]

    def status(self, file_id: str) -> dict:
        response = self.api.get(f"/api/files/multipart/{file_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def complete(self, file_id: str, etags: dict[int, str] | None = None) -> requests.Response:
        body = {} if etags is None else {"parts": [{"part_number": n, "etag": e} for n, e in sorted(etags.items())]}
        return self.api.post(f"/api/files/multipart/{file_id}/complete", json=body)

    def open_uploads(self, key: str) -> list[dict]:
        return self.s3.list_multipart_uploads(Bucket=self.bucket, Prefix=key).get("Uploads", [])

    def has_object(self, key: str) -> bool:
        return self.head(key) is not None


def open_env(live_apps, endpoint: str) -> MultipartEnv:
    # Head confirm for moto, list for MiniStack, as configured for such stores.
    confirm = "head" if endpoint == "moto" else "list"
    return MultipartEnv.open(live_apps(endpoint, confirm, **SETTINGS), user_prefix="mp")


@pytest.fixture(params=("moto", "ministack"))
def env(request, live_apps) -> MultipartEnv:
    return open_env(live_apps, request.param)


def put_parts(parts: list[dict], data: bytes, workers: int = 4) -> dict[int, str]:
    """PUT the parts' slices of data in parallel, each with its own connection; return number -> ETag."""

    def put(part: dict) -> tuple[int, str]:
        start = (part["part_number"] - 1) * PART
        chunk = data[start : start + part["size"]]
        response = requests.put(part["url"], data=chunk, headers=part["headers"], timeout=HTTP_TIMEOUT)
        assert response.status_code == 200, response.text
        return part["part_number"], response.headers["ETag"]

    with ThreadPoolExecutor(workers) as pool:
        return dict(pool.map(put, parts))


# -- the whole flow ------------------------------------------------------------------------


def test_three_parts_with_a_short_last_one(env):
    data = os.urandom(2 * PART + 1_048_583)
    upload = env.start(data, title="Holiday")
    assert (upload["part_count"], upload["part_size"], upload["status"]) == (3, PART, "uploading")
    assert env.api.usage()["reserved_bytes"] == len(data)
    assert [u["UploadId"] for u in env.open_uploads(upload["s3_key"])] == [upload["upload_id"]]

    parts = env.sign(upload["id"], [1, 2, 3])
    assert [p["size"] for p in parts] == [PART, PART, 1_048_583]
    etags = put_parts(parts, data)
    assert all(e.startswith('"') for e in etags.values())  # sent back quoted, as S3 gave them

    response = env.complete(upload["id"], etags)
    assert response.status_code == 200, response.text
    done = response.json()
    assert done["status"] == "complete" and done["size"] == len(data) and done["etag"].endswith("-3")
    assert env.read(upload["s3_key"]) == data
    head = env.s3.head_object(Bucket=env.bucket, Key=upload["s3_key"])
    assert head["ContentType"] == "video/mp4" and head["Metadata"]["file-id"] == upload["id"]
    assert head["ETag"].strip('"') == done["etag"]
    assert env.open_uploads(upload["s3_key"]) == []
    usage = env.api.usage()
    assert (usage["used_bytes"], usage["reserved_bytes"], usage["file_count"]) == (len(data), 0, 1)
    assert env.api.file(upload["id"])["status"] == "complete"
    assert env.complete(upload["id"], etags).json() == done  # idempotent


def test_resume_after_dropping_the_client(env):
    data = os.urandom(3 * PART + 4321)
    upload = env.start(data)
    parts = env.sign(upload["id"], [1, 2, 3, 4])
    put_parts(parts[:2], data)
    file_id = upload["id"]
    token = env.api.session.headers["Authorization"]
    env.api.session.close()
    del upload, parts  # the page reloads: only the id and the login survive

    fresh = Api(env.live.base_url)
    fresh.session.headers["Authorization"] = token
    env.api = fresh
    status = env.status(file_id)
    assert status["status"] == "uploading" and status["part_count"] == 4
    assert [(p["part_number"], p["size"]) for p in status["parts"]] == [(1, PART), (2, PART)]
    assert status["bytes_uploaded"] == 2 * PART
    done = {p["part_number"] for p in status["parts"]}
    todo = [n for n in range(1, status["part_count"] + 1) if n not in done]
    assert todo == [3, 4]
    put_parts(env.sign(file_id, todo), data)

    response = env.complete(file_id)  # {}: the broker lists the parts in S3
    assert response.status_code == 200, response.text
    assert response.json()["size"] == len(data)
    assert env.read(status["s3_key"]) == data
    assert env.status(file_id)["bytes_uploaded"] == len(data)


def test_abort_leaves_no_upload_in_s3(env):
    data = os.urandom(2 * PART + 10)
    upload = env.start(data)
    put_parts(env.sign(upload["id"], [1]), data)
    response = env.api.request("DELETE", f"/api/files/multipart/{upload['id']}")
    assert response.status_code == 200, response.text
    assert response.json() == {"id": upload["id"], "status": "aborted"}
    assert env.open_uploads(upload["s3_key"]) == []
    assert not env.has_object(upload["s3_key"])
    usage = env.api.usage()
    assert (usage["used_bytes"], usage["reserved_bytes"]) == (0, 0)
    response = env.complete(upload["id"])
    assert response.status_code == 409 and response.json()["error"]["code"] == "invalid_state"


def test_wrong_etag_is_refused_and_the_right_one_completes(env):
    data = os.urandom(2 * PART + 99)
    upload = env.start(data)
    etags = put_parts(env.sign(upload["id"], [1, 2, 3]), data)
    response = env.complete(upload["id"], {**etags, 3: "0123456789abcdef0123456789abcdef"})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "integrity_mismatch"
    assert response.json()["error"]["details"]["s3_error"] == "InvalidPart"
    assert env.status(upload["id"])["status"] == "uploading"
    response = env.complete(upload["id"], {n: e.strip('"') for n, e in etags.items()})
    assert response.status_code == 200, response.text
    assert env.read(upload["s3_key"]) == data


# -- sizes other than the declared one -----------------------------------------------------


def test_moto_lands_a_wrong_size_part_and_complete_rejects_it(live_apps):
    env = open_env(live_apps, "moto")
    data = os.urandom(2 * PART + 500)
    upload = env.start(data)
    parts = env.sign(upload["id"], [1, 2, 3])
    etags = put_parts(parts[:2], data)
    response = requests.put(parts[2]["url"], data=data[2 * PART :] + b"trailing", timeout=HTTP_TIMEOUT)
    assert response.status_code == 200  # moto ignores the signed Content-Length
    etags[3] = response.headers["ETag"]

    response = env.complete(upload["id"], etags)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "integrity_mismatch"
    assert response.json()["error"]["details"] == {"size": len(data) + 8, "declared_size": len(data)}
    assert not env.has_object(upload["s3_key"])
    assert env.status(upload["id"])["status"] == "rejected"
    usage = env.api.usage()
    assert (usage["used_bytes"], usage["reserved_bytes"]) == (0, 0)


def test_ministack_refuses_wrong_size_parts_and_sizes(live_apps):
    env = open_env(live_apps, "ministack")
    data = os.urandom(2 * PART + 500)
    upload = env.start(data)
    parts = env.sign(upload["id"], [1, 2, 3])
    for body in (data[2 * PART :] + b"trailing", data[2 * PART : -1]):
        response = requests.put(parts[2]["url"], data=body, timeout=HTTP_TIMEOUT)
        assert response.status_code == 403 and "SignatureDoesNotMatch" in response.text
    etags = put_parts(parts[:2], data)

    # A store that ignored signatures would have kept a longer part; put one in behind the URLs' back.
    sneaked = env.s3.upload_part(
        Bucket=env.bucket,
        Key=upload["s3_key"],
        UploadId=upload["upload_id"],
        PartNumber=3,
        Body=data[2 * PART :] + b"trailing",
    )
    etags[3] = sneaked["ETag"]
    response = env.complete(upload["id"], etags)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "integrity_mismatch"
    assert response.json()["error"]["details"]["s3_error"] == "InvalidRequest"  # refused by MpuObjectSize
    assert not env.has_object(upload["s3_key"])
    assert env.open_uploads(upload["s3_key"]) == []
    assert env.status(upload["id"])["status"] == "rejected"
    assert env.api.usage()["reserved_bytes"] == 0


def test_ministack_upload_gone_behind_the_brokers_back_is_409(live_apps):
    env = open_env(live_apps, "ministack")
    data = os.urandom(PART + 1)
    upload = env.start(data)
    etags = put_parts(env.sign(upload["id"], [1, 2]), data)
    env.s3.abort_multipart_upload(Bucket=env.bucket, Key=upload["s3_key"], UploadId=upload["upload_id"])
    for response in (
        env.api.get(f"/api/files/multipart/{upload['id']}"),
        env.complete(upload["id"], etags),
        env.complete(upload["id"]),
    ):
        assert response.status_code == 409, response.text
        assert response.json()["error"]["details"]["s3_error"] == "NoSuchUpload"
    assert env.api.request("DELETE", f"/api/files/multipart/{upload['id']}").json()["status"] == "aborted"


# -- mixed batches -------------------------------------------------------------------------


def test_mixed_batch_of_500_photos_and_3_videos(env):
    photos = [
        {"file_name": f"IMG_{i:04d}.jpg", "content_type": "image/jpeg", "file_size": 2000 + i} for i in range(500)
    ]
    videos = [
        {"file_name": f"clip{i}.mp4", "content_type": "video/mp4", "file_size": size}
        for i, size in enumerate((PART + 1, 3 * PART, 40 * PART + 7))
    ]
    specs = [*photos[:200], videos[0], *photos[200:400], videos[1], *photos[400:], videos[2]]
    with S3Calls(env.live.storage.client) as calls:
        tickets = env.api.presign(specs)
    assert calls.names == ["CreateMultipartUpload"] * 3
    assert [t["file_name"] for t in tickets] == [s["file_name"] for s in specs]
    puts = [t for t in tickets if not t["multipart"]]
    multis = [t for t in tickets if t["multipart"]]
    assert len(puts) == 500 and all(t["method"] == "PUT" and t["presigned_url"] for t in puts)
    assert [(t["part_count"], t["status"]) for t in multis] == [(2, "uploading"), (3, "uploading"), (41, "uploading")]
    user_prefix = multis[0]["s3_key"].rsplit("/", 3)[0] + "/"
    opened = {(u["Key"], u["UploadId"]) for u in env.open_uploads(user_prefix)}
    assert opened == {(t["s3_key"], t["upload_id"]) for t in multis}

    # Both kinds then upload as usual: a photo by PUT + confirm, a video by parts + complete.
    photo = puts[0]
    body = os.urandom(photos[0]["file_size"])
    assert requests.put(photo["presigned_url"], data=body, headers=photo["headers"], timeout=HTTP_TIMEOUT).ok
    assert env.api.confirm_one(photo["id"]).status_code == 200
    video = multis[0]
    data = os.urandom(videos[0]["file_size"])
    put_parts(env.sign(video["id"], [1, 2]), data)
    assert env.complete(video["id"]).status_code == 200
    assert env.read(video["s3_key"]) == data
    usage = env.api.usage()
    assert usage["used_bytes"] == len(body) + len(data)
    assert usage["reserved_bytes"] == sum(s["file_size"] for s in specs) - usage["used_bytes"]
