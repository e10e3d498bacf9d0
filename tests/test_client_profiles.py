"""Upload profiles in the CLI client (s3drive-client): `profiles`, `upload --profile`, `ls --profile`.

The real app over HTTP with a profiles file (S3DRIVE_UPLOAD_PROFILES_FILE, here the app's
UPLOAD_PROFILES_FILE), S3 on MiniStack with AUTH=true, the client run in this process as in
test_client.py (whose fixtures these tests share: `live`, `run`, `user`, `home` use this module's
`stack`). Files the profile refuses fail before they are hashed or presigned; the others are sent
with `profile` in their FileSpec (and multipart create) and their records carry it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import test_client
from conftest import make_test_app
from live import ServedApp
from s3servers import ministack_server
from test_client import MIB, RequestLog, Stack, api_for, payload
from test_inspect_image import image_bytes
from test_inspect_pdf import make_pdf

from s3drive.client import cli
from s3drive.client.limits import UnknownProfile, policy_problem, profile_limits, profile_names
from s3drive.client.local_files import LocalFile
from s3drive.dev import ministack

pytestmark = pytest.mark.e2e

# test_client's fixtures; the `stack` they stand on is this module's (with the profiles file).
home, live, run, user = test_client.home, test_client.live, test_client.run, test_client.user

PROFILES_TOML = """
[avatar]
description = "Profile pictures"
max_file_size = "1 MiB"
allowed_content_types = ["image/jpeg", "image/png", "image/webp"]
min_image_side = 100
max_image_side = 4096

[document]
description = "PDF and office documents"
max_file_size = "20 MiB"
allowed_content_types = ["application/pdf", "application/msword"]
"""
MAX_FILE_SIZE = 50 * MIB
PRESIGN = ("POST", "/api/files/upload/")
CREATE_MULTIPART = ("POST", "/api/files/multipart/")


@pytest.fixture(scope="module")
def stack(database_url, tmp_path_factory) -> Iterator[Stack]:
    """Serve one app with the profiles file (5 MiB multipart threshold and parts) against one MiniStack."""
    bucket = f"s3drive-profiles-{uuid.uuid4().hex[:10]}"
    profiles_file = tmp_path_factory.mktemp("profiles") / "upload-profiles.toml"
    profiles_file.write_text(PROFILES_TOML)
    with ministack_server(tmp_path_factory.mktemp("ministack")) as s3_url:
        app = make_test_app(
            database_url,
            S3_BUCKET=bucket,
            S3_ENDPOINT_URL=s3_url,
            S3_ADDRESSING_STYLE="path",
            S3_CONFIRM="list",
            MULTIPART_THRESHOLD=5 * MIB,
            DEFAULT_PART_SIZE=5 * MIB,
            MAX_FILE_SIZE=MAX_FILE_SIZE,
            UPLOAD_PROFILES_FILE=str(profiles_file),
            # Side limits are checked on the bytes: a profile with them needs inspection on (queued, not run here).
            INSPECT=True,
        )
        log = RequestLog(app.wsgi_app)
        app.wsgi_app = log
        s3 = ministack.s3_client(s3_url)
        s3.create_bucket(Bucket=bucket)
        with ServedApp(app, "s3drive-profiles-tests") as served:
            yield Stack(app, served.url, s3, bucket, log)


def write(directory: Path, name: str, data: bytes) -> Path:
    path = directory / name
    path.write_bytes(data)
    return path


def sparse(directory: Path, name: str, size: int) -> Path:
    """A file of size bytes that costs no disk (and that no test may hash: it is refused first)."""
    path = directory / name
    with open(path, "wb") as handle:
        handle.truncate(size)
    return path


# -- the profiles command -------------------------------------------------------------------


def test_profiles_lists_the_effective_limits_in_the_servers_order(live, run, user):
    table = run("profiles")
    assert table.code == 0, table.err
    lines = table.out.splitlines()
    assert lines[0].split() == ["NAME", "DESCRIPTION", "MAX", "SIZE", "TYPES", "SIDES", "SECONDS"]
    rows = [line for line in lines[1:] if not line.startswith(" ")]  # the long type lists fold onto more lines
    assert [row.split()[0] for row in rows] == ["default", "avatar", "document"]
    avatar = rows[1]
    assert "Profile pictures" in avatar and "1 MiB" in avatar and "100–4096 px" in avatar
    assert "image/jpeg, image/png, image/webp" in avatar
    assert "50 MiB" in rows[0]  # the default profile is the global policy

    as_json = run("profiles", "--json")
    assert as_json.code == 0, as_json.err
    profiles = as_json.json()
    assert list(profiles) == ["default", "avatar", "document"]
    assert profiles["avatar"]["max_file_size"] == MIB
    assert profiles["avatar"]["allowed_content_types"] == ["image/jpeg", "image/png", "image/webp"]
    assert (profiles["avatar"]["min_image_side"], profiles["avatar"]["max_image_side"]) == (100, 4096)
    assert profiles["default"]["max_file_size"] == MAX_FILE_SIZE
    assert profiles["document"]["description"] == "PDF and office documents"


def test_profiles_needs_no_account_but_a_server(live, run, home):
    anonymous = run("profiles", "--url", live.base_url, "--json")
    assert anonymous.code == 0, anonymous.err
    assert list(anonymous.json()) == ["default", "avatar", "document"]
    nowhere = run("profiles")
    assert (nowhere.code, nowhere.last_error) == (2, "error: usage: name the server with --url, or log in first")


# -- upload --profile ----------------------------------------------------------------------


def test_an_unknown_profile_is_a_usage_error_naming_the_known_ones(live, run, user, tmp_path):
    photo = write(tmp_path, "me.png", image_bytes("PNG", size=(120, 120)))
    live.log.calls.clear()
    result = run("upload", photo, "--profile", "avatr")
    assert result.code == 2
    assert result.last_error == "error: usage: unknown profile 'avatr' (this server has: default, avatar, document)"
    assert live.log.count(*PRESIGN) == 0


def test_files_the_profile_refuses_fail_before_hashing_and_the_others_carry_it(live, run, user, tmp_path, monkeypatch):
    photo = write(tmp_path, "me.png", image_bytes("PNG", size=(120, 120)))
    big = sparse(tmp_path, "huge.jpg", 2 * MIB)
    pdf = write(tmp_path, "cv.pdf", make_pdf(pages=1))
    hashed = []
    real_hash = cli.Uploader._hash_all

    def recording(self, files):
        hashed.extend(f.name for f in files)
        return real_hash(self, files)

    monkeypatch.setattr(cli.Uploader, "_hash_all", recording)
    live.log.calls.clear()
    result = run("upload", photo, big, pdf, "--profile", "avatar", "--json")
    assert result.code == 1
    outcomes = {item["file_name"]: item for item in result.json()["files"]}
    assert outcomes["me.png"]["status"] == "complete"
    assert outcomes["huge.jpg"]["error"] == {
        "code": "file_too_large",
        "message": "File is 2 MiB; the limit for avatar uploads is 1 MiB.",
    }
    assert outcomes["cv.pdf"]["error"] == {
        "code": "content_type_not_allowed",
        "message": "Content type application/pdf is not allowed for avatar uploads "
        "(they take image/jpeg, image/png, image/webp).",
    }
    assert result.last_error == "error: upload_failed: 2 of 3 files failed (listed above)."
    assert hashed == ["me.png"]
    assert live.log.count(*PRESIGN) == 1

    record = api_for(live).get_file(outcomes["me.png"]["id"])
    assert record["profile"] == "avatar"
    assert live.read(record["s3_key"]) == photo.read_bytes()


def test_one_refused_file_is_the_commands_error_line(live, run, user, tmp_path):
    pdf = write(tmp_path, "cv.pdf", make_pdf(pages=1))
    live.log.calls.clear()
    result = run("upload", pdf, "--profile", "avatar")
    assert result.code == 1
    assert result.last_error == (
        f"error: content_type_not_allowed: {pdf}: Content type application/pdf is not allowed for avatar uploads"
        " (they take image/jpeg, image/png, image/webp)."
    )
    assert result.err.count("content_type_not_allowed") == 1, result.err
    assert live.log.calls.count(PRESIGN) == 0


def test_multipart_uploads_carry_the_profile(live, run, user, tmp_path):
    report = write(tmp_path, "report.pdf", make_pdf(pages=1) + payload(7, 6 * MIB))  # over the 5 MiB threshold
    live.log.calls.clear()
    result = run("upload", report, "--profile", "document", "--json")
    assert result.code == 0, result.err
    [outcome] = result.json()["files"]
    assert outcome["multipart"] is True and outcome["status"] == "complete"
    assert live.log.count(*CREATE_MULTIPART) == 1
    record = api_for(live).get_file(outcome["id"])
    assert record["profile"] == "document" and record["size"] == report.stat().st_size


def test_without_a_profile_the_global_limits_refuse_first_and_files_are_default(live, run, user, tmp_path):
    huge = sparse(tmp_path, "film.mp4", MAX_FILE_SIZE + 1)
    live.log.calls.clear()
    refused = run("upload", huge)
    assert refused.code == 1
    assert refused.last_error == (
        f"error: file_too_large: {huge}: File is 50 MiB (52,428,801 bytes); the limit is 50 MiB (52,428,800 bytes)."
    )
    assert live.log.calls.count(PRESIGN) == 0

    notes = write(tmp_path, "notes.txt", b"plain")
    sent = run("upload", notes, "--json")
    assert sent.code == 0, sent.err
    assert api_for(live).get_file(sent.json()["files"][0]["id"])["profile"] == "default"


# -- ls and info ----------------------------------------------------------------------------


def test_ls_filters_by_profile_and_info_shows_it(live, run, user, tmp_path):
    photo = write(tmp_path, "me.png", image_bytes("PNG", size=(120, 120)))
    notes = write(tmp_path, "notes.txt", b"plain")
    assert run("upload", photo, "--profile", "avatar").code == 0
    assert run("upload", notes).code == 0

    def listed(*args: str) -> dict[str, str]:
        result = run("ls", "--json", *args)
        assert result.code == 0, result.err
        return {item["file_name"]: item["profile"] for item in result.json()["items"]}

    assert listed() == {"me.png": "avatar", "notes.txt": "default"}
    assert listed("--profile", "avatar") == {"me.png": "avatar"}
    assert listed("--profile", "default") == {"notes.txt": "default"}
    table = run("ls", "--profile", "avatar")
    assert "me.png" in table.out and "notes.txt" not in table.out

    photo_id = next(iter(json.loads(run("ls", "--json", "--profile", "avatar").out)["items"]))["id"]
    info = run("info", photo_id)
    assert info.code == 0, info.err
    assert "profile:  avatar" in info.out.splitlines()


# -- the checks themselves, no server ----------------------------------------------------------

LIMITS = {
    "max_file_size": 5 * 1024**3,
    "allowed_content_types": ["image/*", "application/pdf"],
    "profiles": {
        "default": {"max_file_size": 5 * 1024**3, "allowed_content_types": ["image/*", "application/pdf"]},
        "avatar": {"max_file_size": 10 * MIB, "allowed_content_types": ["image/png"], "description": "Faces"},
    },
}


def local(name: str, size: int, content_type: str) -> LocalFile:
    return LocalFile(Path("/nowhere") / name, name, None, size, 0, content_type)


def test_profile_limits_and_problems_without_a_server():
    assert profile_names(LIMITS) == ["default", "avatar"]
    assert profile_names({"max_file_size": 1}) == ["default"]  # a server without profiles
    assert profile_limits(LIMITS, None) is LIMITS["profiles"]["default"]
    assert profile_limits(LIMITS, "avatar")["description"] == "Faces"
    legacy = {"max_file_size": 1}
    assert profile_limits(legacy, None) is legacy and profile_limits(legacy, "default") is legacy
    with pytest.raises(UnknownProfile, match=r"unknown profile 'video' \(this server has: default, avatar\)"):
        profile_limits(LIMITS, "video")
    with pytest.raises(UnknownProfile, match=r"this server has: default\)"):
        profile_limits(legacy, "avatar")

    avatar = profile_limits(LIMITS, "avatar")
    assert policy_problem(local("a.png", 10 * MIB, "image/png"), avatar, "avatar") is None
    too_big = policy_problem(local("a.png", 10 * MIB + 1, "image/png"), avatar, "avatar")
    assert too_big.code == "file_too_large"
    assert too_big.details == {"file_size": 10 * MIB + 1, "max_file_size": 10 * MIB, "profile": "avatar"}
    assert too_big.message == (
        "File is 10 MiB (10,485,761 bytes); the limit for avatar uploads is 10 MiB (10,485,760 bytes)."
    )
    assert policy_problem(local("a.jpg", 10, "IMAGE/JPEG"), profile_limits(LIMITS, None)) is None  # wildcards, case
    refused = policy_problem(local("a.txt", 10, "text/plain"), profile_limits(LIMITS, None))
    assert (refused.code, refused.message) == ("content_type_not_allowed", "Content type text/plain is not allowed.")
    assert cli.span_text(100, 4096, " px") == "100–4096 px"
    assert cli.span_text(None, 180.0, " s") == "≤ 180 s"
    assert cli.span_text(1.5, None, " s") == "≥ 1.5 s"
    assert cli.span_text(None, None, " s") == ""


def test_upload_and_ls_take_profile_in_their_help():
    parser = cli.build_parser()
    args = parser.parse_args(["upload", "x", "--profile", "avatar"])
    assert args.profile == "avatar"
    assert parser.parse_args(["ls", "--profile", "avatar"]).profile == "avatar"
    assert parser.parse_args(["profiles", "--json"]).json is True
