"""The contract's edges: error envelope everywhere, bad input, auth matrix, ops routes."""

from __future__ import annotations

import re

import pytest
from helpers import presign, spec

from s3drive import schemas
from s3drive.extensions import db
from s3drive.models import File, User

PROTECTED = [
    ("GET", "/api/auth/me"),
    ("POST", "/api/auth/refresh"),
    ("POST", "/api/auth/logout"),
    ("POST", "/api/files/upload/"),
    ("POST", "/api/files/confirm_upload/"),
    ("POST", "/api/files/confirm_uploads/"),
    ("GET", "/api/files/usage"),
    ("GET", "/api/files/00000000-0000-0000-0000-000000000000"),
]


def assert_envelope(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code and body["error"]["message"]
    assert response.headers["X-Request-ID"]
    return body["error"]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_every_protected_route_needs_a_token(client, method, path):
    response = client.open(path, method=method, json={})
    assert_envelope(response, 401, "unauthorized")


def test_other_users_ids_are_not_found(client, auth, other_auth, app):
    ticket = presign(client, auth, spec())["successful"][0]
    for route in (f"/api/files/{ticket['id']}",):
        assert_envelope(client.get(route, headers=other_auth), 404, "not_found")
    response = client.post("/api/files/confirm_upload/", json={"id": ticket["id"]}, headers=other_auth)
    assert_envelope(response, 404, "not_found")
    response = client.post("/api/files/confirm_upload/", json={"s3_key": ticket["s3_key"]}, headers=other_auth)
    assert_envelope(response, 404, "not_found")
    with app.app_context():
        assert db.session.get(File, ticket["id"]).status == "pending"


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"data": "{not json", "content_type": "application/json"}, "bad_request"),
        ({"data": "", "content_type": "application/json"}, "bad_request"),
        ({"json": [1, 2]}, "bad_request"),
        ({"json": "a string"}, "bad_request"),
        ({"json": None}, "bad_request"),
        ({"data": "file_name=x", "content_type": "application/x-www-form-urlencoded"}, "bad_request"),
        ({"data": "[" * 100000 + "]" * 100000, "content_type": "application/json"}, "bad_request"),
        ({"data": b"\xff\xfe\x00garbage", "content_type": "application/json"}, "bad_request"),
    ],
)
@pytest.mark.parametrize("path", ["/api/files/upload/", "/api/files/confirm_uploads/", "/api/auth/login"])
def test_malformed_bodies_are_bad_requests(client, auth, app, path, kwargs, code):
    response = client.post(path, headers=auth, **kwargs)
    assert_envelope(response, 400, code)
    with app.app_context():
        assert db.session.query(File).count() == 0


@pytest.mark.parametrize(
    "body",
    [
        {"username": 5, "password": "password1"},
        {"username": "alice", "password": ["x"]},
        {"username": "al", "password": "password1"},
        {"username": "a" * 65, "password": "password1"},
        {"username": "alice\u0000", "password": "password1"},
        {"username": "../alice", "password": "password1"},
        {"password": "password1"},
    ],
)
def test_register_wrong_types_are_validation_errors(client, app, body):
    error = assert_envelope(client.post("/api/auth/register", json=body), 422, "validation_error")
    assert error["details"]
    with app.app_context():
        assert db.session.query(User).count() == 0


def test_huge_body_is_refused(client, auth):
    response = client.post(
        "/api/files/upload/",
        data=b"{" + b" " * (33 * 1024 * 1024) + b"}",
        headers=auth,
        content_type="application/json",
    )
    # Not a batch over its limit (batch_too_large): a body over what the server reads at all.
    assert_envelope(response, 413, "request_too_large")
    assert response.get_json()["error"]["details"] == {"max_body_bytes": 32 * 1024 * 1024}
    login = client.post("/api/auth/login", data=b"x" * (33 * 1024 * 1024), content_type="application/json")
    assert_envelope(login, 413, "request_too_large")


def test_unknown_route_and_method(client, auth):
    assert_envelope(client.get("/api/nope", headers=auth), 404, "not_found")
    response = client.put("/api/auth/me", headers=auth)
    assert_envelope(response, 405, "method_not_allowed")


def test_unexpected_exception_is_a_generic_500(client, auth, monkeypatch):
    from s3drive.services import users

    def boom(user):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(users, "usage", boom)
    response = client.get("/api/files/usage", headers={**auth, "X-Request-ID": "req-123"})
    error = assert_envelope(response, 500, "internal_error")
    assert "secret" not in response.get_data(as_text=True)
    assert error["details"] == {"request_id": "req-123"}
    assert response.headers["X-Request-ID"] == "req-123"


def test_database_down_is_503(client, auth, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from s3drive.services import users

    def down(user):
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(users, "usage", down)
    response = client.get("/api/files/usage", headers=auth)
    assert_envelope(response, 503, "database_unavailable")
    assert response.headers["Retry-After"]


def test_request_id_is_generated_or_echoed(client):
    generated = client.get("/healthz").headers["X-Request-ID"]
    assert len(generated) >= 16
    assert client.get("/healthz", headers={"X-Request-ID": "abc-1"}).headers["X-Request-ID"] == "abc-1"
    # A hostile id is replaced, not reflected.
    assert client.get("/healthz", headers={"X-Request-ID": "a\tb<script>"}).headers["X-Request-ID"] != "a\tb<script>"


def test_healthz_and_readyz(client, make_app):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    checks = {"database": "ok", "storage": "ok", "rate_limits": "ok"}
    assert ready.status_code == 200 and ready.get_json()["checks"] == checks
    missing_bucket = make_app(S3_BUCKET="no-such-bucket").test_client().get("/readyz")
    error = assert_envelope(missing_bucket, 503, "storage_unavailable")
    assert error["details"]["database"] == "ok"


def test_readyz_names_the_database_when_it_is_down(make_app):
    app = make_app()
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {}
    with app.app_context():
        db.engine.dispose()
    from unittest import mock

    with mock.patch.object(db.session, "execute", side_effect=RuntimeError("db gone")):
        response = app.test_client().get("/readyz")
    error = assert_envelope(response, 503, "database_unavailable")
    assert error["details"]["database"].startswith("error")


def test_openapi_document_and_docs(client):
    spec_doc = client.get("/openapi.json").get_json()
    assert spec_doc["openapi"].startswith("3.")
    paths = spec_doc["paths"]
    for path in ("/api/auth/login", "/api/files/upload/", "/api/files/confirm_uploads/", "/api/files/{file_id}"):
        assert path in paths
    assert "bearerAuth" in spec_doc["components"]["securitySchemes"]
    assert "FileSpec" in spec_doc["components"]["schemas"]
    assert paths["/api/files/usage"]["get"]["security"] == [{"bearerAuth": []}]
    docs = client.get("/docs")
    assert docs.status_code == 200 and b"swagger" in docs.data.lower()


def test_database_failing_mid_batch_writes_nothing(client, auth, app, monkeypatch):
    """The commit of a presign batch fails: 503, and no row of the batch survives."""
    from sqlalchemy.exc import OperationalError

    from s3drive.services import uploads

    real_commit = uploads.db.session.commit

    def failing_commit():
        raise OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(uploads.db.session, "commit", failing_commit)
    response = client.post("/api/files/upload/", json={"files": [spec(f"{i}.jpg") for i in range(50)]}, headers=auth)
    monkeypatch.setattr(uploads.db.session, "commit", real_commit)
    assert_envelope(response, 503, "database_unavailable")
    with app.app_context():
        assert db.session.query(File).count() == 0
    assert client.get("/api/files/usage", headers=auth).get_json()["reserved_bytes"] == 0


TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


# -- the hand-built answers of the hot paths match their documented schemas ------------------


def assert_shape(data: dict, schema) -> None:
    """Assert the answer has exactly the schema's fields, each of the schema's type."""
    documented = {field.data_key or name for name, field in schema.fields.items()}
    assert set(data) == documented, (type(schema).__name__, set(data) ^ documented)
    assert schema.validate(data) == {}, type(schema).__name__
    for name, field in schema.fields.items():
        value = data[field.data_key or name]
        if isinstance(field, schemas.Timestamp) and value is not None:
            assert TIMESTAMP.fullmatch(value), (name, value)
        inner = getattr(getattr(field, "inner", None), "schema", None)
        if inner is not None:
            for item in value:
                assert_shape(item, inner)


def test_fast_answers_match_their_schemas(client, auth):
    batch = presign(client, auth, spec("a.jpg"), spec("x.exe", content_type="application/x-msdownload"))
    assert_shape(batch, schemas.BatchUploadResultSchema())
    single = client.post("/api/files/upload/", json=spec("b.jpg"), headers=auth).get_json()
    assert_shape(single, schemas.UploadTicketSchema())

    upload = client.post(
        "/api/files/multipart/", json=spec("big.bin", b"x" * 11 * 2**20, part_size=5 * 2**20), headers=auth
    )
    assert upload.status_code == 201, upload.get_json()
    signed = client.post(
        f"/api/files/multipart/{upload.get_json()['id']}/sign", json={"part_numbers": [1, 2, 3]}, headers=auth
    )
    assert signed.status_code == 200, signed.get_json()
    assert_shape(signed.get_json(), schemas.SignedPartsSchema())

    listing = client.get("/api/files/?status=pending", headers=auth).get_json()
    assert listing["items"]
    assert_shape(listing, schemas.FileListSchema())

    form = client.get("/uppy/s3/params", query_string={"filename": "c.txt", "type": "text/plain"}, headers=auth)
    assert form.status_code == 200, form.get_json()
    assert_shape(form.get_json(), schemas.ParamsSchema())


# -- headers and the public URL ----------------------------------------------------------------


def test_every_answer_carries_the_security_headers(client, auth):
    for response in (
        client.get("/healthz"),
        client.get("/api/nope", headers=auth),
        client.post("/api/auth/login", json={"username": "alice", "password": "correct horse battery"}),
    ):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["Referrer-Policy"] == "no-referrer"


def test_tokens_and_private_answers_are_never_cached(client, auth):
    login = client.post("/api/auth/login", json={"username": "alice", "password": "correct horse battery"})
    assert login.status_code == 200 and login.headers["Cache-Control"] == "no-store"
    for response in (
        client.post("/api/auth/refresh", headers={"Authorization": f"Bearer {login.get_json()['refresh_token']}"}),
        client.post("/api/uppy/session", headers=auth),
        client.post("/api/files/upload/", json=spec("a.jpg"), headers=auth),
        client.get("/api/files/", headers=auth),
    ):
        assert response.status_code in (200, 201), response.get_json()
        assert response.headers["Cache-Control"] == "no-store"
        assert "Origin" in response.headers["Vary"]  # CORS answers differ by Origin


def test_companion_endpoint_uses_the_public_url_not_the_host_header(make_app, s3):
    from conftest import register_and_login

    app = make_app(PUBLIC_URL="https://files.example/")
    client = app.test_client()
    auth = register_and_login(client, "alice")
    session = client.post("/api/uppy/session", headers={**auth, "Host": "evil.example"}).get_json()
    assert session["companion_endpoint"].startswith("https://files.example/uppy/")


def test_a_host_outside_the_trusted_hosts_is_refused(make_app, s3):
    app = make_app(TRUSTED_HOSTS="files.example")
    client = app.test_client()
    refused = client.get("/healthz", headers={"Host": "evil.example"})
    assert refused.status_code == 400 and refused.get_json()["error"]["code"] == "bad_request"
    trusted = {"Host": "files.example"}
    auth = register_and_login_at(client, trusted)
    session = client.post("/api/uppy/session", headers={**auth, **trusted}).get_json()
    assert session["companion_endpoint"].startswith("http://files.example/uppy/")


def register_and_login_at(client, headers: dict) -> dict:
    """Register and log in alice with extra request headers (a Host the app trusts)."""
    body = {"username": "alice", "password": "correct horse battery"}
    assert client.post("/api/auth/register", json=body, headers=headers).status_code == 201
    token = client.post("/api/auth/login", json=body, headers=headers).get_json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def test_the_uppy_routes_document_companions_error_shape(client):
    spec = client.get("/openapi.json").get_json()
    params = spec["paths"]["/uppy/s3/params"]["get"]["responses"]
    assert params["default"] == params["422"] == {"$ref": "#/components/responses/COMPANION_ERROR"}
    schema = spec["components"]["responses"]["COMPANION_ERROR"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/CompanionError"}
    assert set(spec["components"]["schemas"]["CompanionError"]["properties"]) == {"error", "message"}
    # The session route is part of the API proper: the envelope.
    session = spec["paths"]["/api/uppy/session"]["post"]["responses"]
    assert session["default"] == {"$ref": "#/components/responses/DEFAULT_ERROR"}
