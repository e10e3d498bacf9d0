"""Concurrent batches racing for one user's quota never reserve more than it holds."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

from conftest import register_and_login
from helpers import spec
from sqlalchemy import func, select

from s3drive.extensions import db
from s3drive.models import File


def test_twenty_concurrent_batches_never_exceed_quota(make_app):
    quota, file_size, files_per_batch, batches = 1000, 10, 10, 20
    app = make_app(DEFAULT_QUOTA_BYTES=quota)
    auth = register_and_login(app.test_client(), "racer")
    barrier = Barrier(batches)
    body = {"files": [spec(f"f{i}.bin", b"x" * file_size) for i in range(files_per_batch)]}

    def one_batch(_):
        client = app.test_client()
        barrier.wait()  # release all requests at once
        response = client.post("/api/files/upload/", json=body, headers=auth)
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    with ThreadPoolExecutor(batches) as pool:
        results = list(pool.map(one_batch, range(batches)))

    granted = sum(r["total_successful"] for r in results)
    refused = [f["error"]["code"] for r in results for f in r["failed"]]
    assert granted * file_size == quota  # exactly the quota, no more, no less
    assert set(refused) == {"quota_exceeded"} and len(refused) == batches * files_per_batch - granted
    with app.app_context():
        reserved = db.session.scalar(select(func.sum(File.size)).where(File.status == "pending"))
    assert reserved == quota
    usage = app.test_client().get("/api/files/usage", headers=auth).get_json()
    assert usage["reserved_bytes"] == quota
