"""Auth: register, login, refresh, logout (persisted revocation), me, JWT failure envelopes."""

from __future__ import annotations

from datetime import timedelta

import jwt as pyjwt
import pytest
from conftest import empty_tables, make_test_app, register_and_login
from flask_jwt_extended import create_access_token

from s3drive import ConfigError
from s3drive.api.auth import LIMITED_ENDPOINTS
from s3drive.app import close_app
from s3drive.extensions import db
from s3drive.models import RevokedToken, User


def error_code(response) -> str:
    return response.get_json()["error"]["code"]


def test_register_returns_user_without_secrets(client):
    response = client.post("/api/auth/register", json={"username": "alice", "password": "s3cret-pass"})
    assert response.status_code == 201
    user = response.get_json()["user"]
    assert user["username"] == "alice"
    assert set(user) == {"id", "username", "is_admin", "quota_bytes", "used_bytes", "reserved_bytes", "created_at"}
    assert user["created_at"].endswith("Z")


def test_password_is_hashed(app, client):
    client.post("/api/auth/register", json={"username": "alice", "password": "s3cret-pass"})
    with app.app_context():
        stored = db.session.query(User).one().password_hash
    assert "s3cret-pass" not in stored and len(stored) > 40


def test_duplicate_username_case_insensitive(client):
    assert client.post("/api/auth/register", json={"username": "Alice", "password": "password1"}).status_code == 201
    response = client.post("/api/auth/register", json={"username": "alice", "password": "password2"})
    assert response.status_code == 409 and error_code(response) == "username_taken"


def test_register_validation(client):
    response = client.post("/api/auth/register", json={"username": "a/b", "password": "short"})
    assert response.status_code == 422
    body = response.get_json()["error"]
    assert body["code"] == "validation_error"
    assert set(body["details"]) == {"username", "password"}


def test_login_wrong_password_and_unknown_user(client):
    client.post("/api/auth/register", json={"username": "alice", "password": "password1"})
    for username, password in (("alice", "wrong-password"), ("nobody", "password1")):
        response = client.post("/api/auth/login", json={"username": username, "password": password})
        assert response.status_code == 401 and error_code(response) == "unauthorized"


def test_login_refresh_me(client):
    client.post("/api/auth/register", json={"username": "alice", "password": "password1"})
    tokens = client.post("/api/auth/login", json={"username": "alice", "password": "password1"}).get_json()
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 900
    me = client.get("/api/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.status_code == 200 and me.get_json()["username"] == "alice"
    refreshed = client.post("/api/auth/refresh", headers={"Authorization": f"Bearer {tokens['refresh_token']}"})
    assert refreshed.status_code == 200
    me = client.get("/api/auth/me", headers={"Authorization": f"Bearer {refreshed.get_json()['access_token']}"})
    assert me.status_code == 200


def test_refresh_token_is_not_an_access_token(client):
    client.post("/api/auth/register", json={"username": "alice", "password": "password1"})
    tokens = client.post("/api/auth/login", json={"username": "alice", "password": "password1"}).get_json()
    response = client.get("/api/auth/me", headers={"Authorization": f"Bearer {tokens['refresh_token']}"})
    assert response.status_code == 401 and error_code(response) == "invalid_token"
    response = client.post("/api/auth/refresh", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert response.status_code == 401 and error_code(response) == "invalid_token"


def test_logout_revokes_and_survives_restart(app, client, database_url):
    auth = register_and_login(client, "alice")
    assert client.post("/api/auth/logout", headers=auth).status_code == 200
    response = client.get("/api/auth/me", headers=auth)
    assert response.status_code == 401 and error_code(response) == "token_revoked"
    with app.app_context():
        assert db.session.query(RevokedToken).count() == 1
    # A new process (same secret, same database) still refuses the token.
    restarted = make_test_app(database_url, JWT_SECRET_KEY=app.config["JWT_SECRET_KEY"])
    response = restarted.test_client().get("/api/auth/me", headers=auth)
    assert response.status_code == 401 and error_code(response) == "token_revoked"


def test_logout_with_refresh_token_revokes_it(client):
    client.post("/api/auth/register", json={"username": "alice", "password": "password1"})
    tokens = client.post("/api/auth/login", json={"username": "alice", "password": "password1"}).get_json()
    refresh = {"Authorization": f"Bearer {tokens['refresh_token']}"}
    assert client.post("/api/auth/logout", headers=refresh).status_code == 200
    response = client.post("/api/auth/refresh", headers=refresh)
    assert response.status_code == 401 and error_code(response) == "token_revoked"


def test_expired_forged_and_malformed_tokens(app, client):
    register_and_login(client, "alice")
    with app.app_context():
        user_id = db.session.query(User).one().id
        expired = create_access_token(identity=user_id, expires_delta=timedelta(seconds=-10))
    response = client.get("/api/auth/me", headers={"Authorization": f"Bearer {expired}"})
    assert response.status_code == 401 and error_code(response) == "token_expired"

    forged = pyjwt.encode({"sub": user_id, "type": "access", "jti": "x", "fresh": False}, "x" * 40, algorithm="HS256")
    response = client.get("/api/auth/me", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401 and error_code(response) == "invalid_token"

    for header in ("Bearer not.a.jwt", "Bearer ", "Basic abc", "Bearer a b c"):
        response = client.get("/api/auth/me", headers={"Authorization": header})
        assert response.status_code == 401, header
        assert error_code(response) in ("invalid_token", "unauthorized")

    response = client.get("/api/auth/me")
    assert response.status_code == 401 and error_code(response) == "unauthorized"


def test_disabled_or_deleted_user_token_stops_working(app, client):
    auth = register_and_login(client, "alice")
    with app.app_context():
        db.session.query(User).update({"is_active": False})
        db.session.commit()
    response = client.get("/api/auth/me", headers=auth)
    assert response.status_code == 401 and error_code(response) == "invalid_token"


def test_registration_closed(make_app):
    app = make_app(ALLOW_REGISTRATION=False)
    response = app.test_client().post("/api/auth/register", json={"username": "alice", "password": "password1"})
    assert response.status_code == 403 and error_code(response) == "registration_closed"


def test_login_rate_limited(make_app):
    app = make_app(LOGIN_RATE_LIMIT="3 per hour")
    client = app.test_client()
    statuses = [client.post("/api/auth/login", json={"username": "x", "password": "y"}).status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    response = client.post("/api/auth/login", json={"username": "x", "password": "y"})
    assert error_code(response) == "rate_limited"
    assert int(response.headers["Retry-After"]) > 0


def test_create_user_cli(app):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["create-user", "root", "--admin", "--quota", "1234", "--password", "adminpass1"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        user = db.session.query(User).filter_by(username="root").one()
        assert user.is_admin and user.quota_bytes == 1234
    result = runner.invoke(args=["create-user", "root", "--password", "adminpass1"])
    assert result.exit_code != 0 and "taken" in result.output
    result = runner.invoke(args=["create-user", "x", "--password", "short"])
    assert result.exit_code != 0


def test_rate_limit_is_shared_through_redis(make_app):
    """Two processes (two apps) on one Redis share a client's login budget."""
    import uuid

    import redis

    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=2).ping()
    except redis.ConnectionError:
        pytest.fail("this test needs the machine's Redis on 127.0.0.1:6379")
    settings = {
        "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379/15",
        "RATELIMIT_KEY_PREFIX": f"s3drive-test-{uuid.uuid4().hex}",
        "LOGIN_RATE_LIMIT": "3 per hour",
    }
    first, second = make_app(**settings).test_client(), make_app(**settings).test_client()
    bad = {"username": "x", "password": "wrong-password"}
    statuses = [client.post("/api/auth/login", json=bad).status_code for client in (first, second, first, second)]
    assert statuses == [401, 401, 401, 429]
    # The counter lives in Redis, where other gunicorn workers see it.
    assert redis.Redis(host="127.0.0.1", port=6379, db=15).keys(f"*{settings['RATELIMIT_KEY_PREFIX']}*")


def test_an_unreachable_rate_limit_store_never_fails_a_login(make_app, s3):
    """Redis down: logins and registrations work, limits still hold (in memory), /readyz says so."""
    app = make_app(RATELIMIT_STORAGE_URI="redis://127.0.0.1:1/0", LOGIN_RATE_LIMIT="3 per hour")
    client = app.test_client()
    body = {"username": "bob", "password": "longenough1"}
    assert client.post("/api/auth/register", json=body).status_code == 201
    assert [client.post("/api/auth/login", json=body).status_code for _ in range(3)] == [200] * 3
    limited = client.post("/api/auth/login", json=body)
    assert limited.status_code == 429 and limited.get_json()["error"]["code"] == "rate_limited"
    ready = client.get("/readyz").get_json()
    assert ready["checks"]["rate_limits"].startswith("degraded")


def test_only_routes_with_a_rate_limit_go_through_the_limiter(make_app):
    # Requests to other routes skip the limiter's work; the limited ones are found by what
    # @limiter.limit marked, so a limit added to any route is enforced without more code.
    # Per hour: a window of a minute could turn over between the second and the third attempt.
    app = make_app(LOGIN_RATE_LIMIT="2 per hour")
    client = app.test_client()
    for _ in range(5):
        assert client.get("/api/files/limits").status_code == 200
        assert "X-RateLimit-Limit" not in client.get("/api/files/limits").headers
    assert app.extensions[LIMITED_ENDPOINTS] == {"auth.login", "auth.register", "public_shares.open_protected_share"}
    body = {"username": "nobody", "password": "wrong password"}
    assert [client.post("/api/auth/login", json=body).status_code for _ in range(3)] == [401, 401, 429]


def test_rotating_the_jwt_secret_logs_nobody_out(database_url, s3):
    old, new = "old-secret-" + "o" * 40, "new-secret-" + "n" * 40
    before = make_test_app(database_url, JWT_SECRET_KEY=old)
    empty_tables(before)
    client = before.test_client()
    client.post("/api/auth/register", json={"username": "rota", "password": "correct horse battery"})
    tokens = client.post("/api/auth/login", json={"username": "rota", "password": "correct horse battery"}).get_json()
    close_app(before)

    rotated = make_test_app(database_url, JWT_SECRET_KEY=new, JWT_PREVIOUS_SECRET_KEYS=[old])
    client = rotated.test_client()
    # The access and refresh tokens signed before the rotation still work...
    assert client.get("/api/auth/me", headers=bearer(tokens["access_token"])).status_code == 200
    refreshed = client.post("/api/auth/refresh", headers=bearer(tokens["refresh_token"]))
    assert refreshed.status_code == 200
    # ...and what is issued now is signed with the new secret only.
    fresh = refreshed.get_json()["access_token"]
    assert pyjwt.decode(fresh, new, algorithms=["HS256"])["type"] == "access"
    with pytest.raises(pyjwt.InvalidSignatureError):
        pyjwt.decode(fresh, old, algorithms=["HS256"])
    forged = pyjwt.encode({**pyjwt.decode(fresh, new, algorithms=["HS256"]), "jti": "x"}, "f" * 48, "HS256")
    assert client.get("/api/auth/me", headers=bearer(forged)).get_json()["error"]["code"] == "invalid_token"
    close_app(rotated)

    # Once the previous secret is dropped (after the refresh lifetime), its tokens stop.
    after = make_test_app(database_url, JWT_SECRET_KEY=new)
    client = after.test_client()
    assert client.get("/api/auth/me", headers=bearer(tokens["access_token"])).status_code == 401
    assert client.get("/api/auth/me", headers=bearer(fresh)).status_code == 200
    close_app(after)


def test_a_previous_jwt_secret_must_be_long_enough(database_url):
    with pytest.raises(ConfigError, match="S3DRIVE_JWT_PREVIOUS_SECRET_KEYS"):
        make_test_app(database_url, JWT_SECRET_KEY="n" * 48, JWT_PREVIOUS_SECRET_KEYS=["short"])


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}
