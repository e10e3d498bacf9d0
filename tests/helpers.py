"""Small helpers shared by the API tests."""

from __future__ import annotations

import base64
import hashlib
import time
from contextlib import contextmanager

import requests
from sqlalchemy import event

from s3drive.extensions import db


def sha256_b64(data: bytes) -> str:
    """Return the base64 SHA-256 digest S3 expects in x-amz-checksum-sha256."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def usage(client, auth) -> dict:
    """Return the caller's usage (GET /api/files/usage) through a Flask test client."""
    response = client.get("/api/files/usage", headers=auth)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def wait_until(condition, timeout: float, interval: float = 0.02) -> bool:
    """Poll condition() until it holds or timeout seconds pass; return whether it held."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


def spec(name: str = "photo.jpg", data: bytes = b"x" * 10, content_type: str = "image/jpeg", **extra) -> dict:
    """Return a FileSpec for these bytes."""
    return {"file_name": name, "content_type": content_type, "file_size": len(data), **extra}


def presign(client, auth, *specs: dict):
    """POST a batch and return the parsed JSON (asserting 200)."""
    response = client.post("/api/files/upload/", json={"files": list(specs)}, headers=auth)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def put_bytes(ticket: dict, data: bytes, **header_overrides) -> requests.Response:
    """PUT bytes to a ticket's URL with exactly the ticket's headers (plus overrides)."""
    headers = {**ticket["headers"], **header_overrides}
    return requests.put(ticket["presigned_url"], data=data, headers=headers, timeout=30)


def upload(client, auth, name: str = "report.txt", data: bytes = b"hello, world", content_type="text/plain", **extra):
    """Presign, PUT the bytes and confirm through a Flask test client; return the File JSON."""
    ticket = presign(client, auth, spec(name, data, content_type, checksum_sha256=sha256_b64(data), **extra))
    ticket = ticket["successful"][0]
    assert put_bytes(ticket, data).status_code == 200
    response = client.post("/api/files/confirm_upload/", json={"id": ticket["id"]}, headers=auth)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["file"]


def post_form(ticket: dict, data: bytes, file_name: str = "upload.bin") -> requests.Response:
    """Upload bytes with the ticket's POST form fields."""
    return requests.post(ticket["presigned_url"], data=ticket["fields"], files={"file": (file_name, data)}, timeout=30)


def queued_tasks(app) -> list[dict]:
    """Take the task messages sent to the test app's in-memory broker: name, args and countdown."""
    celery = app.extensions["celery"]
    taken = []
    with celery.connection_for_read() as connection:
        queue = connection.SimpleQueue(celery.conf.task_default_queue)
        while True:
            try:
                message = queue.get(block=False)
            except queue.Empty:
                break
            message.ack()
            args, kwargs, _ = message.decode()
            taken.append({"task": message.headers["task"], "args": args, "eta": message.headers.get("eta")})
        queue.close()
    return taken


@contextmanager
def statements(app):
    """Collect the SQL statements (lowercased) the app's engine runs inside the block."""
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement.lower())

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


# Tests of the presign paths that run outside a session transaction: the caller must stay known
# (the auth cache) from the warm-up request on, however slow the machine.
KNOWN_CALLER = {"AUTH_CACHE_SECONDS": 3600}


def plain_url(database_url: str) -> str:
    """The test database's URL as psycopg takes it."""
    return database_url.replace("postgresql+psycopg://", "postgresql://", 1)
