"""Content inspection of completed uploads: real bytes through the API, the inspection service run as a
worker runs it (moto in-process here; real worker processes in test_inspection_worker.py)."""

from __future__ import annotations

import io
import time
from datetime import timedelta

import pytest
from conftest import BUCKET, admin_login, register_and_login
from helpers import presign, put_bytes, spec, usage
from PIL import Image
from samples import Sample, samples
from sqlalchemy import select

from s3drive import policy
from s3drive.extensions import db
from s3drive.models import File
from s3drive.policy import preview_key, quarantine_key
from s3drive.profiles import load_profiles
from s3drive.services.inspection import inspect_file, requeue_stale
from s3drive.timeutil import utcnow


@pytest.fixture(scope="module")
def sample_files(tmp_path_factory) -> list[Sample]:
    # FFmpeg reads media over HTTP itself, which moto in-process cannot answer (test_inspection_worker.py can).
    return [s for s in samples(tmp_path_factory.mktemp("samples")) if s.kind != "video"]


@pytest.fixture
def app_config():
    return {"INSPECT": True}


def upload(client, auth, sample: Sample) -> dict:
    """Presign, PUT the bytes, confirm; return the confirmed File."""
    [ticket] = presign(client, auth, spec(sample.name, sample.data, sample.content_type))["successful"]
    assert put_bytes(ticket, sample.data).status_code == 200
    response = client.post("/api/files/confirm_upload/", json={"id": ticket["id"]}, headers=auth)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["file"]


def run_inspection(app, file_id: str) -> str:
    with app.app_context():
        return str(inspect_file(file_id))


def get_file(client, auth, file_id: str) -> dict:
    response = client.get(f"/api/files/{file_id}", headers=auth)
    assert response.status_code == 200
    return response.get_json()


def objects(s3) -> dict[str, int]:
    return {o["Key"]: o["Size"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}


def test_every_sample_gets_its_verdict_with_real_bytes(client, auth, app, s3, sample_files):
    files = [upload(client, auth, sample) for sample in sample_files]
    # Confirmed: complete, counted, inspection pending, downloads held back until it passes.
    assert {f["status"] for f in files} == {"complete"}
    assert {f["inspection"]["state"] for f in files} == {"pending"}
    assert usage(client, auth)["used_bytes"] == sum(len(s.data) for s in sample_files)
    held = client.get(f"/api/files/{files[0]['id']}/download", headers=auth)
    assert held.status_code == 409 and held.get_json()["error"]["code"] == "not_ready"

    outcomes = [run_inspection(app, f["id"]) for f in files]
    assert outcomes == ["rejected" if s.reason else "passed" for s in sample_files]
    kept = 0
    for sample, before in zip(sample_files, files, strict=True):
        after = get_file(client, auth, before["id"])
        inspection = after["inspection"]
        if sample.reason:
            assert after["status"] == "rejected", sample.name
            assert inspection["state"] == "rejected" and inspection["reason"]["code"] == sample.reason, (
                sample.name,
                inspection,
            )
            assert inspection["reason"]["message"]
            assert before["s3_key"] not in objects(s3)  # deleted (no quarantine by default)
            continue
        kept += len(sample.data)
        assert after["status"] == "complete" and inspection["state"] == "passed", (sample.name, inspection)
        assert inspection["reason"] is None
        assert (inspection["width"], inspection["height"]) == (sample.width, sample.height), sample.name
        assert inspection["pages"] == sample.pages and inspection["entry_count"] == sample.entry_count
        assert inspection["detected_type"]
        if sample.kind is None:
            assert inspection["thumbnail_url"] is None, sample.name
            continue
        preview = s3.get_object(Bucket=BUCKET, Key=preview_key(before["s3_key"]))
        assert preview["ContentType"] == "image/webp"
        with Image.open(io.BytesIO(preview["Body"].read())) as image:
            assert image.format == "WEBP" and max(image.size) <= 320
            if sample.name == "rotated.jpg":
                assert image.width < image.height  # EXIF orientation 6 applied: shown portrait
        assert inspection["thumbnail_url"].startswith("http")
        assert client.get(f"/api/files/{before['id']}/download", headers=auth).status_code == 200
    # Rejected files no longer count; previews never do.
    assert usage(client, auth)["used_bytes"] == kept
    listed = client.get("/api/files/?limit=100", headers=auth).get_json()["items"]
    assert {item["inspection"]["state"] for item in listed} == {"passed"}
    assert all(item["inspection"]["thumbnail_url"] for item in listed if item["file_name"].endswith((".jpg", ".pdf")))


def test_an_inspection_is_settled_once(client, auth, app, s3, sample_files):
    bomb = next(s for s in sample_files if s.reason == "archive_bomb")
    other = next(s for s in sample_files if s.name == "notes.txt")
    kept, doomed = upload(client, auth, other), upload(client, auth, bomb)
    assert run_inspection(app, doomed["id"]) == "rejected"
    # Delivered again (a redelivery, or a duplicate the sweeper sent): nothing moves twice.
    assert run_inspection(app, doomed["id"]) == "skipped"
    assert run_inspection(app, kept["id"]) == "passed"
    assert run_inspection(app, kept["id"]) == "skipped"
    assert usage(client, auth)["used_bytes"] == len(other.data)


def test_a_lapsed_claim_is_taken_over_and_a_live_one_is_not(client, auth, app, s3, sample_files):
    sample = next(s for s in sample_files if s.name == "plain.png")
    file = upload(client, auth, sample)
    with app.app_context():
        record = db.session.get(File, file["id"])
        record.inspection_claimed_at = utcnow()  # a worker holds it
        db.session.commit()
        assert str(inspect_file(file["id"])) == "skipped"
        assert requeue_stale(utcnow(), 100) == 0
        record = db.session.get(File, file["id"])
        record.inspection_claimed_at = utcnow().replace(year=2000)  # that worker died long ago
        db.session.commit()
        assert requeue_stale(utcnow(), 100) == 1  # the sweeper queues it again
        assert str(inspect_file(file["id"])) == "passed"


@pytest.mark.parametrize("app_config", [{"INSPECT": True, "QUARANTINE": True}])
def test_quarantine_keeps_rejected_objects_for_an_admin(client, auth, admin_auth, app, s3, sample_files):
    sample = next(s for s in sample_files if s.name == "photo.jpg")
    file = upload(client, auth, sample)
    assert run_inspection(app, file["id"]) == "rejected"
    kept = quarantine_key(file["s3_key"])
    assert objects(s3) == {kept: len(sample.data)}
    assert usage(client, auth)["used_bytes"] == 0

    listed = client.get("/api/admin/quarantine", headers=admin_auth)
    assert listed.status_code == 200
    [item] = listed.get_json()["items"]
    assert item["id"] == file["id"] and item["quarantine_key"] == kept
    assert item["inspection"]["reason"]["code"] == "executable_content"
    assert client.get("/api/admin/quarantine", headers=auth).status_code == 403

    released = client.post(f"/api/admin/quarantine/{file['id']}/release", headers=admin_auth)
    assert released.status_code == 200, released.get_json()
    after = get_file(client, auth, file["id"])
    assert after["status"] == "complete" and after["inspection"]["state"] == "passed"
    assert objects(s3) == {file["s3_key"]: len(sample.data)}
    assert usage(client, auth)["used_bytes"] == len(sample.data)
    assert client.get(f"/api/files/{file['id']}/download", headers=auth).status_code == 200
    assert client.post(f"/api/admin/quarantine/{file['id']}/release", headers=admin_auth).status_code == 404


@pytest.mark.parametrize("app_config", [{"INSPECT": True, "QUARANTINE": True}])
def test_an_admin_deletes_a_quarantined_object(client, auth, admin_auth, app, s3, sample_files):
    sample = next(s for s in sample_files if s.name == "slip.zip")
    file = upload(client, auth, sample)
    assert run_inspection(app, file["id"]) == "rejected"
    deleted = client.delete(f"/api/admin/quarantine/{file['id']}", headers=admin_auth)
    assert deleted.status_code == 200 and deleted.get_json() == {"id": file["id"], "status": "deleted"}
    assert objects(s3) == {}
    assert client.get("/api/admin/quarantine", headers=admin_auth).get_json()["items"] == []
    assert get_file(client, auth, file["id"])["status"] == "rejected"


def test_release_that_no_longer_fits_the_quota_is_refused(make_app, s3, sample_files):
    app = make_app(INSPECT=True, QUARANTINE=True, DEFAULT_QUOTA_BYTES=50_000)
    client = app.test_client()
    auth = register_and_login(client, "alice")
    sample = next(s for s in sample_files if s.name == "photo.jpg")
    if len(sample.data) > 50_000:
        pytest.skip("/bin/true is larger than this test's quota")
    file = upload(client, auth, sample)
    assert run_inspection(app, file["id"]) == "rejected"
    filler = b"f" * (50_000 - len(sample.data) + 1)
    upload(client, auth, Sample("fill.txt", "text/plain", filler))
    admin = admin_login(app, client)
    refused = client.post(f"/api/admin/quarantine/{file['id']}/release", headers=admin)
    assert refused.status_code == 507
    assert objects(s3).keys() >= {quarantine_key(file["s3_key"])} and file["s3_key"] not in objects(s3)


def test_deleting_a_file_removes_its_preview(client, auth, app, s3, sample_files):
    sample = next(s for s in sample_files if s.name == "plain.png")
    file = upload(client, auth, sample)
    assert run_inspection(app, file["id"]) == "passed"
    assert preview_key(file["s3_key"]) in objects(s3)
    assert client.delete(f"/api/files/{file['id']}", headers=auth).status_code == 200
    assert objects(s3) == {}


@pytest.mark.parametrize("app_config", [{"INSPECT": True, "SERVE_UNINSPECTED": True}])
def test_serve_uninspected_allows_downloads_while_pending(client, auth, app, s3, sample_files):
    file = upload(client, auth, next(s for s in sample_files if s.name == "notes.txt"))
    assert file["inspection"]["state"] == "pending"
    assert client.get(f"/api/files/{file['id']}/download", headers=auth).status_code == 200


def test_reinspect_after_a_policy_change(make_app, s3, sample_files):
    app = make_app(INSPECT=True)
    client = app.test_client()
    auth = register_and_login(client, "alice")
    admin = admin_login(app, client)
    file = upload(client, auth, next(s for s in sample_files if s.name == "plain.png"))
    assert run_inspection(app, file["id"]) == "passed"
    app.config["MAX_IMAGE_PIXELS"] = 100  # the operator tightens the limit and restarts
    policy.init_app(app, load_profiles(app.config))
    response = client.post("/api/admin/inspect", json={"ids": [file["id"]]}, headers=admin)
    assert response.status_code == 200 and response.get_json() == {"queued": 1, "ids": [file["id"]]}
    assert get_file(client, auth, file["id"])["inspection"]["state"] == "pending"
    assert preview_key(file["s3_key"]) in objects(s3)
    assert run_inspection(app, file["id"]) == "rejected"
    assert get_file(client, auth, file["id"])["inspection"]["reason"]["code"] == "image_too_large"
    assert objects(s3) == {}  # the object and the preview the first inspection made
    bad = client.post("/api/admin/inspect", json={"ids": [file["id"]], "since": "2026-01-01T00:00:00Z"}, headers=admin)
    assert bad.status_code == 422 and bad.get_json()["error"]["code"] == "validation_error"


def test_formats_lists_kinds_and_limits(client):
    response = client.get("/api/files/formats")
    assert response.status_code == 200
    body = response.get_json()
    assert body["kinds"]["image"]["max_pixels"] == 100_000_000
    assert "image/*" in body["kinds"]["image"]["types"]
    assert body["kinds"]["video"]["max_seconds"] == 21600
    assert "application/zip" in body["kinds"]["archive"]["types"]
    assert body["kinds"]["archive"]["max_ratio"] == 100
    assert body["kinds"]["pdf"]["types"] == ["application/pdf"]


def test_metrics_count_inspections_by_state_and_reason(client, auth, admin_auth, app, s3, sample_files):
    for name in ("plain.png", "photo.jpg", "slip.zip", "small.webp"):
        file = upload(client, auth, next(s for s in sample_files if s.name == name))
        run_inspection(app, file["id"])
    assert client.delete(f"/api/files/{file['id']}", headers=auth).status_code == 200  # gone: not counted
    upload(client, auth, next(s for s in sample_files if s.name == "notes.txt"))
    text = client.get("/metrics", headers=admin_auth).get_data(as_text=True)
    assert 's3drive_inspections{state="passed"} 1.0' in text
    assert 's3drive_inspections{state="rejected"} 2.0' in text
    assert 's3drive_inspections{state="pending"} 1.0' in text
    assert 's3drive_inspection_rejections{reason="executable_content"} 1.0' in text
    assert 's3drive_inspection_rejections{reason="unsafe_archive"} 1.0' in text
    with app.app_context():
        assert db.session.scalar(select(File.inspection_state).where(File.file_name == "notes.txt")) == "pending"


@pytest.mark.parametrize("app_config", [{"INSPECT": True, "BROKER_URL": "redis://127.0.0.1:9/0"}])
def test_confirm_goes_on_when_the_broker_is_down(client, auth, app, s3, sample_files):
    # The inspection cannot be queued: confirm still answers at once, and the file waits, pending, for
    # the sweeper to queue it once the broker is back (and its worker to inspect it).
    started = time.monotonic()
    file = upload(client, auth, next(s for s in sample_files if s.name == "notes.txt"))
    assert time.monotonic() - started < 10
    assert file["status"] == "complete" and file["inspection"]["state"] == "pending"
    with app.app_context():
        later = utcnow() + timedelta(seconds=app.config["INSPECTION_LEASE"] + 1)
        assert requeue_stale(later, 100) == 1  # found; sending fails again, and is logged, not raised
        assert str(inspect_file(file["id"])) == "passed"


def test_flask_inspect_command_queues_files_again(client, auth, app, s3, sample_files):
    file = upload(client, auth, next(s for s in sample_files if s.name == "notes.txt"))
    assert run_inspection(app, file["id"]) == "passed"
    runner = app.test_cli_runner()
    result = runner.invoke(args=["inspect", file["id"]])
    assert result.exit_code == 0 and "Queued 1 files" in result.output, result.output
    assert get_file(client, auth, file["id"])["inspection"]["state"] == "pending"
    result = runner.invoke(args=["inspect", "--since", "2026-01-01"])
    assert result.exit_code == 0 and "Queued 1 files" in result.output, result.output
    assert runner.invoke(args=["inspect"]).exit_code == 2  # ids or --since
    assert run_inspection(app, file["id"]) == "passed"
