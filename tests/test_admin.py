"""Admin routes: only admins get in; stats, the user list and user changes work on real rows."""

from __future__ import annotations

from datetime import timedelta

import pytest
from conftest import BUCKET, register_and_login
from helpers import presign, put_bytes, spec
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from s3drive.extensions import db
from s3drive.models import File, User
from s3drive.services.users import create_user
from s3drive.timeutil import utcnow

PASSWORD = "correct horse battery"


def user_id(client, auth) -> str:
    return client.get("/api/auth/me", headers=auth).get_json()["id"]


def admin_routes(target_id: str):
    return [
        ("GET", "/api/admin/stats", None),
        ("GET", "/api/admin/users", None),
        ("GET", f"/api/admin/users/{target_id}", None),
        ("PATCH", f"/api/admin/users/{target_id}", {"quota_bytes": 10 * 1024**3}),
        ("POST", "/api/admin/sweep", None),
    ]


def test_admin_routes_refuse_others(app, client, auth, admin_auth):
    alice = user_id(client, auth)
    for method, path, body in admin_routes(alice):
        anonymous = client.open(path, method=method, json=body)
        assert anonymous.status_code == 401 and anonymous.get_json()["error"]["code"] == "unauthorized", path
        refused = client.open(path, method=method, json=body, headers=auth)
        assert refused.status_code == 403, path
        assert refused.get_json()["error"]["code"] == "forbidden"
    # Alice's attempt to raise her own quota changed nothing.
    assert client.get("/api/auth/me", headers=auth).get_json()["quota_bytes"] == 1024**3
    for method, path, body in admin_routes(alice):
        assert client.open(path, method=method, json=body, headers=admin_auth).status_code == 200, path
    assert client.get("/api/auth/me", headers=auth).get_json()["quota_bytes"] == 10 * 1024**3


def test_admin_routes_are_documented(client):
    paths = client.get("/openapi.json").get_json()["paths"]
    assert {"/api/admin/stats", "/api/admin/users", "/api/admin/users/{user_id}", "/api/admin/sweep"} <= set(paths)
    assert paths["/api/admin/sweep"]["post"]["security"] == [{"bearerAuth": []}]


def make_mixed_state(app, client, auth, other_auth, admin_auth) -> None:
    """Upload for real: one complete (10 B), one pending (10 B), one rejected, one lapsed (7 B); disable mallory."""
    good, pending, bad = presign(client, auth, spec("a.jpg"), spec("b.jpg"), spec("c.jpg"))["successful"]
    assert put_bytes(good, b"x" * 10).status_code == 200
    assert put_bytes(bad, b"x" * 4).status_code == 200
    result = client.post("/api/files/confirm_uploads/", json={"ids": [good["id"], bad["id"]]}, headers=auth)
    assert [r["status"] for r in result.get_json()["results"]] == ["success", "mismatch"]
    [lapsed] = presign(client, other_auth, spec("d.jpg", data=b"y" * 7))["successful"]
    with app.app_context():
        db.session.execute(update(File).where(File.id == lapsed["id"]).values(expires_at=utcnow() - timedelta(1)))
        db.session.commit()
    mallory = user_id(client, other_auth)
    assert client.patch(f"/api/admin/users/{mallory}", json={"is_active": False}, headers=admin_auth).status_code == 200


def test_stats_count_real_uploads(app, client, auth, other_auth, admin_auth, s3):
    make_mixed_state(app, client, auth, other_auth, admin_auth)

    response = client.get("/api/admin/stats", headers=admin_auth)

    assert response.status_code == 200
    body = response.get_json()
    assert body["users"] == {"total": 3, "active": 2, "disabled": 1, "admins": 1}
    assert body["files"]["complete"] == {"count": 1, "bytes": 10}
    assert body["files"]["pending"] == {"count": 2, "bytes": 17}
    assert body["files"]["rejected"] == {"count": 1, "bytes": 10}
    assert body["files"]["deleted"] == {"count": 0, "bytes": 0}
    assert set(body["files"]) == {
        "pending",
        "uploading",
        "complete",
        "rejected",
        "expired",
        "aborted",
        "deleting",
        "deleted",
    }
    assert body["used_bytes"] == 10
    assert body["reserved_bytes"] == 10  # mallory's URL lapsed: only alice's pending file holds quota
    assert body["lapsed_reservations"] == 1
    assert body["quota_bytes"] == 3 * 1024**3


METRICS_TOKEN = "prometheus-scrape-token-0123456789"


@pytest.mark.parametrize("app_config", [{"METRICS_TOKEN": METRICS_TOKEN}])
def test_metrics_report_the_store_in_prometheus_format(app, client, auth, other_auth, admin_auth, s3):
    make_mixed_state(app, client, auth, other_auth, admin_auth)

    response = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})  # the scraper

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }
    assert samples[("s3drive_users", (("state", "active"),))] == 2
    assert samples[("s3drive_users", (("state", "disabled"),))] == 1
    assert samples[("s3drive_files", (("status", "complete"),))] == 1
    assert samples[("s3drive_file_bytes", (("status", "complete"),))] == 10
    assert samples[("s3drive_files", (("status", "pending"),))] == 2
    assert samples[("s3drive_files", (("status", "rejected"),))] == 1
    assert samples[("s3drive_used_bytes", ())] == 10
    assert samples[("s3drive_reserved_bytes", ())] == 10
    assert samples[("s3drive_lapsed_uploads", ())] == 1
    assert samples[("process_resident_memory_bytes", ())] > 0
    assert "/metrics" in client.get("/openapi.json").get_json()["paths"]


def test_user_list_pages_with_usage(app, client, auth, admin_auth, s3):
    [done, waiting] = presign(client, auth, spec("a.jpg"), spec("b.jpg", data=b"q" * 3))["successful"]
    put_bytes(done, b"x" * 10)
    client.post("/api/files/confirm_upload/", json={"id": done["id"]}, headers=auth)
    for index in range(6):
        register_and_login(client, f"user{index}")

    seen, cursor, pages = [], None, 0
    while True:
        query = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        response = client.get("/api/admin/users", query_string=query, headers=admin_auth)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        seen.extend(body["items"])
        pages += 1
        if pages == 1:
            register_and_login(client, "latecomer")  # joins between pages: seen once, at the end
        cursor = body["next_cursor"]
        if cursor is None:
            break

    names = [item["username"] for item in seen]
    assert names == ["alice", "root", *[f"user{i}" for i in range(6)], "latecomer"]  # oldest first
    assert pages == 3
    alice = seen[0]
    assert alice["used_bytes"] == 10 and alice["reserved_bytes"] == 3 and alice["file_count"] == 1
    assert alice["is_active"] is True and alice["is_admin"] is False and alice["created_at"].endswith("Z")
    assert seen[1]["is_admin"] is True and seen[2]["file_count"] == 0

    found = client.get("/api/admin/users", query_string={"q": "USER"}, headers=admin_auth).get_json()
    assert [item["username"] for item in found["items"]] == [f"user{i}" for i in range(6)]
    one = client.get(f"/api/admin/users/{alice['id']}", headers=admin_auth).get_json()
    assert one == alice


def test_user_list_refuses_bad_queries(client, admin_auth):
    for query in ({"cursor": "not-a-cursor"}, {"cursor": "Zm9vfGJhcg"}, {"limit": 0}, {"limit": 1001}, {"limit": "x"}):
        response = client.get("/api/admin/users", query_string=query, headers=admin_auth)
        assert response.status_code == 422, query
        error = response.get_json()["error"]
        assert error["code"] == "validation_error" and set(error["details"]) == set(query)


def test_quota_change_takes_effect_on_the_next_presign(client, auth, admin_auth):
    presign(client, auth, spec("a.jpg"))  # 10 bytes reserved
    alice = user_id(client, auth)

    response = client.patch(f"/api/admin/users/{alice}", json={"quota_bytes": 15}, headers=admin_auth)

    assert response.status_code == 200
    assert response.get_json()["quota_bytes"] == 15 and response.get_json()["reserved_bytes"] == 10
    refused = client.post("/api/files/upload/", json=spec("b.jpg"), headers=auth)
    assert refused.status_code == 507 and refused.get_json()["error"]["code"] == "quota_exceeded"
    assert client.post("/api/files/upload/", json=spec("c.jpg", data=b"z" * 5), headers=auth).status_code == 200
    raised = client.patch(f"/api/admin/users/{alice}", json={"quota_bytes": 25}, headers=admin_auth)
    assert raised.status_code == 200
    assert client.post("/api/files/upload/", json=spec("b.jpg"), headers=auth).status_code == 200


def test_disabling_a_user_stops_their_tokens_at_once(client, auth, admin_auth):
    login = client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD}).get_json()
    refresh = {"Authorization": f"Bearer {login['refresh_token']}"}
    assert client.get("/api/auth/me", headers=auth).status_code == 200
    alice = user_id(client, auth)

    response = client.patch(f"/api/admin/users/{alice}", json={"is_active": False}, headers=admin_auth)

    assert response.status_code == 200 and response.get_json()["is_active"] is False
    for method, path, headers in [
        ("GET", "/api/auth/me", auth),
        ("POST", "/api/files/upload/", auth),
        ("GET", "/api/files/usage", auth),
        ("POST", "/api/auth/refresh", refresh),
    ]:
        refused = client.open(path, method=method, json=spec(), headers=headers)
        assert refused.status_code == 401, path
        assert refused.get_json()["error"]["code"] == "invalid_token"
    login = client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    assert login.status_code == 401

    client.patch(f"/api/admin/users/{alice}", json={"is_active": True}, headers=admin_auth)
    assert client.get("/api/auth/me", headers=auth).status_code == 200


def test_an_admin_cannot_demote_or_disable_themselves(client, admin_auth):
    root = user_id(client, admin_auth)
    for change in ({"is_admin": False}, {"is_active": False}, {"is_admin": False, "quota_bytes": 1}):
        response = client.patch(f"/api/admin/users/{root}", json=change, headers=admin_auth)
        assert response.status_code == 409 and response.get_json()["error"]["code"] == "conflict"
    unchanged = client.get(f"/api/admin/users/{root}", headers=admin_auth).get_json()
    assert unchanged["is_admin"] is True and unchanged["is_active"] is True and unchanged["quota_bytes"] == 1024**3
    same = client.patch(f"/api/admin/users/{root}", json={"is_admin": True, "quota_bytes": 5}, headers=admin_auth)
    assert same.status_code == 200 and same.get_json()["quota_bytes"] == 5


def test_admin_rights_can_be_granted_and_taken(client, auth, admin_auth):
    alice, root = user_id(client, auth), user_id(client, admin_auth)
    assert client.get("/api/admin/stats", headers=auth).status_code == 403

    granted = client.patch(f"/api/admin/users/{alice}", json={"is_admin": True}, headers=admin_auth)

    assert granted.status_code == 200 and granted.get_json()["is_admin"] is True
    assert client.get("/api/admin/stats", headers=auth).status_code == 200  # the same token, at once
    assert client.patch(f"/api/admin/users/{root}", json={"is_admin": False}, headers=auth).status_code == 200
    assert client.get("/api/admin/stats", headers=admin_auth).status_code == 403
    # The demoted admin can no longer change anyone, alice included.
    assert client.patch(f"/api/admin/users/{alice}", json={"is_admin": False}, headers=admin_auth).status_code == 403
    assert client.get("/api/auth/me", headers=auth).get_json()["is_admin"] is True


def test_user_update_validation(client, auth, admin_auth):
    alice = user_id(client, auth)
    for body in (
        {"quota_bytes": -1},
        {"quota_bytes": "10"},
        {"quota_bytes": 2**63},
        {"quota_bytes": 1.5},
        {"is_active": "maybe"},
        {"is_admin": None},
        {"quota": 5},  # a mistyped field is refused, not ignored
    ):
        response = client.patch(f"/api/admin/users/{alice}", json=body, headers=admin_auth)
        assert response.status_code == 422, body
        error = response.get_json()["error"]
        assert error["code"] == "validation_error" and set(error["details"]) == set(body)
    assert client.get("/api/auth/me", headers=auth).get_json()["quota_bytes"] == 1024**3


def test_user_update_bad_body_and_unknown_ids(client, auth, admin_auth):
    alice = user_id(client, auth)
    not_json = client.patch(f"/api/admin/users/{alice}", data="quota", headers=admin_auth)
    assert not_json.status_code == 400 and not_json.get_json()["error"]["code"] == "bad_request"
    for missing in ("00000000-0000-4000-8000-000000000000", "x" * 300):
        for method, body in (("GET", None), ("PATCH", {"quota_bytes": 1})):
            response = client.open(f"/api/admin/users/{missing}", method=method, json=body, headers=admin_auth)
            assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"


def test_sweep_route_runs_the_sweeper(app, client, auth, admin_auth, s3):
    arrived, missing = presign(client, auth, spec("a.jpg"), spec("b.jpg"))["successful"]
    put_bytes(arrived, b"x" * 10)
    with app.app_context():
        db.session.execute(
            update(File).where(File.id.in_([arrived["id"], missing["id"]])).values(expires_at=utcnow() - timedelta(1))
        )
        db.session.commit()

    response = client.post("/api/admin/sweep", headers=admin_auth)

    assert response.status_code == 200
    assert response.get_json() == {
        "confirmed": 1,
        "expired": 1,
        "rejected": 0,
        "multipart_aborted": 0,
        "deletes_finished": 0,
        "inspections_queued": 0,
        "keys_purged": 1,
        "revoked_tokens_deleted": 0,
        "shares_deleted": 0,
        "errors": 0,
        "more": False,
    }
    statuses = {
        f["id"]: f["status"]
        for f in (client.get(f"/api/files/{t['id']}", headers=auth).get_json() for t in (arrived, missing))
    }
    assert statuses == {arrived["id"]: "complete", missing["id"]: "expired"}
    keys = {item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", ())}
    assert keys == {arrived["s3_key"]}
    assert client.get("/api/files/usage", headers=auth).get_json()["used_bytes"] == 10


def test_quotas_are_bounded_and_huge_ones_never_break_the_sums(app, client, auth, other_auth, admin_auth):
    alice = user_id(client, auth)
    refused = client.patch(f"/api/admin/users/{alice}", json={"quota_bytes": 2**62}, headers=admin_auth)
    assert refused.status_code == 422 and refused.get_json()["error"]["details"]["quota_bytes"]
    accepted = client.patch(f"/api/admin/users/{alice}", json={"quota_bytes": 2**50}, headers=admin_auth)
    assert accepted.status_code == 200 and accepted.get_json()["quota_bytes"] == 2**50
    with app.app_context():
        # Rows from before the bound: two quotas near 2**63 overflowed SQLite's SUM (a 503 before).
        db.session.execute(update(User).values(quota_bytes=2**62 + 2**61))
        db.session.commit()
    stats = client.get("/api/admin/stats", headers=admin_auth)
    assert stats.status_code == 200, stats.get_json()
    assert stats.get_json()["quota_bytes"] >= 3 * 2**62
    assert client.get("/metrics", headers=admin_auth).status_code == 200


def test_only_a_database_that_is_down_or_busy_is_a_503(client, auth, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from s3drive.services import users

    failures = {
        "no such column: files.nope": 500,  # a bug, not an outage
        "integer overflow": 500,
        "database is locked": 503,
        "connection refused": 503,
    }
    for message, status in failures.items():

        def fail(user, message=message):
            raise OperationalError("SELECT 1", {}, Exception(message))

        monkeypatch.setattr(users, "usage", fail)
        response = client.get("/api/files/usage", headers=auth)
        code = "internal_error" if status == 500 else "database_unavailable"
        assert (response.status_code, response.get_json()["error"]["code"]) == (status, code), message


def test_metrics_need_the_metrics_token_or_an_admin(make_app, s3):
    closed = make_app()  # no metrics token configured: the route does not exist for anyone else
    client = closed.test_client()
    assert client.get("/metrics").status_code == 404
    user = register_and_login(client, "alice")
    assert client.get("/metrics", headers=user).status_code == 403
    with closed.app_context():
        create_user("root", PASSWORD, is_admin=True)
    token = client.post("/api/auth/login", json={"username": "root", "password": PASSWORD}).get_json()["access_token"]
    assert client.get("/metrics", headers={"Authorization": f"Bearer {token}"}).status_code == 200

    guarded = make_app(METRICS_TOKEN=METRICS_TOKEN).test_client()
    assert guarded.get("/metrics").status_code == 401
    assert guarded.get("/metrics", headers={"Authorization": "Bearer wrong-token"}).status_code == 401
    good = guarded.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert good.status_code == 200 and b"s3drive_users" in good.data
