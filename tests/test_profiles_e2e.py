"""Upload profiles end to end, with real bytes on MiniStack (AUTH=true, so S3 enforces what is signed):
presign refuses by a profile's size and types, a real worker process rejects by its pixels, sides and
duration with the right reason, and every limit accepts a file exactly at its edge."""

from __future__ import annotations

import io
import tempfile
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from live import HTTP_TIMEOUT, Env, LiveApp, served_apps, start_worker, stop_worker, worker_settings
from PIL import Image
from test_inspect_media import write_video
from test_inspection_worker import broker_url, settled

pytestmark = pytest.mark.e2e

PROFILES = """
[sized]
description = "Notes of at most 1000 bytes"
max_file_size = 1000
allowed_content_types = ["text/plain"]

[pictures]
allowed_content_types = ["image/png"]
max_image_pixels = 30000
min_image_side = 100
max_image_side = 200
folder = "pictures"

[clips]
allowed_content_types = ["audio/wav", "audio/x-wav", "video/mp4"]
min_media_seconds = 2
max_media_seconds = 3
default_tier = "standard_ia"
"""


@pytest.fixture(scope="module")
def profiles_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("profiles") / "upload-profiles.toml"
    path.write_text(PROFILES)
    return path


@pytest.fixture(scope="module")
def live(database_url, tmp_path_factory, profiles_file) -> Iterator[LiveApp]:
    """The app on MiniStack with the profiles and inspection (its worker started by the test that needs it)."""
    broker = broker_url("embedded", tmp_path_factory.mktemp("broker"))
    with served_apps(database_url, "s3drive-profiles", tmp_path_factory) as get:
        yield get("ministack", "list", INSPECT=True, BROKER_URL=broker, UPLOAD_PROFILES_FILE=str(profiles_file))


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 120, 40)).save(out, "PNG")
    return out.getvalue()


def wav(seconds: float, rate: int = 8000) -> bytes:
    """Return a silent 16-bit mono WAV of exactly this many seconds (sample-exact)."""
    out = io.BytesIO()
    with wave.open(out, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(rate)
        audio.writeframes(b"\0\0" * round(seconds * rate))
    return out.getvalue()


def mp4(seconds: int) -> bytes:
    with tempfile.TemporaryDirectory() as directory:
        return Path(write_video(Path(directory) / "clip.mp4", seconds)).read_bytes()


def put_and_confirm(env: Env, specs: list[dict], contents: list[bytes]) -> list[dict]:
    """Presign specs as one batch, PUT each file's real bytes, confirm them; return the tickets."""
    response = env.api.post("/api/files/upload/", json={"files": specs})
    assert response.status_code == 200 and response.json()["total_failed"] == 0, response.text
    tickets = response.json()["successful"]
    for ticket, data in zip(tickets, contents, strict=True):
        put = requests.put(ticket["presigned_url"], data=data, headers=ticket["headers"], timeout=HTTP_TIMEOUT)
        assert put.status_code == 200, put.text
    confirmed = env.api.post("/api/files/confirm_uploads/", json={"ids": [t["id"] for t in tickets]})
    assert confirmed.json()["total_successful"] == len(tickets), confirmed.text
    return tickets


def refusal(env: Env, **fields) -> tuple[int, dict]:
    response = env.api.post("/api/files/upload/", json=fields)
    return response.status_code, response.json()["error"]


def test_presign_refuses_by_the_profiles_size_and_type_and_takes_exactly_its_maximum(live):
    env = Env.open(live)
    note = {"file_name": "note.txt", "content_type": "text/plain", "profile": "sized"}

    status, error = refusal(env, **note, file_size=1001)
    assert (status, error["code"]) == (413, "file_too_large")
    assert error["details"] == {"file_size": 1001, "max_file_size": 1000, "profile": "sized"}
    assert "for sized uploads" in error["message"]
    status, error = refusal(env, **{**note, "content_type": "image/png", "file_name": "a.png"}, file_size=10)
    assert (status, error["code"]) == (415, "content_type_not_allowed") and error["details"]["profile"] == "sized"
    status, error = refusal(env, **{**note, "profile": "nope"}, file_size=10)
    assert (status, error["code"]) == (422, "validation_error") and "sized" in error["details"]["profile"][0]
    # The same file under no profile is within the global policy.
    assert env.api.post("/api/files/upload/", json={**note, "profile": None, "file_size": 1001}).status_code == 200

    [ticket] = put_and_confirm(env, [{**note, "file_size": 1000}], [b"n" * 1000])
    file = env.api.get(f"/api/files/{ticket['id']}").json()
    assert (file["status"], file["size"], file["profile"]) == ("complete", 1000, "sized")
    assert env.read(file["s3_key"]) == b"n" * 1000
    # S3 enforces the signed length: 1001 bytes on the 1000-byte URL are refused.
    [again] = env.api.post("/api/files/upload/", json={"files": [{**note, "file_size": 1000}]}).json()["successful"]
    over = requests.put(again["presigned_url"], data=b"n" * 1001, headers=again["headers"], timeout=HTTP_TIMEOUT)
    assert over.status_code in (400, 403) and env.head(again["s3_key"]) is None

    # An Uppy form of undeclared size is bounded by the profile: S3 takes 1000 bytes, not 1001.
    response = env.api.get(
        "/uppy/s3/params", params={"filename": "u.txt", "type": "text/plain", "metadata[profile]": "sized"}
    )
    assert response.status_code == 200, response.text
    form = response.json()

    def post(data: bytes) -> int:
        files = {"file": ("u.txt", data)}
        return requests.post(form["url"], data=form["fields"], files=files, timeout=HTTP_TIMEOUT).status_code

    assert post(b"u" * 1001) == 400  # EntityTooLarge
    assert post(b"u" * 1000) == 204
    assert env.head(form["fields"]["key"])["ContentLength"] == 1000

    listed = env.api.get("/api/files/", params={"profile": "sized"}).json()["items"]
    assert [item["id"] for item in listed] == [ticket["id"]]
    assert env.api.get("/api/files/", params={"profile": "default"}).json()["items"] == []


EDGES = [
    # (name, profile, content type, bytes, reason or None for passed)
    ("min-side.png", "pictures", "image/png", lambda: png(100, 100), None),
    ("below-min-side.png", "pictures", "image/png", lambda: png(99, 150), "image_too_small"),
    ("max-side.png", "pictures", "image/png", lambda: png(200, 100), None),
    ("over-max-side.png", "pictures", "image/png", lambda: png(201, 100), "image_too_large"),
    ("max-pixels.png", "pictures", "image/png", lambda: png(150, 200), None),
    ("over-max-pixels.png", "pictures", "image/png", lambda: png(151, 200), "image_too_large"),
    ("min-length.wav", "clips", "audio/wav", lambda: wav(2), None),
    ("below-min-length.wav", "clips", "audio/wav", lambda: wav(1.9), "media_too_short"),
    ("max-length.wav", "clips", "audio/wav", lambda: wav(3), None),
    ("over-max-length.wav", "clips", "audio/wav", lambda: wav(3.1), "media_too_long"),
    # Video too: FFmpeg probes the MP4 through a presigned GET.
    ("short.mp4", "clips", "video/mp4", lambda: mp4(1), "media_too_short"),
    ("long.mp4", "clips", "video/mp4", lambda: mp4(5), "media_too_long"),
]


def test_a_worker_checks_pixels_sides_and_duration_by_the_files_profile(live, database_url, tmp_path, profiles_file):
    broker = live.app.config["BROKER_URL"]
    env = Env.open(live)
    contents = [make() for _, _, _, make, _ in EDGES]
    specs = [
        {"file_name": name, "content_type": ctype, "file_size": len(data), "profile": profile}
        for (name, profile, ctype, _, _), data in zip(EDGES, contents, strict=True)
    ]
    log = tmp_path / "worker.log"
    settings = worker_settings(live, database_url, broker, INSPECT="true", UPLOAD_PROFILES_FILE=str(profiles_file))
    worker = start_worker(log, settings)
    try:
        files = settled(env, put_and_confirm(env, specs, contents), log)
    finally:
        stop_worker(worker)

    outcomes = {file["file_name"]: (file["inspection"]["reason"] or {}).get("code") for file in files}
    assert outcomes == {name: reason for name, _, _, _, reason in EDGES}
    for file, data in zip(files, contents, strict=True):
        assert file["profile"] == ("pictures" if file["file_name"].endswith(".png") else "clips"), file
        if file["inspection"]["reason"] is None:
            assert (file["status"], file["inspection"]["state"]) == ("complete", "passed")
            assert env.read(file["s3_key"]) == data
        else:
            assert file["status"] == "rejected" and env.head(file["s3_key"]) is None
    # The profile's folder and default tier: pictures are filed under pictures/, clips stored infrequent-access.
    by_name = {file["file_name"]: file for file in files}
    assert by_name["max-pixels.png"]["folder"] == "pictures"
    assert (by_name["max-pixels.png"]["inspection"]["width"], by_name["max-pixels.png"]["inspection"]["height"]) == (
        150,
        200,
    )
    clip = by_name["max-length.wav"]
    assert (clip["tier"], clip["inspection"]["duration_seconds"]) == ("standard_ia", 3.0)
    assert env.head(clip["s3_key"])["StorageClass"] == "STANDARD_IA"
    assert "less than 2 s" in by_name["below-min-length.wav"]["inspection"]["reason"]["message"]
    passed = sum(len(data) for (_, _, _, _, reason), data in zip(EDGES, contents, strict=True) if reason is None)
    assert env.api.usage()["used_bytes"] == passed
