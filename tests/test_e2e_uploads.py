"""End to end: the app over real HTTP, presigned uploads really sent to moto server and MiniStack.

The broker runs in a werkzeug server thread; bytes go with ``requests`` straight to the S3
endpoint exactly as a browser or script would, then the broker confirms over HTTP too.

- MiniStack (AUTH=true) enforces the signed headers, so bad uploads never land and confirm
  answers object_missing while the record stays pending.
- moto enforces nothing, so bad uploads land and confirm (HeadObject) must catch them:
  integrity_mismatch, object deleted, record rejected, quota released.
"""

from __future__ import annotations

import threading
import time as _time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from helpers import sha256_b64
from live import HTTP_TIMEOUT, Env, LiveApp, S3Calls, served_apps, start_worker, stop_worker, worker_settings

from s3drive import signing
from s3drive.timeutil import utcnow

pytestmark = pytest.mark.e2e

ENDPOINTS = ("moto", "ministack")
CONFIRM_MODES = ("head", "list")


# -- small helpers -------------------------------------------------------------------------


def payload(index: int, size: int) -> bytes:
    """Return size distinct-looking bytes for file number index."""
    seed = f"file-{index}-".encode()
    return (seed * (size // len(seed) + 1))[:size]


def send(ticket: dict, data: bytes, *, headers: dict | None = None, url: str | None = None) -> requests.Response:
    """Upload data exactly as the ticket says (PUT with its headers, or a POST form)."""
    url = url or ticket["presigned_url"]
    if ticket["method"] == "POST":
        assert ticket["headers"] == {}
        return requests.post(
            url, data=ticket["fields"], files={"file": (ticket["file_name"], data)}, timeout=HTTP_TIMEOUT
        )
    assert ticket["fields"] is None
    return requests.put(url, data=data, headers=ticket["headers"] if headers is None else headers, timeout=HTTP_TIMEOUT)


def spec(name: str, data: bytes, content_type: str = "text/plain", **extra) -> dict:
    return {"file_name": name, "content_type": content_type, "file_size": len(data), **extra}


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live_apps(database_url, tmp_path_factory) -> Iterator[Callable[..., LiveApp]]:
    """One served app per (endpoint, confirm mode, settings), made on first use, for the module."""
    with served_apps(database_url, "s3drive-e2e", tmp_path_factory) as get:
        yield get


def make_env(live_apps, endpoint: str, confirm: str, **settings) -> Env:
    return Env.open(live_apps(endpoint, confirm, **settings))


@pytest.fixture(params=ENDPOINTS)
def endpoint(request) -> str:
    return request.param


@pytest.fixture(params=CONFIRM_MODES)
def confirm_mode(request) -> str:
    return request.param


@pytest.fixture
def env(live_apps, endpoint, confirm_mode) -> Env:
    return make_env(live_apps, endpoint, confirm_mode)


@pytest.fixture
def ministack(live_apps) -> Env:
    """MiniStack, which enforces signatures; list confirm, as configured for such stores."""
    return make_env(live_apps, "ministack", "list")


@pytest.fixture
def moto(live_apps) -> Env:
    """moto server, which enforces nothing; head confirm, as configured for such stores."""
    return make_env(live_apps, "moto", "head")


# -- happy path ----------------------------------------------------------------------------


def test_upload_put_checksum_tier_and_post_form(env):
    api = env.api
    datas = [payload(1, 1500), payload(2, 2048), payload(3, 777)]
    specs = [
        spec("notes.txt", datas[0], checksum_sha256=sha256_b64(datas[0]), tags="A, b ,a", folder="docs//2026/"),
        spec("photo.png", datas[1], content_type="image/png", tier="standard_ia", title="A photo"),
        spec("données été.json", datas[2], content_type="application/json", method="POST"),
    ]
    tickets = api.presign(specs)
    assert [t["method"] for t in tickets] == ["PUT", "PUT", "POST"]
    put_checksum, put_tier, post = tickets
    assert put_checksum["headers"]["x-amz-checksum-sha256"] == sha256_b64(datas[0])
    assert put_tier["headers"]["x-amz-storage-class"] == "STANDARD_IA"
    assert post["fields"]["Content-Type"] == "application/json"
    assert all(t["status"] == "pending" and t["multipart"] is False for t in tickets)

    reserved = api.usage()
    assert reserved["reserved_bytes"] == sum(map(len, datas))
    assert reserved["used_bytes"] == 0

    for ticket, data in zip(tickets, datas, strict=True):
        response = send(ticket, data)
        assert response.status_code in (200, 204), response.text

    result = api.confirm_many([t["id"] for t in tickets])
    assert result["total_successful"] == 3, result
    assert [r["status"] for r in result["results"]] == ["success"] * 3
    assert [r["id"] for r in result["results"]] == [t["id"] for t in tickets]

    for ticket, data, file_spec in zip(tickets, datas, specs, strict=True):
        record = api.file(ticket["id"])
        assert record["status"] == "complete"
        assert record["size"] == len(data)
        assert record["content_type"] == file_spec["content_type"]
        assert record["s3_key"] == ticket["s3_key"]
        assert record["confirmed_at"]
        assert record["etag"]

        head = env.head(ticket["s3_key"])
        assert head is not None
        assert head["ContentLength"] == len(data)
        assert head["ContentType"] == file_spec["content_type"]
        assert head["Metadata"]["file-id"] == ticket["id"]
        assert head["ETag"].strip('"') == record["etag"]
        assert env.read(ticket["s3_key"]) == data

    assert api.file(put_checksum["id"])["checksum_sha256"] == sha256_b64(datas[0])
    assert env.head(put_checksum["s3_key"])["ChecksumSHA256"] == sha256_b64(datas[0])
    assert api.file(put_checksum["id"])["tags"] == ["a", "b"]
    assert api.file(put_checksum["id"])["folder"] == "docs/2026"
    assert api.file(put_tier["id"])["tier"] == "standard_ia"
    assert api.file(post["id"])["file_name"] == "données été.json"
    assert env.head(put_tier["s3_key"]).get("StorageClass") == "STANDARD_IA"

    usage = api.usage()
    assert usage["used_bytes"] == sum(map(len, datas))
    assert usage["reserved_bytes"] == 0
    assert usage["file_count"] == 3


def test_single_ticket_form_and_confirm_by_key(env):
    data = payload(9, 321)
    ticket = env.api.presign_one(spec("single.csv", data, content_type="text/csv"))
    assert ticket["method"] == "PUT"
    assert send(ticket, data).status_code == 200

    response = env.api.post("/api/files/confirm_upload/", json={"s3_key": ticket["s3_key"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "success"
    assert body["id"] == ticket["id"]
    assert body["file"]["status"] == "complete"
    assert body["file"]["size"] == len(data)
    assert env.read(ticket["s3_key"]) == data


# -- confirm strategies and their S3 cost --------------------------------------------------


def test_confirm_twenty_files_counts_s3_requests(env, confirm_mode):
    api = env.api
    datas = [payload(i, 0 if i == 0 else 100 + 37 * i) for i in range(20)]
    tickets = api.presign([spec(f"f{i:02}.txt", data) for i, data in enumerate(datas)])
    for ticket, data in zip(tickets, datas, strict=True):
        assert send(ticket, data).status_code == 200

    with S3Calls(env.live.storage.client) as calls:
        result = api.confirm_many([t["id"] for t in tickets])
    assert result["total_successful"] == 20, result
    assert all(r["status"] == "success" for r in result["results"])
    if confirm_mode == "list":
        assert len(calls.names) <= 2, calls.names
        assert set(calls.names) == {"ListObjectsV2"}
    else:
        assert calls.names == ["HeadObject"] * 20

    usage = api.usage()
    assert usage["used_bytes"] == sum(map(len, datas))
    assert usage["reserved_bytes"] == 0
    assert usage["file_count"] == 20

    # Already complete: answered from the database, without asking S3 again.
    with S3Calls(env.live.storage.client) as calls:
        again = api.confirm_many([t["id"] for t in tickets])
    assert again["total_successful"] == 20
    assert calls.names == []
    assert api.usage()["used_bytes"] == sum(map(len, datas))


def test_batch_confirm_reports_missing_and_not_found(env):
    api = env.api
    datas = [payload(i, 200 + i) for i in range(4)]
    tickets = api.presign([spec(f"m{i}.txt", data) for i, data in enumerate(datas)])
    for ticket, data in zip(tickets[:3], datas[:3], strict=True):
        assert send(ticket, data).status_code == 200

    unknown = str(uuid.uuid4())
    result = api.confirm_many([t["id"] for t in tickets] + [unknown])
    assert [r["status"] for r in result["results"]] == ["success", "success", "success", "missing", "not_found"]
    assert result["total_successful"] == 3
    assert result["total_failed"] == 2
    assert api.file(tickets[3]["id"])["status"] == "pending"
    usage = api.usage()
    assert usage["used_bytes"] == sum(map(len, datas[:3]))
    assert usage["reserved_bytes"] == len(datas[3])

    # The late upload is confirmed afterwards.
    assert send(tickets[3], datas[3]).status_code == 200
    response = api.confirm_one(tickets[3]["id"])
    assert response.status_code == 200, response.text
    assert api.usage()["used_bytes"] == sum(map(len, datas))


# -- idempotency ---------------------------------------------------------------------------


def test_confirm_twice_counts_bytes_once(env):
    api = env.api
    data = payload(5, 4096)
    [ticket] = api.presign([spec("twice.txt", data, checksum_sha256=sha256_b64(data))])
    assert send(ticket, data).status_code == 200

    for _ in range(2):
        response = api.confirm_one(ticket["id"])
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "success"
        assert response.json()["file"]["status"] == "complete"
    for _ in range(2):
        result = api.confirm_many([ticket["id"], ticket["id"]])
        assert [r["status"] for r in result["results"]] == ["success", "success"]
    response = api.post("/api/files/confirm_uploads/", json={"s3_keys": [ticket["s3_key"]]})
    assert response.status_code == 200, response.text
    assert response.json()["results"][0] == {
        "s3_key": ticket["s3_key"],
        "id": ticket["id"],
        "status": "success",
        "message": "Upload confirmed",
    }

    usage = api.usage()
    assert usage["used_bytes"] == len(data)
    assert usage["reserved_bytes"] == 0
    assert usage["file_count"] == 1


def test_concurrent_confirms_count_bytes_once(env):
    api = env.api
    datas = [payload(i, 1000 + i) for i in range(3)]
    tickets = api.presign([spec(f"race{i}.txt", data) for i, data in enumerate(datas)])
    for ticket, data in zip(tickets, datas, strict=True):
        assert send(ticket, data).status_code == 200

    ids = [t["id"] for t in tickets]
    clients = [api.clone() for _ in range(8)]
    barrier = threading.Barrier(8)
    answers: list = [None] * 8

    def confirm(slot: int) -> None:
        client = clients[slot]
        barrier.wait()
        if slot % 2:
            answers[slot] = client.confirm_many(ids)["total_successful"]
        else:
            answers[slot] = client.confirm_one(ids[slot % 3]).status_code

    threads = [threading.Thread(target=confirm, args=(slot,)) for slot in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert answers == [200, 3] * 4
    usage = api.usage()
    assert usage["used_bytes"] == sum(map(len, datas))
    assert usage["reserved_bytes"] == 0
    assert usage["file_count"] == 3


# -- MiniStack enforces the signature: bad uploads never land ------------------------------

TAMPER_HEX = {c: "0" if c != "0" else "1" for c in "0123456789abcdef"}


def _tampered(url: str) -> str:
    marker = "X-Amz-Signature="
    at = url.index(marker) + len(marker)
    return url[:at] + TAMPER_HEX[url[at]] + url[at + 1 :]


def _attempt(case: str, ticket: dict, data: bytes) -> requests.Response:
    """Send the bad upload a test case names."""
    headers = dict(ticket["headers"])
    if case == "oversize":
        return send(ticket, data + b"!")
    if case == "undersize":
        return send(ticket, data[:-1])
    if case == "content_type":
        return send(ticket, data, headers={**headers, "Content-Type": "image/png"})
    if case == "wrong_checksum":
        return send(ticket, data[:-1] + b"?")
    if case == "tampered_signature":
        return send(ticket, data, url=_tampered(ticket["presigned_url"]))
    if case == "missing_metadata":
        return send(ticket, data, headers={k: v for k, v in headers.items() if k != "x-amz-meta-file-id"})
    if case in ("expired", "post_expired"):
        return send(ticket, data)
    if case == "post_over_range":
        return send(ticket, data + b"0123456789")
    if case == "post_under_range":
        return send(ticket, data[:-1])
    raise AssertionError(case)


MINISTACK_CASES = {
    # case: (expected S3 status, S3 error code)
    "oversize": (403, "SignatureDoesNotMatch"),
    "undersize": (403, "SignatureDoesNotMatch"),
    "content_type": (403, "SignatureDoesNotMatch"),
    "wrong_checksum": (400, "BadDigest"),
    "tampered_signature": (403, "SignatureDoesNotMatch"),
    "missing_metadata": (403, "SignatureDoesNotMatch"),
    "expired": (403, "AccessDenied"),
    "post_expired": (403, "AccessDenied"),
    "post_over_range": (400, "EntityTooLarge"),
    "post_under_range": (400, "EntityTooSmall"),
}


class _ShiftedClock:
    """The time module, except that time() runs `offset` seconds off."""

    def __init__(self, offset: float):
        self.offset = offset

    def time(self) -> float:
        return _time.time() + self.offset

    def __getattr__(self, name: str):
        return getattr(_time, name)


@pytest.fixture
def signer_clock_in_past(monkeypatch):
    """Make the signer's clock run two hours late, so every URL it issues is born expired.

    URL_EXPIRES_IN cannot go below 60 s, and the signer reads the time itself
    (``now=None`` -> ``time.time()`` in s3drive.signing), so its clock is shifted, whichever
    of presign / presign_many / presign_post the upload service calls.
    """
    monkeypatch.setattr(signing, "time", _ShiftedClock(-2 * 3600))  # URL_EXPIRES_IN is 3600 s


def _signed_at(ticket: dict) -> datetime:
    """Return the signing time of a ticket (X-Amz-Date of a PUT URL, x-amz-date of a POST form)."""
    if ticket["method"] == "POST":
        value = ticket["fields"]["x-amz-date"]
    else:
        value = parse_qs(urlsplit(ticket["presigned_url"]).query)["X-Amz-Date"][0]
    return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


@pytest.mark.parametrize("case", list(MINISTACK_CASES))
def test_ministack_refuses_bad_upload_and_record_stays_pending(request, ministack, case):
    api = ministack.api
    expired = case.endswith("expired")
    if expired:
        request.getfixturevalue("signer_clock_in_past")
    data = payload(7, 1000)
    goods = [payload(8, 300), payload(9, 400)]
    method = "POST" if case.startswith("post_") else "PUT"
    extra = {"checksum_sha256": sha256_b64(data)} if case == "wrong_checksum" else {}
    # Two good files beside the bad one make the batch confirm use a listing (S3_CONFIRM=list).
    tickets = api.presign(
        [
            spec("bad.txt", data, method=method, **extra),
            spec("good1.txt", goods[0], method=method),
            spec("good2.txt", goods[1], method=method),
        ]
    )
    bad = tickets[0]
    if expired:
        assert _signed_at(bad) < utcnow() - timedelta(seconds=3600), "the URL was not issued expired"

    response = _attempt(case, bad, data)
    status, code = MINISTACK_CASES[case]
    assert response.status_code == status, response.text
    assert f"<Code>{code}</Code>" in response.text
    assert ministack.head(bad["s3_key"]) is None

    if not expired:
        for ticket, good in zip(tickets[1:], goods, strict=True):
            assert send(ticket, good).status_code in (200, 204)

    single = api.confirm_one(bad["id"])
    assert single.status_code == 409, single.text
    assert single.json()["error"]["code"] == "object_missing"

    result = api.confirm_many([t["id"] for t in tickets])
    expected_good = "missing" if expired else "success"
    assert [r["status"] for r in result["results"]] == ["missing", expected_good, expected_good]

    assert api.file(bad["id"])["status"] == "pending"
    usage = api.usage()
    assert usage["reserved_bytes"] == len(data) + (sum(map(len, goods)) if expired else 0)
    assert usage["used_bytes"] == (0 if expired else sum(map(len, goods)))


def test_ministack_sse_and_key_prefix_are_signed_and_enforced(live_apps):
    """Server-side encryption is signed into PUT URLs and POST policies; keys carry the prefix."""
    env = make_env(live_apps, "ministack", "list", SSE="AES256", S3_KEY_PREFIX="tenant-1/")
    datas = [payload(i, 300 + i) for i in range(4)]
    methods = ["PUT", "PUT", "POST", "POST"]
    tickets = env.api.presign(
        [spec(f"sse{i}.txt", data, method=method) for i, (data, method) in enumerate(zip(datas, methods, strict=True))]
    )
    assert all(t["s3_key"].startswith("tenant-1/users/") for t in tickets)
    assert tickets[0]["headers"]["x-amz-server-side-encryption"] == "AES256"
    assert tickets[2]["fields"]["x-amz-server-side-encryption"] == "AES256"

    without_sse = {k: v for k, v in tickets[0]["headers"].items() if k != "x-amz-server-side-encryption"}
    assert send(tickets[0], datas[0], headers=without_sse).status_code == 403
    for ticket, data in zip(tickets, datas, strict=True):
        assert send(ticket, data).status_code in (200, 204)

    with S3Calls(env.live.storage.client) as calls:
        result = env.api.confirm_many([t["id"] for t in tickets])
    assert result["total_successful"] == 4, result
    assert calls.names == ["ListObjectsV2"]
    for ticket, data in zip(tickets, datas, strict=True):
        head = env.head(ticket["s3_key"])
        assert head["ServerSideEncryption"] == "AES256"
        assert env.read(ticket["s3_key"]) == data
    assert env.api.usage()["used_bytes"] == sum(map(len, datas))


def test_ministack_upload_right_after_refusal_still_works(ministack):
    """A refused attempt does not spoil the ticket: the correct upload then confirms."""
    data = payload(4, 640)
    [ticket] = ministack.api.presign([spec("retry.txt", data, checksum_sha256=sha256_b64(data))])
    assert send(ticket, data + b"x").status_code == 403
    assert send(ticket, data).status_code == 200
    response = ministack.api.confirm_one(ticket["id"])
    assert response.status_code == 200, response.text
    assert ministack.head(ticket["s3_key"])["ChecksumSHA256"] == sha256_b64(data)


# -- moto enforces nothing: confirm must catch what landed ---------------------------------

MOTO_CASES = (
    "oversize",
    "undersize",
    "content_type",
    "checksum_other",
    "checksum_omitted",
    "metadata_other",
    "metadata_missing",
    "post_over_range",
)


def _moto_attempt(case: str, ticket: dict, data: bytes) -> requests.Response:
    headers = dict(ticket["headers"])
    if case == "checksum_other":
        # Other bytes, sent with their own (correct) checksum instead of the signed one.
        other = data[:-1] + b"?"
        return send(ticket, other, headers={**headers, "x-amz-checksum-sha256": sha256_b64(other)})
    if case == "checksum_omitted":
        headers.pop("x-amz-checksum-sha256")
        headers.pop("x-amz-sdk-checksum-algorithm")
        return send(ticket, data[:-1] + b"?", headers=headers)
    if case == "metadata_other":
        return send(ticket, data, headers={**headers, "x-amz-meta-file-id": str(uuid.uuid4())})
    if case == "metadata_missing":
        return send(ticket, data, headers={k: v for k, v in headers.items() if k != "x-amz-meta-file-id"})
    return _attempt(case, ticket, data)


@pytest.mark.parametrize("case", MOTO_CASES)
def test_moto_accepts_bad_upload_and_confirm_rejects_it(moto, case):
    api = moto.api
    data = payload(6, 900)
    method = "POST" if case.startswith("post_") else "PUT"
    extra = {"checksum_sha256": sha256_b64(data)} if case.startswith("checksum_") else {}
    [ticket] = api.presign([spec("bad.txt", data, method=method, **extra)])
    assert api.usage()["reserved_bytes"] == len(data)

    response = _moto_attempt(case, ticket, data)
    assert response.status_code in (200, 204), response.text  # moto stores it anyway
    assert moto.head(ticket["s3_key"]) is not None

    with S3Calls(moto.live.storage.client) as calls:
        single = api.confirm_one(ticket["id"])
    assert single.status_code == 422, single.text
    assert single.json()["error"]["code"] == "integrity_mismatch"
    assert calls.names == ["HeadObject", "DeleteObjects"]

    assert moto.head(ticket["s3_key"]) is None  # deleted by the broker
    assert api.file(ticket["id"])["status"] == "rejected"
    usage = api.usage()
    assert usage["reserved_bytes"] == 0
    assert usage["used_bytes"] == 0
    assert usage["file_count"] == 0

    # The rejected record stays rejected: a new URL is needed.
    again = api.confirm_one(ticket["id"])
    assert again.status_code == 409, again.text
    assert again.json()["error"]["code"] == "invalid_state"


def test_moto_batch_confirm_rejects_only_the_bad_file(moto):
    api = moto.api
    good, bad = payload(1, 500), payload(2, 600)
    tickets = api.presign([spec("good.txt", good), spec("bad.txt", bad)])
    assert send(tickets[0], good).status_code == 200
    assert send(tickets[1], bad, headers={**tickets[1]["headers"], "Content-Type": "text/html"}).status_code == 200

    result = api.confirm_many([t["id"] for t in tickets])
    assert [r["status"] for r in result["results"]] == ["success", "mismatch"]
    assert "content type" in result["results"][1]["message"]
    assert api.file(tickets[0]["id"])["status"] == "complete"
    assert api.file(tickets[1]["id"])["status"] == "rejected"
    assert moto.head(tickets[0]["s3_key"]) is not None
    assert moto.head(tickets[1]["s3_key"]) is None
    usage = api.usage()
    assert usage["used_bytes"] == len(good)
    assert usage["reserved_bytes"] == 0


# -- stock Uppy's form uploads: size unknown, nobody confirms -------------------------------


def test_ministack_enforces_the_bound_of_a_form_of_unknown_size_and_the_watcher_confirms(
    live_apps, database_url, tmp_path
):
    """Stock Uppy sends no size and never reports a form upload: the policy bounds the size (the
    quota left, 1,000 bytes here), S3 refuses more, and s3drive confirms what arrived by itself
    (a task-queue worker runs the upload watcher, which its scheduler starts every second)."""
    broker = f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}"
    env = make_env(live_apps, "ministack", "list", DEFAULT_QUOTA_BYTES=1000, BROKER_URL=broker)
    worker = start_worker(tmp_path / "worker.log", worker_settings(env.live, database_url, broker), beat=True)
    try:
        _watched_form_is_confirmed(env)
    finally:
        stop_worker(worker)


def _watched_form_is_confirmed(env: Env) -> None:
    response = env.api.get("/uppy/s3/params", params={"filename": "notes.txt", "type": "text/plain"})
    assert response.status_code == 200, response.text
    form = response.json()
    assert env.api.usage()["reserved_bytes"] == 0  # its bytes must fit when they arrive

    def post(data: bytes, **changed) -> requests.Response:
        fields = {**form["fields"], **changed}
        return requests.post(form["url"], data=fields, files={"file": ("f", data)}, timeout=HTTP_TIMEOUT)

    assert post(b"x" * 1001).status_code == 400  # EntityTooLarge
    assert post(b"x" * 10, **{"Content-Type": "text/html"}).status_code == 403  # outside the policy
    assert env.head(form["fields"]["key"]) is None
    assert post(payload(5, 999)).status_code == 204

    deadline = _time.monotonic() + 30  # the watcher looks when the form is 1, 2, 4 … s old
    while (items := env.api.get("/api/files/").json()["items"]) == [] and _time.monotonic() < deadline:
        _time.sleep(0.1)
    assert [(item["file_name"], item["size"], item["status"]) for item in items] == [("notes.txt", 999, "complete")]
    assert env.api.usage() == {"used_bytes": 999, "reserved_bytes": 0, "quota_bytes": 1000, "file_count": 1}
    assert env.read(form["fields"]["key"]) == payload(5, 999)
