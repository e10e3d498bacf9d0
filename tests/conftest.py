"""Shared fixtures: app on moto's in-process S3, client, users and auth headers.

The database is SQLite unless S3DRIVE_DATABASE_URL names another one (CI runs the
suite again on PostgreSQL). Its schema is built once per run by the Alembic
migrations; tables are emptied between tests.
"""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

# Fake credentials before boto3 reads the environment, so nothing can reach real AWS.
for _name, _value in {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
}.items():
    os.environ[_name] = _value
os.environ.pop("AWS_SESSION_TOKEN", None)
os.environ.pop("AWS_PROFILE", None)

sys.path.insert(0, str(Path(__file__).resolve().parent))

import boto3  # noqa: E402
from flask_migrate import upgrade  # noqa: E402
from moto import mock_aws  # noqa: E402
from sqlalchemy import create_engine, make_url, text  # noqa: E402

from s3drive import create_app  # noqa: E402
from s3drive.app import close_app  # noqa: E402
from s3drive.extensions import db  # noqa: E402
from s3drive.services.users import create_user  # noqa: E402

BUCKET = "s3drive-test"
TABLES = ("shares", "files", "revoked_tokens", "users")


@pytest.fixture(scope="session")
def database_url():
    """Return the test database URL, migrated to the latest schema once per run.

    SQLite: a file in a temporary folder. PostgreSQL (S3DRIVE_DATABASE_URL): a database of this
    run's own, created on that server and dropped at the end, so that runs (and xdist workers)
    never collide.
    """
    url = os.environ.get("S3DRIVE_DATABASE_URL")
    with ExitStack() as cleanup:
        if not url:
            folder = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="s3drive-test-"))
            url = f"sqlite:///{folder}/test.sqlite3"
        elif url.startswith("postgresql"):
            url = cleanup.enter_context(own_postgres_database(url))
        app = create_app({"TESTING": True, "DATABASE_URL": url})
        with app.app_context():
            upgrade()
            db.engine.dispose()
        yield url


@contextmanager
def own_postgres_database(server_url: str):
    """Create a uniquely named database on the server of server_url; yield its URL; drop it."""
    server = make_url(server_url)
    name = f"s3drive_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def make_test_app(database_url: str, **overrides):
    """Create an app for tests: moto-compatible confirm (head), generous rate limits."""
    config = {
        "TESTING": True,
        "DATABASE_URL": database_url,
        "S3_BUCKET": BUCKET,
        "S3_CONFIRM": "head",
        "LOGIN_RATE_LIMIT": "10000 per minute",
        "DEFAULT_QUOTA_BYTES": 1024**3,
        # Inspection runs in worker processes: the tests that exercise it start them (test_inspection.py).
        "INSPECT": False,
        # Tasks sent (the upload watcher's checks) go to kombu's in-memory transport: no worker runs them
        # here; tests run a check with services.watcher.check_upload, or start a worker on a real broker.
        "BROKER_URL": "memory://",
    }
    config.update(overrides)
    return create_app(config)


def empty_tables(app) -> None:
    """Delete every row, children first."""
    with app.app_context():
        with db.engine.begin() as connection:
            for table in TABLES:
                connection.execute(text(f"DELETE FROM {table}"))


@pytest.fixture
def s3():
    """Return a boto3 S3 client on moto's in-process mock, with the bucket created."""
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def app_config():
    """Override this (or parametrize it) to change the app's settings in a module."""
    return {}


@pytest.fixture
def app(database_url, s3, app_config):
    """Return a fresh app bound to the test database and moto's S3."""
    app = make_test_app(database_url, **app_config)
    empty_tables(app)
    yield app
    close_app(app)


@contextmanager
def apps_on(database_url: str):
    """Yield a factory of apps with settings of the caller's own, on emptied tables; close them after."""
    made = []

    def factory(**overrides):
        app = make_test_app(database_url, **overrides)
        empty_tables(app)
        made.append(app)
        return app

    try:
        yield factory
    finally:
        for app in made:
            close_app(app)


@pytest.fixture
def app_on(database_url):
    """Return a factory of apps on an S3 endpoint of the test's choosing (no moto), on emptied tables."""
    with apps_on(database_url) as factory:
        yield factory


@pytest.fixture
def make_app(database_url, s3):
    """Return a factory of apps with settings of the test's own, on moto's S3 and emptied tables."""
    with apps_on(database_url) as factory:
        yield factory


@pytest.fixture
def client(app):
    return app.test_client()


def register_and_login(client, username: str, password: str = "correct horse battery") -> dict:
    """Register a user, log in, and return the Authorization header."""
    response = client.post("/api/auth/register", json={"username": username, "password": password})
    assert response.status_code == 201, response.get_json()
    response = client.post("/api/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.get_json()
    return {"Authorization": f"Bearer {response.get_json()['access_token']}"}


def admin_login(app, client, username: str = "root", password: str = "correct horse battery") -> dict:
    """Create an administrator (as `flask create-user --admin` does), log in, return the Authorization header."""
    with app.app_context():
        create_user(username, password, is_admin=True)
    response = client.post("/api/auth/login", json={"username": username, "password": password})
    return {"Authorization": f"Bearer {response.get_json()['access_token']}"}


@pytest.fixture
def admin_auth(app, client):
    """Return auth headers for an administrator 'root'."""
    return admin_login(app, client)


@pytest.fixture
def auth(client):
    """Return auth headers for a fresh user 'alice'."""
    return register_and_login(client, "alice")


@pytest.fixture
def other_auth(client):
    """Return auth headers for a second user 'mallory'."""
    return register_and_login(client, "mallory")
