"""Upload profiles (s3drive/profiles.py, policy.Profile): the file is validated at start-up with one line
naming the profile and the field; presign, multipart, Uppy, listing, /limits and /formats honour them."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import make_test_app, register_and_login
from helpers import presign, spec, upload

from s3drive import ConfigError
from s3drive.app import close_app
from s3drive.dev.server import EXAMPLE_PROFILES
from s3drive.parts import MIB
from s3drive.services.inspection import limits as inspection_limits

REPO_ROOT = Path(__file__).resolve().parents[1]

PROFILES = """
[avatar]
description = "Profile picture"
max_file_size = "10 MiB"
allowed_content_types = ["image/jpeg", "image/png"]
min_image_side = 100
max_image_side = 4096
folder = "avatars"

[archive]
max_file_size = 1073741824
allowed_content_types = ["application/zip"]
default_tier = "glacier_ir"
"""


@pytest.fixture
def profiles_file(tmp_path) -> Path:
    path = tmp_path / "profiles.toml"
    path.write_text(PROFILES)
    return path


@pytest.fixture
def app_config(profiles_file):
    return {"UPLOAD_PROFILES_FILE": str(profiles_file), "INSPECT": True}


def start_with(database_url: str, tmp_path: Path, text: str, **settings) -> str:
    """Start an app on a profiles file of this text; return the ConfigError's message."""
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        make_test_app(database_url, UPLOAD_PROFILES_FILE=str(path), **{"INSPECT": True, **settings})
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"S3DRIVE_UPLOAD_PROFILES_FILE {path}: ")
    return message.split(": ", 1)[1]


# -- start-up ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('[avatar]\nmax_file_sise = "10 MiB"', "profile 'avatar', field max_file_sise: unknown field (a profile takes"),
        ('[avatar]\nmax_file_size = "ten megs"', "profile 'avatar', field max_file_size: not a size: 'ten megs'"),
        ("[avatar]\nmax_file_size = 0", "profile 'avatar', field max_file_size: must be a size"),
        ("[avatar]\nmax_file_size = -5", "profile 'avatar', field max_file_size: must be a size"),
        ('[avatar]\nmax_file_size = "6 GiB"', "field max_file_size: 6 GiB is more than S3DRIVE_MAX_FILE_SIZE (5 GiB)"),
        ("[avatar]\nallowed_content_types = []", "field allowed_content_types: list at least one type"),
        ('[avatar]\nallowed_content_types = "image/png"', "field allowed_content_types: Not a valid list."),
        ('[avatar]\nallowed_content_types = ["image/png", "png"]', "field allowed_content_types[1]: not a MIME type"),
        (
            '[avatar]\nallowed_content_types = ["application/x-msdownload"]',
            "field allowed_content_types: application/x-msdownload is not allowed by S3DRIVE_ALLOWED_CONTENT_TYPES",
        ),
        ("[avatar]\nmin_image_side = 0", "field min_image_side: Must be greater than or equal to 1"),
        ('[avatar]\nmin_image_side = "100"', "field min_image_side: Not a valid integer."),
        (
            "[avatar]\nmin_image_side = 500\nmax_image_side = 400",
            "field min_image_side: 500 is more than max_image_side",
        ),
        (
            "[avatar]\nmin_image_side = 200\nmax_image_pixels = 1000",
            "field min_image_side: a 200 × 200 image is more than max_image_pixels (1000)",
        ),
        ("[avatar]\nmax_image_pixels = 200000000", "field max_image_pixels: 200000000 is more than S3DRIVE_MAX_IMAGE"),
        ("[clip]\nmax_media_seconds = 0", "profile 'clip', field max_media_seconds: must be a number of seconds"),
        ('[clip]\nmin_media_seconds = "1"', "field min_media_seconds: must be a number of seconds above 0"),
        ("[clip]\nmax_media_seconds = true", "field max_media_seconds: must be a number of seconds"),
        ("[clip]\nmin_media_seconds = 10\nmax_media_seconds = 5", "field min_media_seconds: 10 is more than"),
        ("[clip]\nmax_media_seconds = 99999", "field max_media_seconds: 99999 is more than S3DRIVE_MAX_MEDIA_SECONDS"),
        ('[clip]\ndefault_tier = "cold"', "profile 'clip', field default_tier: Must be one of: standard"),
        ('[clip]\nfolder = "a/../b"', "profile 'clip', field folder: Folder may not contain '..'."),
        ('[clip]\ndescription = ""', "profile 'clip', field description: Length must be between 1 and 200."),
        ("[default]\nmax_file_size = 10", "profile 'default': 'default' is built in"),
        ('["Avatar Pics"]\nmax_file_size = 10', "profile 'Avatar Pics': a name is 1 to 64 of a-z"),
        ("avatar = 5", "profile 'avatar': must be a table"),
        ("[avatar\nmax_file_size = 5", "not valid TOML: "),
    ],
)
def test_a_bad_profiles_file_stops_the_start_up_naming_the_profile_and_the_field(database_url, tmp_path, text, says):
    assert says in start_with(database_url, tmp_path, text)


def test_limits_checked_on_the_bytes_need_inspection(database_url, tmp_path):
    message = start_with(database_url, tmp_path, "[avatar]\nmax_file_size = 10\nmin_image_side = 100", INSPECT=False)
    assert message == (
        "profile 'avatar', field min_image_side: is checked by content inspection,"
        " which S3DRIVE_INSPECT=false turns off"
    )


def test_an_unreadable_profiles_file_is_named(database_url, tmp_path):
    missing = tmp_path / "nowhere.toml"
    with pytest.raises(ConfigError, match=f"S3DRIVE_UPLOAD_PROFILES_FILE {missing}: cannot be read"):
        make_test_app(database_url, UPLOAD_PROFILES_FILE=str(missing))


def test_a_profile_narrows_a_narrower_global_policy_too(database_url, tmp_path):
    # The operator lowers S3DRIVE_MAX_FILE_SIZE under a profile's: the start-up says which profile to fix.
    message = start_with(database_url, tmp_path, PROFILES, MAX_FILE_SIZE=5 * MIB)
    assert message.startswith(
        "profile 'avatar', field max_file_size: 10 MiB is more than S3DRIVE_MAX_FILE_SIZE (5 MiB)"
    )


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-c", "import wsgi"],  # what gunicorn and the task-queue workers import
        [sys.executable, "-m", "flask", "--app", "wsgi", "routes"],
    ],
)
def test_the_process_stops_with_one_line(tmp_path, command):
    bad = tmp_path / "profiles.toml"
    bad.write_text('[video]\nallowed_content_types = ["video/mp4"]\nmax_media_seconds = "3 minutes"\n')
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("S3DRIVE_")},
        "S3DRIVE_S3_BUCKET": "b",
        "S3DRIVE_JWT_SECRET_KEY": "k" * 40,
        "S3DRIVE_PUBLIC_URL": "https://files.example.com",
        "S3DRIVE_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "S3DRIVE_UPLOAD_PROFILES_FILE": str(bad),
    }
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"S3DRIVE_UPLOAD_PROFILES_FILE {bad}: profile 'video', field max_media_seconds: must be a number" in lines[0]


def test_the_example_file_loads_and_every_field_is_explained():
    with open(EXAMPLE_PROFILES, "rb") as handle:
        tables = tomllib.load(handle)
    assert set(tables) == {"avatar", "document", "video"}
    app = make_test_app("sqlite://", UPLOAD_PROFILES_FILE=str(EXAMPLE_PROFILES), INSPECT=True)
    try:
        profiles = app.extensions["s3drive.policy"].profiles
        assert list(profiles) == ["default", "avatar", "document", "video"]
        assert profiles["avatar"].max_file_size == 10 * MIB and profiles["video"].max_media_seconds == 180
        assert profiles["document"].allowed_content_types[0] == "application/pdf"
    finally:
        close_app(app)
    text = EXAMPLE_PROFILES.read_text()
    readme = (REPO_ROOT / "README.md").read_text()
    for field in ("max_file_size", "allowed_content_types", "max_image_pixels", "min_image_side", "max_image_side"):
        assert f"#   {field}" in text and f"`{field}`" in readme
    for field in ("min_media_seconds", "max_media_seconds", "default_tier", "folder", "description"):
        assert f"#   {field}" in text and f"`{field}`" in readme


# -- the API ------------------------------------------------------------------------------------


def test_limits_and_formats_list_every_profiles_effective_limits(client):
    limits = client.get("/api/files/limits").get_json()
    assert list(limits["profiles"]) == ["default", "avatar", "archive"]
    default, avatar = limits["profiles"]["default"], limits["profiles"]["avatar"]
    assert default["max_file_size"] == limits["max_file_size"]
    assert default["allowed_content_types"] == limits["allowed_content_types"]
    assert avatar == {
        "description": "Profile picture",
        "max_file_size": 10 * MIB,
        "allowed_content_types": ["image/jpeg", "image/png"],
        "max_image_pixels": 100_000_000,  # inherited from S3DRIVE_MAX_IMAGE_PIXELS
        "min_image_side": 100,
        "max_image_side": 4096,
        "min_media_seconds": None,
        "max_media_seconds": 21600,
        "default_tier": "standard",
        "folder": "avatars",
    }
    assert limits["profiles"]["archive"]["default_tier"] == "glacier_ir"

    formats = client.get("/api/files/formats").get_json()
    assert formats["profiles"]["default"]["kinds"] == formats["kinds"]
    image = formats["profiles"]["avatar"]["kinds"]["image"]
    assert (image["types"], image["min_side"], image["max_side"]) == (["image/jpeg", "image/png"], 100, 4096)
    assert formats["profiles"]["avatar"]["kinds"]["video"]["types"] == []
    assert formats["profiles"]["archive"]["kinds"]["archive"]["types"] == ["application/zip"]
    assert "min_side" not in formats["kinds"]["image"]


def test_presign_applies_the_profile_of_each_file(client, auth, s3):
    big_photo = spec("me.jpg", content_type="image/jpeg", profile="avatar") | {"file_size": 10 * MIB + 1}
    body = presign(
        client,
        auth,
        spec("me.jpg", profile="avatar", folder="2026"),
        big_photo,
        spec("me.gif", content_type="image/gif", profile="avatar"),
        spec("x.zip", content_type="application/zip", profile="avatars"),
        spec("old.zip", content_type="application/zip", profile="archive", tier="standard"),
        spec("new.zip", content_type="application/zip", profile="archive"),
        spec("me.gif", content_type="image/gif"),  # no profile: the global policy takes a GIF
    )
    failed = {item["index"]: item["error"] for item in body["failed"]}
    assert {index: error["code"] for index, error in failed.items()} == {
        1: "file_too_large",
        2: "content_type_not_allowed",
        3: "validation_error",
    }
    assert (
        failed[1]["message"]
        == "File is 10 MiB (10,485,761 bytes); the limit for avatar uploads is 10 MiB (10,485,760 bytes)."
    )
    assert (
        failed[2]["message"]
        == "Content type image/gif is not allowed for avatar uploads (they take image/jpeg, image/png)."
    )
    assert failed[3]["details"] == {
        "profile": ["There is no upload profile 'avatars'; this server has: default, avatar, archive."]
    }
    files = {
        t["file_name"] + str(i): client.get(f"/api/files/{t['id']}", headers=auth).get_json()
        for i, t in enumerate(body["successful"])
    }
    records = list(files.values())
    assert [(f["file_name"], f["profile"], f["folder"], f["tier"]) for f in records] == [
        ("me.jpg", "avatar", "avatars/2026", "standard"),  # the client's folder goes inside the profile's
        ("old.zip", "archive", "", "standard"),  # a tier asked for wins over the profile's default
        ("new.zip", "archive", "", "glacier_ir"),
        ("me.gif", "default", "", "standard"),
    ]
    assert body["successful"][2]["headers"]["x-amz-storage-class"] == "GLACIER_IR"
    # A client cannot climb out of the profile's folder.
    escape = client.post("/api/files/upload/", json=spec("me.jpg", profile="avatar", folder="../x"), headers=auth)
    assert escape.status_code == 422 and escape.get_json()["error"]["details"] == {
        "folder": ["Folder may not contain '..'."]
    }


def test_single_form_answers_with_the_profiles_status(client, auth):
    def status_of(**fields) -> tuple[int, str]:
        response = client.post("/api/files/upload/", json=spec("me.jpg", **fields), headers=auth)
        return response.status_code, response.get_json().get("error", {}).get("code", "")

    assert status_of(profile="avatar") == (200, "")
    assert status_of(profile="avatar", content_type="image/webp") == (415, "content_type_not_allowed")
    assert status_of(profile="nope") == (422, "validation_error")
    assert status_of(profile=5) == (422, "validation_error")
    assert status_of(profile="x" * 65) == (422, "validation_error")
    assert status_of(profile=None) == (200, "")


def test_multipart_and_uppy_take_the_profile(client, auth):
    # A 200 MiB zip is multipart; the archive profile allows it, the avatar profile refuses its type.
    created = client.post(
        "/api/files/multipart/",
        json=spec("big.zip", content_type="application/zip", profile="archive") | {"file_size": 200 * MIB},
        headers=auth,
    )
    assert created.status_code == 201, created.get_json()
    record = client.get(f"/api/files/{created.get_json()['id']}?status=uploading", headers=auth).get_json()
    assert (record["profile"], record["tier"]) == ("archive", "glacier_ir")
    for size, status in ((200 * MIB, 413), (6 * MIB, 415)):
        refused = client.post(
            "/api/files/multipart/",
            json=spec("big.zip", content_type="application/zip", profile="avatar") | {"file_size": size},
            headers=auth,
        )
        assert refused.status_code == status

    uppy = client.post(
        "/uppy/s3/multipart",
        json={"filename": "me.png", "type": "image/png", "metadata": {"profile": "avatar", "size": str(11 * MIB)}},
        headers=auth,
    )
    assert uppy.status_code == 413 and "avatar" in uppy.get_json()["error"]
    unknown = client.get(
        "/uppy/s3/params",
        query_string={"filename": "me.png", "type": "image/png", "metadata[profile]": "x"},
        headers=auth,
    )
    assert unknown.status_code == 422 and "no upload profile 'x'" in unknown.get_json()["error"]
    form = client.get(
        "/uppy/s3/params",
        query_string={"filename": "me.png", "type": "image/png", "metadata[profile]": "avatar"},
        headers=auth,
    )
    assert form.status_code == 200
    # The form's policy allows at most the profile's 10 MiB (the global one would allow the 100 MiB threshold).
    assert f'["content-length-range", 0, {10 * MIB}]' in _decoded_policy(form.get_json()["fields"])


def _decoded_policy(fields: dict) -> str:
    import base64

    return base64.b64decode(fields["policy"]).decode().replace(" ", "").replace(",", ", ")


def test_listing_filters_by_profile_and_copies_keep_it(client, auth):
    photo = upload(client, auth, "me.png", b"\x89PNG" + b"p" * 10, "image/png", profile="avatar")
    note = upload(client, auth, "note.txt", b"hello")
    assert photo["profile"] == "avatar" and note["profile"] == "default"

    def listed(**params) -> list[str]:
        return [f["id"] for f in client.get("/api/files/", query_string=params, headers=auth).get_json()["items"]]

    assert listed(profile="avatar") == [photo["id"]]
    assert listed(profile="default") == [note["id"]]
    assert listed(profile="archive") == []
    # The profile is written into the SQL as a literal (services/listing.py): quotes stay data.
    assert listed(profile="avatar' OR 'x'='x") == [] and listed(profile="a\\'b\"%") == []
    assert sorted(listed()) == sorted([photo["id"], note["id"]])
    assert client.get("/api/files/?profile=", headers=auth).status_code == 422
    copied = client.post(f"/api/files/{photo['id']}/copy", json={"file_name": "me2.png"}, headers=auth)
    assert copied.status_code in (200, 201), copied.get_json()
    assert copied.get_json()["profile"] == "avatar"


def test_inspection_checks_a_file_under_its_profile_and_a_removed_one_under_the_default(app):
    with app.test_request_context():
        avatar = inspection_limits("avatar")
        assert (avatar.min_image_side, avatar.max_image_side, avatar.allowed_content_types) == (
            100,
            4096,
            ("image/jpeg", "image/png"),
        )
        gone = inspection_limits("retired")
        assert (gone.min_image_side, gone.max_image_side) == (None, None)
        assert gone.allowed_content_types == inspection_limits("default").allowed_content_types


def test_the_openapi_document_describes_profile(client):
    document = client.get("/openapi.json").get_json()
    schemas = document["components"]["schemas"]
    assert "profile" in schemas["FileSpec"]["properties"] and "profile" in schemas["File"]["properties"]
    assert "profiles" in schemas["Limits"]["properties"]
    parameters = document["paths"]["/api/files/"]["get"]["parameters"]
    assert "profile" in {parameter["name"] for parameter in parameters}


def test_a_second_user_cannot_see_anothers_files_by_profile(client, auth):
    upload(client, auth, "me.png", b"\x89PNG" + b"p" * 10, "image/png", profile="avatar")
    other = register_and_login(client, "mallory")
    assert client.get("/api/files/?profile=avatar", headers=other).get_json()["items"] == []
