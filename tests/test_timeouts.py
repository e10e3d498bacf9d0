"""A slow or dead dependency is a 503 with Retry-After within seconds, never a hung request or a 500.

S3 that accepts connections and never answers (a real socket, no mock), and a database whose
write lock another connection holds (PostgreSQL: a table lock; SQLite: BEGIN IMMEDIATE).
"""

from __future__ import annotations

import socket
import threading
import time
from contextlib import closing, contextmanager

import pytest
from conftest import register_and_login
from helpers import KNOWN_CALLER, spec, wait_until
from sqlalchemy import create_engine, text

from s3drive import app as s3drive_app
from s3drive.extensions import db


@contextmanager
def silent_s3():
    """Yield the URL of a server that accepts connections and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for connection in accepted:
            connection.close()
        listener.close()


def test_s3_that_never_answers_is_a_503_within_seconds(app_on):
    with silent_s3() as url:
        app = app_on(S3_ENDPOINT_URL=url, S3_ADDRESSING_STYLE="path", S3_TIMEOUT=1)
        client = app.test_client()
        auth = register_and_login(client, "alice")
        ticket = client.post("/api/files/upload/", json=spec("a.jpg"), headers=auth).get_json()  # signing only
        started = time.monotonic()
        response = client.post("/api/files/confirm_upload/", json={"id": ticket["id"]}, headers=auth)
        took = time.monotonic() - started
    assert response.status_code == 503 and response.get_json()["error"]["code"] == "storage_unavailable"
    assert int(response.headers["Retry-After"]) > 0
    # 2 attempts x (1 s read timeout), plus botocore's backoff: about 3 s, far below gunicorn's 60 s. The
    # bound leaves room for a loaded shared machine (one CI run took 11.8 s): what it catches is a wait
    # that is not bounded at all (botocore's defaults: 60 s reads, 5 attempts).
    assert took < 30, took
    assert client.get(f"/api/files/{ticket['id']}", headers=auth).get_json()["status"] == "pending"


@contextmanager
def write_lock_held(database_url: str, postgres_lock: str = "LOCK TABLE users IN ACCESS EXCLUSIVE MODE"):
    """Hold a lock from another connection: on PostgreSQL the LOCK statement given (by default on
    the users table), on SQLite the write lock (BEGIN IMMEDIATE)."""
    engine = create_engine(database_url)
    with closing(engine.connect()) as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text(postgres_lock))
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            connection.rollback()
    engine.dispose()


def test_a_held_database_lock_is_a_503_within_the_database_timeout(app_on, database_url):
    app = app_on(DATABASE_TIMEOUT=1)
    client = app.test_client()
    auth = register_and_login(client, "alice")
    with write_lock_held(database_url):
        started = time.monotonic()
        response = client.post("/api/files/upload/", json=spec("a.jpg"), headers=auth)
        took = time.monotonic() - started
    assert response.status_code == 503, response.get_json()
    assert response.get_json()["error"]["code"] == "database_unavailable" and response.headers["Retry-After"]
    assert took < 20, took  # DATABASE_TIMEOUT=1: about 1 s; room for a loaded machine, none for an unbounded wait
    # The lock is gone: the same request works, and nothing of the failed one was kept.
    assert client.post("/api/files/upload/", json=spec("a.jpg"), headers=auth).status_code == 200
    assert client.get("/api/files/usage", headers=auth).get_json()["reserved_bytes"] == 10


@pytest.mark.parametrize("count", [1, 25], ids=["one-file", "batch-signed-meanwhile"])
def test_a_held_lock_fails_the_one_statement_presign_with_a_503_and_keeps_nothing(app_on, database_url, count):
    """A presign whose caller is already known (the auth cache) writes in one statement outside any
    session transaction (PostgreSQL: on the driver's connection; a batch of 20 or more is signed
    while it runs, in pipeline mode). A held lock makes it a 503 like any other, nothing of it is
    kept, and its connection serves the next request."""
    app = app_on(DATABASE_TIMEOUT=1, **KNOWN_CALLER)
    client = app.test_client()
    auth = register_and_login(client, "alice")

    def batch(name: str) -> dict:
        if count == 1:
            return spec(f"{name}.jpg")
        return {"files": [spec(f"{name}{i}.jpg") for i in range(count)]}

    assert client.post("/api/files/upload/", json=batch("a"), headers=auth).status_code == 200
    with write_lock_held(database_url, "LOCK TABLE files IN ACCESS EXCLUSIVE MODE"):
        response = client.post("/api/files/upload/", json=batch("b"), headers=auth)
    assert response.status_code == 503, response.get_json()
    assert response.get_json()["error"]["code"] == "database_unavailable" and response.headers["Retry-After"]
    assert client.post("/api/files/upload/", json=batch("c"), headers=auth).status_code == 200
    names = {
        f["file_name"] for f in client.get("/api/files/?status=pending&limit=100", headers=auth).get_json()["items"]
    }
    assert names == {n for n in names if n.startswith(("a", "c"))} and len(names) == 2 * count
    assert client.get("/api/files/usage", headers=auth).get_json()["reserved_bytes"] == 20 * count


@pytest.mark.parametrize("idle_after", [None, 0.0], ids=["recently-used", "idle-so-pinged"])
def test_pooled_connections_the_server_ended_are_replaced_without_an_error(
    make_app, database_url, monkeypatch, idle_after
):
    """PostgreSQL ends the pool's connections (a restart, an administrator): the next requests get
    new ones and succeed. A recently used connection is found dead without a round trip (its socket
    holds the server's farewell); one idle for long is pinged."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has no server to end a connection")
    if idle_after is not None:
        monkeypatch.setattr(s3drive_app, "PING_IDLE_AFTER", idle_after)
    app = make_app()
    client = app.test_client()
    auth = register_and_login(client, "alice")
    assert client.post("/api/files/upload/", json=spec("a.jpg"), headers=auth).status_code == 200
    with app.app_context():
        old = set(db.session.scalars(text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")))
        db.session.remove()
    admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        mine = connection.scalar(text("SELECT pg_backend_pid()"))
        ended = {pid for pid in old - {mine} if connection.scalar(text("SELECT pg_terminate_backend(:p)"), {"p": pid})}
        assert ended
        assert wait_until(
            lambda: not ended & set(connection.scalars(text("SELECT pid FROM pg_stat_activity"))), timeout=10
        )
    admin.dispose()
    for name in ("b.jpg", "c.jpg", "d.jpg"):
        response = client.post("/api/files/upload/", json=spec(name), headers=auth)
        assert response.status_code == 200, response.get_json()
    assert client.get("/api/files/usage", headers=auth).get_json()["reserved_bytes"] == 40
    with app.app_context():
        assert db.session.scalar(text("SELECT pg_backend_pid()")) not in ended
