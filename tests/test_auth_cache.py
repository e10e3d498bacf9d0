"""The auth cache: a process trusts a token it verified for AUTH_CACHE_SECONDS, and no longer.

Changes made in this process (logout, an admin's change) take effect at once; changes made elsewhere
(written straight to the database here, as another process would) within AUTH_CACHE_SECONDS.
"""

from __future__ import annotations

import base64
import json
import time

import pytest
from conftest import admin_login, register_and_login
from flask_jwt_extended import decode_token
from flask_jwt_extended import view_decorators as jwt_views
from helpers import statements
from sqlalchemy import update

from s3drive.extensions import db
from s3drive.models import RevokedToken, User
from s3drive.services import auth_cache
from s3drive.services.auth_cache import AuthCache, Principal

SHORT = 1  # seconds: the bound the "another process" tests wait out
LONG = 60  # seconds: longer than any test, so only an explicit drop can explain a change


def error_code(response) -> str:
    return response.get_json()["error"]["code"]


def touching(seen: list[str], table: str) -> list[str]:
    return [statement for statement in seen if table in statement]


def token_of(app, auth: dict) -> dict:
    """Return the decoded payload of the access token in auth."""
    with app.app_context():
        return decode_token(auth["Authorization"].removeprefix("Bearer "))


def revoke_in_database(app, auth: dict) -> None:
    """Revoke the token as another process would: a row in revoked_tokens, nothing said to this process."""
    payload = token_of(app, auth)
    with app.app_context():
        db.session.add(RevokedToken(jti=payload["jti"], user_id=payload["sub"], token_type="access"))
        db.session.commit()


def set_in_database(app, username: str, **values) -> None:
    """Change a user's row straight in the database, bypassing the services."""
    with app.app_context():
        db.session.execute(update(User).where(User.username == username).values(**values))
        db.session.commit()


def wait_for_status(client, path: str, headers: dict, status: int, within: float) -> tuple[object, float]:
    """Poll path until it answers status (bounded by within + slack); return the answer and the time it took."""
    start = time.monotonic()
    deadline = start + within + 3
    while True:
        response = client.get(path, headers=headers)
        if response.status_code == status or time.monotonic() > deadline:
            return response, time.monotonic() - start
        time.sleep(0.05)


def test_a_verified_token_is_not_looked_up_again(make_app):
    app = make_app(AUTH_CACHE_SECONDS=5)
    client = app.test_client()
    auth = register_and_login(client, "alice")

    with statements(app) as first:
        assert client.get("/api/files/?limit=1", headers=auth).status_code == 200
    assert touching(first, "revoked_tokens"), "the first request of a token checks it"

    with statements(app) as repeated:
        for _ in range(3):
            assert client.get("/api/files/?limit=1", headers=auth).status_code == 200
    assert repeated, "the listing itself still queries"
    assert not touching(repeated, "revoked_tokens")
    assert not touching(repeated, "from users")


def test_logout_in_this_process_takes_effect_at_once(make_app):
    app = make_app(AUTH_CACHE_SECONDS=LONG)
    client = app.test_client()
    auth = register_and_login(client, "alice")
    assert client.get("/api/files/?limit=1", headers=auth).status_code == 200

    assert client.post("/api/auth/logout", headers=auth).status_code == 200

    response = client.get("/api/files/?limit=1", headers=auth)
    assert response.status_code == 401 and error_code(response) == "token_revoked"


def test_logout_ends_an_uppy_session_at_once(make_app, s3):
    app = make_app(AUTH_CACHE_SECONDS=LONG)
    client = app.test_client()
    auth = register_and_login(client, "alice")
    base = client.post("/api/uppy/session", headers=auth).get_json()["companion_endpoint"]
    base = base.removeprefix("http://localhost")
    url = f"{base}/s3/params?filename=a.jpg&type=image/jpeg&metadata[size]=3"
    assert client.get(url).status_code == 200
    with statements(app) as repeated:
        assert client.get(url).status_code == 200
    assert not touching(repeated, "revoked_tokens"), "the session shares the access token's cache entry"

    assert client.post("/api/auth/logout", headers=auth).status_code == 200

    response = client.get(url)
    assert response.status_code == 401 and "revoked" in response.get_json()["error"]


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda app, auth: revoke_in_database(app, auth), "token_revoked"),
        (lambda app, auth: set_in_database(app, "alice", is_active=False), "invalid_token"),
    ],
    ids=["revoked", "disabled"],
)
def test_a_change_made_by_another_process_takes_effect_within_the_bound(make_app, change, code):
    app = make_app(AUTH_CACHE_SECONDS=SHORT)
    client = app.test_client()
    auth = register_and_login(client, "alice")
    assert client.get("/api/files/?limit=1", headers=auth).status_code == 200

    change(app, auth)

    assert client.get("/api/files/?limit=1", headers=auth).status_code == 200  # still trusted, for now
    response, waited = wait_for_status(client, "/api/files/?limit=1", auth, 401, SHORT)
    assert response.status_code == 401 and error_code(response) == code
    assert waited <= SHORT + 1


def test_a_user_disabled_by_an_admin_of_this_process_is_refused_at_once(make_app):
    app = make_app(AUTH_CACHE_SECONDS=LONG)
    client = app.test_client()
    auth = register_and_login(client, "alice")
    admin = admin_login(app, client)
    alice = client.get("/api/auth/me", headers=auth).get_json()["id"]
    assert client.get("/api/files/?limit=1", headers=auth).status_code == 200

    assert client.patch(f"/api/admin/users/{alice}", json={"is_active": False}, headers=admin).status_code == 200

    response = client.get("/api/files/?limit=1", headers=auth)
    assert response.status_code == 401 and error_code(response) == "invalid_token"
    # Enabled again: the same token works (a refusal is never cached).
    assert client.patch(f"/api/admin/users/{alice}", json={"is_active": True}, headers=admin).status_code == 200
    assert client.get("/api/files/?limit=1", headers=auth).status_code == 200


def test_without_the_cache_every_request_asks_the_database(make_app):
    app = make_app(AUTH_CACHE_SECONDS=0)
    client = app.test_client()
    auth = register_and_login(client, "alice")
    with statements(app) as seen:
        for _ in range(2):
            assert client.get("/api/files/?limit=1", headers=auth).status_code == 200
    assert len(touching(seen, "revoked_tokens")) == 2

    revoke_in_database(app, auth)

    response = client.get("/api/files/?limit=1", headers=auth)
    assert response.status_code == 401 and error_code(response) == "token_revoked"


def test_me_and_usage_show_the_database_not_the_cache(make_app):
    app = make_app(AUTH_CACHE_SECONDS=LONG)
    client = app.test_client()
    auth = register_and_login(client, "alice")
    assert client.get("/api/auth/me", headers=auth).get_json()["used_bytes"] == 0
    assert client.get("/api/files/usage", headers=auth).get_json()["used_bytes"] == 0

    set_in_database(app, "alice", used_bytes=1234, quota_bytes=5678, is_admin=True)

    me = client.get("/api/auth/me", headers=auth).get_json()
    assert (me["used_bytes"], me["quota_bytes"], me["is_admin"]) == (1234, 5678, True)
    usage = client.get("/api/files/usage", headers=auth).get_json()
    assert (usage["used_bytes"], usage["quota_bytes"]) == (1234, 5678)


def test_me_refuses_a_disabled_user_even_while_the_token_is_trusted(make_app):
    app = make_app(AUTH_CACHE_SECONDS=LONG)
    client = app.test_client()
    auth = register_and_login(client, "alice")
    assert client.get("/api/auth/me", headers=auth).status_code == 200

    set_in_database(app, "alice", is_active=False)

    for path in ("/api/auth/me", "/api/files/usage"):
        response = client.get(path, headers=auth)
        assert response.status_code == 401 and error_code(response) == "invalid_token", path


def test_an_admin_demoted_in_the_database_loses_admin_routes_within_the_bound(make_app):
    app = make_app(AUTH_CACHE_SECONDS=SHORT)
    client = app.test_client()
    admin = admin_login(app, client)
    assert client.get("/api/admin/stats", headers=admin).status_code == 200

    set_in_database(app, "root", is_admin=False)

    response, waited = wait_for_status(client, "/api/admin/stats", admin, 403, SHORT)
    assert response.status_code == 403 and error_code(response) == "forbidden"
    assert waited <= SHORT + 1


def test_an_admin_demoted_through_the_api_loses_admin_routes_at_once(make_app):
    app = make_app(AUTH_CACHE_SECONDS=LONG)
    client = app.test_client()
    root = admin_login(app, client)
    other = admin_login(app, client, "toor")
    toor = client.get("/api/auth/me", headers=other).get_json()["id"]
    assert client.get("/api/admin/stats", headers=other).status_code == 200

    assert client.patch(f"/api/admin/users/{toor}", json={"is_admin": False}, headers=root).status_code == 200

    assert client.get("/api/admin/stats", headers=other).status_code == 403


def test_apps_do_not_share_a_cache(make_app):
    first = make_app(AUTH_CACHE_SECONDS=LONG)
    auth = register_and_login(first.test_client(), "alice")
    assert first.test_client().get("/api/files/?limit=1", headers=auth).status_code == 200
    second = make_app(AUTH_CACHE_SECONDS=LONG, JWT_SECRET_KEY=first.config["JWT_SECRET_KEY"])
    # make_app emptied the tables: alice is gone. The second app knows nothing of the first's cache...
    response = second.test_client().get("/api/files/?limit=1", headers=auth)
    assert response.status_code == 401 and error_code(response) == "invalid_token"
    # ...while the first still trusts the token it verified (for AUTH_CACHE_SECONDS).
    assert first.test_client().get("/api/files/?limit=1", headers=auth).status_code == 200


def test_the_cache_is_bounded_and_expires():
    cache = AuthCache(max_entries=3)
    for n in range(5):
        cache.put(f"jti{n}", Principal(f"user{n}", False), cache.get(f"user{n}", f"jti{n}", 60)[1])
    assert len(cache) == 3
    assert cache.get("user0", "jti0", 60)[0] is None  # the oldest went first
    assert cache.get("user4", "jti4", 60)[0] == Principal("user4", False)
    assert cache.get("user4", "jti4", 0)[0] is None  # too old for a max age of 0


def test_a_drop_during_a_lookup_wins_over_what_the_lookup_read():
    cache = AuthCache()
    _, generation = cache.get("alice", "jti", 60)  # a request starts asking the database...
    cache.drop_user("alice")  # ...meanwhile the account is disabled, and the cache told...
    cache.put("jti", Principal("alice", False), generation)  # ...so what the request read is not kept
    assert cache.get("alice", "jti", 60)[0] is None
    _, generation = cache.get("alice", "jti", 60)
    cache.put("jti", Principal("alice", False), generation)
    assert cache.get("alice", "jti", 60)[0] == Principal("alice", False)
    cache.drop_token("alice", "jti")
    assert cache.get("alice", "jti", 60)[0] is None


def test_a_tokens_header_is_parsed_once_per_text_and_a_forged_header_is_still_refused(make_app):
    app = make_app()
    client = app.test_client()
    auth = register_and_login(client, "alice")
    token = auth["Authorization"].split()[1]
    assert jwt_views.get_unverified_jwt_headers is auth_cache.unverified_header
    before = auth_cache._parsed_header.cache_info().hits
    for _ in range(3):
        assert client.get("/api/files/usage", headers=auth).status_code == 200
    assert auth_cache._parsed_header.cache_info().hits - before >= 2
    # Same payload and signature under another header: a different text, refused as before.
    _, payload, signature = token.split(".")
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT"}).encode()).rstrip(b"=").decode()
    forged = client.get("/api/files/usage", headers={"Authorization": f"Bearer {header}.{payload}.{signature}"})
    assert forged.status_code == 401 and forged.get_json()["error"]["code"] == "invalid_token"
    # Each caller gets its own copy: changing one changes nothing remembered.
    auth_cache.unverified_header(token)["alg"] = "none"
    assert auth_cache.unverified_header(token)["alg"] == "HS256"
