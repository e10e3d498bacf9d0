"""Schemathesis over /openapi.json: every operation, with a user's and with an admin's access token,
answers no 5xx and nothing the document does not describe (status code, content type, body schema).

The schema is read at import from an app built like the other tests' (conftest.make_test_app), so
that pytest gets one test per operation and token. Each test runs against a fresh app of its own on
moto's in-process S3 and the suite's database (SQLite, or PostgreSQL in CI's second run), seeded with
real records; generated path parameters are sometimes swapped for those records' ids (see
flatmap_path_parameters), so that requests reach the routes' work, not only their 404s.

Bounded and reproducible: MAX_EXAMPLES generated cases per operation and token, plus Schemathesis's
deterministic coverage cases; derandomized, no example database.
Set S3DRIVE_SCHEMATHESIS_STATS=<file> to have each test's counts appended to that file (JSON lines).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from urllib.parse import unquote

import pytest
import schemathesis
from conftest import make_test_app
from flask_jwt_extended import create_access_token, create_refresh_token
from helpers import put_bytes, spec
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from werkzeug.security import generate_password_hash

from s3drive.app import close_app
from s3drive.extensions import db
from s3drive.models import User

MAX_EXAMPLES = 20
PASSWORD = "correct horse battery"


class CurrentApp:
    """The WSGI app the schema's requests go to: the running test's own (set by the seeded fixture)."""

    app = None

    def __call__(self, environ, start_response):
        return self.app(environ, start_response)


CURRENT = CurrentApp()


def load_schema():
    """Read /openapi.json from an app (serving it needs no database or S3); requests go to CURRENT."""
    app = make_test_app("sqlite://")
    try:
        loaded = schemathesis.openapi.from_wsgi("/openapi.json", app)
    finally:
        close_app(app)
    loaded.app = CURRENT
    return loaded


schema = load_schema()

# Placeholders generated path parameters may take; run() swaps in the seeded records' ids.
PLACEHOLDERS = {
    "file_id": ("@complete", "@pending", "@multipart", "@foreign"),
    "user_id": ("@user", "@admin", "@self"),
    "upload_id": ("@uppy",),
    "token": ("@session",),
}


@schema.hook
def flatmap_path_parameters(context, path_parameters):
    """Keep the generated values, or put a seeded record's placeholder in one of them."""
    options = [path_parameters]
    for name, placeholders in PLACEHOLDERS.items():
        if name in (path_parameters or {}):
            options.extend({**path_parameters, name: placeholder} for placeholder in placeholders)
    return st.sampled_from(options)


@schema.hook
def flatmap_query(context, query):
    """The Companion routes name an upload twice (path and ?key=): sometimes give the seeded upload's key."""
    if not query or "key" not in query:
        return st.just(query)
    return st.sampled_from([query, {**query, "key": "@uppy_key"}])


# -- checks -----------------------------------------------------------------------------------


def no_server_error(ctx, response, case):
    """No 5xx, but 507 quota_exceeded: the contract's answer when the quota would be exceeded, which
    generated sizes reach (a client condition; no other error answers 507)."""
    if response.status_code >= 500 and response.status_code != 507:
        raise AssertionError(f"{response.status_code}: {response.text[:500]}")


def status_code_documented(ctx, response, case):
    """The status is one the operation documents by number, not only through `default`."""
    if case.method.upper() != case.operation.method.upper():
        return  # probes with a method the path does not serve
    documented = set(case.operation.responses.status_codes) - {"default"}
    if str(response.status_code) not in documented:
        raise AssertionError(f"{response.status_code} is not documented (documented: {sorted(documented)})")


CHECKS = [
    no_server_error,
    status_code_conformance,
    status_code_documented,
    content_type_conformance,
    response_schema_conformance,
]


# -- fixtures ---------------------------------------------------------------------------------


# One hash for every seeded user: werkzeug's scrypt takes ~0.1 s a password.
PASSWORD_HASH = generate_password_hash(PASSWORD)


@pytest.fixture
def seeded(app, client):
    """Seed three users (alice, root the admin, mallory); return role -> Placeholders for that role."""
    with app.app_context():
        users = {name: User(username=name, password_hash=PASSWORD_HASH, is_admin=name == "root") for name in NAMES}
        for user in users.values():
            user.quota_bytes = app.config["DEFAULT_QUOTA_BYTES"]
            db.session.add(user)
        db.session.commit()
        ids = {name: user.id for name, user in users.items()}
    CURRENT.app = app
    yield {"user": Placeholders(client, ids, "alice"), "admin": Placeholders(client, ids, "root")}
    CURRENT.app = None


NAMES = ("alice", "root", "mallory")


class Placeholders:
    """The values of the placeholders for one user's requests; records are seeded at first use (most
    operations have no path parameter and need none)."""

    def __init__(self, client, ids: dict, name: str):
        self.client, self.ids, self.name = client, ids, name
        self.user_id = ids[name]
        self.values = {"@user": ids["alice"], "@admin": ids["root"], "@self": self.user_id}

    def token(self, name: str | None = None, *, refresh: bool = False) -> str:
        create = create_refresh_token if refresh else create_access_token
        with CURRENT.app.app_context():
            return create(identity=self.ids[name or self.name])

    def resolve(self, value, placeholders: tuple[str, ...]):
        """Return the value of one of these placeholders (path parameters come quoted: %40complete), else value."""
        name = unquote(value) if isinstance(value, str) else None
        if name not in placeholders:
            return value
        if name not in self.values:
            self.values.update(seed_records(self.client, self.token()))
            self.values["@foreign"] = seed_records(self.client, self.token("mallory"))["@complete"]
        return self.values[name]


def seed_records(client, token: str) -> dict:
    """Create, for the token's user, a complete file, a pending one, a multipart upload, an Uppy multipart
    upload and an Uppy session; return placeholder -> id (or key, or session token)."""
    auth = {"Authorization": f"Bearer {token}"}
    batch = client.post("/api/files/upload/", json={"files": [spec("a.jpg"), spec("b.jpg")]}, headers=auth)
    complete, pending = batch.get_json()["successful"]
    assert put_bytes(complete, b"x" * 10).status_code == 200
    confirmed = client.post("/api/files/confirm_upload/", json={"id": complete["id"]}, headers=auth)
    assert confirmed.status_code == 200, confirmed.get_json()
    multipart = client.post(
        "/api/files/multipart/", json=spec("big.bin", b"x" * 11 * 2**20, part_size=5 * 2**20), headers=auth
    )
    assert multipart.status_code == 201, multipart.get_json()
    uppy = client.post("/uppy/s3/multipart", json={"filename": "c.bin", "type": "application/pdf"}, headers=auth)
    assert uppy.status_code == 200, uppy.get_json()
    session = client.post("/api/uppy/session", headers=auth)
    assert session.status_code == 200, session.get_json()
    return {
        "@complete": complete["id"],
        "@pending": pending["id"],
        "@multipart": multipart.get_json()["id"],
        "@uppy": uppy.get_json()["uploadId"],
        "@uppy_key": uppy.get_json()["key"],
        "@session": session.get_json()["companion_endpoint"].rsplit("/", 1)[1],
    }


@pytest.fixture
def stats(request):
    """Count the test's requests by status and its failed checks; append them to the stats file, if any."""
    counts = Counter()
    yield counts
    path = os.environ.get("S3DRIVE_SCHEMATHESIS_STATS")
    if path:
        with open(path, "a") as out:
            out.write(json.dumps({"test": request.node.name, **counts}) + "\n")


# -- the tests --------------------------------------------------------------------------------

BOUNDED = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


@schema.parametrize()
@BOUNDED
def test_api_as_user(case, seeded, stats):
    call_and_check(case, seeded["user"], stats)


@schema.parametrize()
@BOUNDED
def test_api_as_admin(case, seeded, stats):
    call_and_check(case, seeded["admin"], stats)


def call_and_check(case, placeholders: Placeholders, stats: Counter) -> None:
    """Send the case with a fresh token (logout revokes the one it carries; refresh takes a refresh token),
    placeholders replaced by the seeded records' ids, and run the checks."""
    for name, value in (case.path_parameters or {}).items():
        # Only the parameter's own placeholders: Hypothesis also draws strings from the test's constants,
        # and "@uppy_key" (an S3 key, slashes and all) in {token} is no route at all.
        case.path_parameters[name] = placeholders.resolve(value, PLACEHOLDERS.get(name, ()))
    if case.query and "key" in case.query:
        case.query["key"] = placeholders.resolve(case.query["key"], ("@uppy_key",))
    token = placeholders.token(refresh=case.operation.path == "/api/auth/refresh")
    response = case.call(headers={"Authorization": f"Bearer {token}"})
    stats["requests"] += 1
    stats[str(response.status_code)] += 1
    try:
        case.validate_response(response, checks=CHECKS)
    except BaseException:  # Schemathesis's FailureGroup is a BaseExceptionGroup
        stats["failed"] += 1
        raise
