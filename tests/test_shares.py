"""Share links against real objects in moto: made, listed and revoked by their owner, opened without an account.

Every shared file is uploaded for real (presign, PUT the bytes, confirm) and inspected as a worker
inspects it (services.inspection.inspect_file); links are opened by a client that sends no token,
and what they lead to is downloaded from S3 and compared byte for byte.
"""

from __future__ import annotations

import hashlib
import pathlib
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import helpers
import pytest
import requests
from conftest import register_and_login
from helpers import presign, put_bytes, spec
from live import Api, chromium_browser, serve_app
from s3servers import moto_server
from sqlalchemy import text, update
from test_inspect_image import image_bytes
from test_inspect_pdf import make_pdf
from werkzeug.http import parse_options_header

from s3drive.extensions import db
from s3drive.models import File, Share
from s3drive.services import shares as share_service
from s3drive.services import sweeper
from s3drive.services.files import mark_deleting
from s3drive.services.inspection import inspect_file
from s3drive.timeutil import utcnow

DATA = b"the quarterly numbers, shared\n" * 40
# What Chromium sends when it navigates to a page.
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
DAY = 24 * 3600


@pytest.fixture
def app_config():
    return {"INSPECT": True}


# -- helpers --------------------------------------------------------------------------------


def upload(client, auth, name: str = "report.txt", data: bytes = DATA, content_type: str = "text/plain") -> dict:
    """Presign, PUT the bytes and confirm (helpers.upload, with this module's bytes); inspection pending."""
    return helpers.upload(client, auth, name, data, content_type)


def inspected(app, client, auth, name: str = "report.txt", data: bytes = DATA, content_type: str = "text/plain"):
    """Upload a file and inspect it as a worker does; return its File, asserting it passed."""
    file = upload(client, auth, name, data, content_type)
    with app.app_context():
        assert str(inspect_file(file["id"])) == "passed"
    return file


def share(client, auth, file_id: str, **body) -> dict:
    """Make a link (asserting 201) and return the Share."""
    response = client.post(f"/api/files/{file_id}/shares", json=body, headers=auth)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def token_of(link: dict) -> str:
    return urlsplit(link["url"]).path.removeprefix("/s/")


def visit(app, link: dict, method: str = "GET", **kwargs):
    """Open a link as a visitor: a client of its own, no token."""
    return app.test_client().open(urlsplit(link["url"]).path, method=method, **kwargs)


def error_code(response) -> str:
    return response.get_json()["error"]["code"]


def set_file(app, file_id: str, **values) -> None:
    with app.app_context():
        db.session.execute(update(File).where(File.id == file_id).values(**values))
        db.session.commit()


def set_share(app, share_id: str, **values) -> None:
    with app.app_context():
        db.session.execute(update(Share).where(Share.id == share_id).values(**values))
        db.session.commit()


def listed(client, auth, **query) -> dict:
    response = client.get("/api/shares", query_string=query, headers=auth)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


# -- opening a link -------------------------------------------------------------------------


def test_a_link_leads_anyone_to_the_exact_bytes(app, client, auth):
    file = inspected(app, client, auth, "Résumé 2026.txt")
    link = share(client, auth, file["id"])
    assert set(link) == {
        "id",
        "file_id",
        "url",
        "expires_at",
        "max_downloads",
        "downloads",
        "has_password",
        "revoked",
        "created_at",
    }
    assert (link["file_id"], link["downloads"], link["max_downloads"]) == (file["id"], 0, None)
    assert (link["has_password"], link["revoked"]) == (False, False)
    assert link["url"].startswith("http://localhost/s/") and len(token_of(link)) == 43

    # No token at all; a stray Authorization header changes nothing (the route never reads one).
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        opened = visit(app, link, headers=headers)
        assert opened.status_code == 302, opened.get_json()
        assert opened.headers["Cache-Control"] == "no-store"
        assert "Accept" in opened.headers["Vary"]
        got = requests.get(opened.headers["Location"], timeout=30)
        assert got.status_code == 200 and got.content == DATA
        kind, params = parse_options_header(got.headers["Content-Disposition"])
        assert (kind, params["filename"]) == ("attachment", "Résumé 2026.txt")
    [again] = listed(client, auth)["items"]
    assert again["downloads"] == 2 and again["url"] is None  # only the answer that made it shows the link


def test_json_answer_describes_the_file_with_its_url_and_preview(app, client, auth):
    png = image_bytes("PNG", size=(40, 30))
    file = inspected(app, client, auth, "orange.png", png, "image/png")
    link = share(client, auth, file["id"], max_downloads=3)
    opened = visit(app, link, headers={"Accept": "application/json"})
    assert opened.status_code == 200, opened.get_json()
    body = opened.get_json()
    assert set(body) == {"file_name", "size", "content_type", "thumbnail_url", "url", "expires_at"}
    assert (body["file_name"], body["size"], body["content_type"]) == ("orange.png", len(png), "image/png")
    assert opened.headers["Cache-Control"] == "no-store" and "Accept" in opened.headers["Vary"]
    assert requests.get(body["url"], timeout=30).content == png
    preview = requests.get(body["thumbnail_url"], timeout=30)
    assert preview.status_code == 200 and preview.content.startswith(b"RIFF")  # WebP
    # The URL is short-lived; issuing it counted a download.
    lifetime = datetime.fromisoformat(body["expires_at"]) - utcnow()
    assert timedelta(seconds=share_service.URL_SECONDS - 10) < lifetime <= timedelta(seconds=share_service.URL_SECONDS)
    assert listed(client, auth)["items"][0]["downloads"] == 1
    # curl and scripts (*/*) get the redirect; a browser gets the page, whose Download link redirects.
    assert visit(app, link, headers={"Accept": "*/*"}).status_code == 302
    assert visit(app, link, headers={"Accept": BROWSER}).status_code == 200
    assert visit(app, link, query_string={"download": "1"}, headers={"Accept": BROWSER}).status_code == 302


def test_a_password_link_opens_only_with_its_password(app, client, auth):
    file = inspected(app, client, auth)
    link = share(client, auth, file["id"], password="open sesame")
    assert link["has_password"] is True
    for accept in ("*/*", "application/json"):
        refused = visit(app, link, headers={"Accept": accept})
        assert refused.status_code == 401 and error_code(refused) == "unauthorized"
        assert "file_name" not in refused.get_data(as_text=True)
    wrong = visit(app, link, "POST", json={"password": "open barley"})
    assert wrong.status_code == 401 and error_code(wrong) == "unauthorized"
    missing = visit(app, link, "POST", json={})
    assert missing.status_code == 401
    right = visit(app, link, "POST", json={"password": "open sesame"})
    assert right.status_code == 200, right.get_json()
    assert set(right.get_json()) == {"url", "expires_at"} and right.headers["Cache-Control"] == "no-store"
    assert requests.get(right.get_json()["url"], timeout=30).content == DATA
    assert listed(client, auth)["items"][0]["downloads"] == 1  # refusals issue nothing, count nothing
    # A link without a password opens by POST as well.
    plain = share(client, auth, file["id"])
    assert visit(app, plain, "POST", json={}).status_code == 200


# -- the public page ---------------------------------------------------------------------


def page_of(app, link: dict, **query):
    """Open a link as a browser navigating to it: its HTML page."""
    return visit(app, link, headers={"Accept": BROWSER}, query_string=query)


def test_a_browser_gets_the_page_which_counts_nothing_until_download(app, client, auth):
    png = image_bytes("PNG", size=(40, 30))
    file = inspected(app, client, auth, '<img src=x onerror="alert(1)"> & sunset.png', png, "image/png")
    link = share(client, auth, file["id"], max_downloads=1)
    for _ in range(3):  # looking at the page does not use the one download up
        page = page_of(app, link)
        assert page.status_code == 200 and page.mimetype == "text/html"
        html = page.get_data(as_text=True)
        assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt; &amp; sunset.png" in html and "<img src=x" not in html
        assert f"{len(png)} B · image/png" in html
        assert 'id="share-download"' in html and 'href="?download=1"' in html
    assert listed(client, auth)["items"][0]["downloads"] == 0
    preview = re.search(r'<img class="preview" src="([^"]+)"', html).group(1).replace("&amp;", "&")
    assert requests.get(preview, timeout=30).content.startswith(b"RIFF")
    policy = page.headers["Content-Security-Policy"]
    assert (
        "default-src 'none'" in policy and f"img-src {urlsplit(preview).scheme}://{urlsplit(preview).netloc}" in policy
    )
    assert page.headers["Cache-Control"] == "no-store"

    download = page_of(app, link, download="1")
    assert download.status_code == 302
    assert requests.get(download.headers["Location"], timeout=30).content == png
    gone = page_of(app, link)
    assert gone.status_code == 410 and "This link no longer works" in gone.get_data(as_text=True)
    assert "used up" in gone.get_data(as_text=True)


def test_the_page_of_a_password_link_asks_for_it_and_shows_nothing_else(app, client, auth):
    file = inspected(app, client, auth, "secret-plans.txt")
    link = share(client, auth, file["id"], password="open sesame")
    page = page_of(app, link)
    html = page.get_data(as_text=True)
    # Its one script runs by a nonce of this answer only: injected markup could never run a script.
    nonce = re.search(r"script-src 'nonce-([^']+)'", page.headers["Content-Security-Policy"]).group(1)
    assert html.count("<script") == 1 and f'<script nonce="{nonce}">' in html
    assert nonce not in page_of(app, link).headers["Content-Security-Policy"]
    assert page.status_code == 401 and 'id="share-password"' in html and 'type="password"' in html
    assert "secret-plans" not in html and "?download=1" not in html
    # The page's script posts the password as JSON to the link itself, as any client may.
    opened = visit(app, link, "POST", json={"password": "open sesame"})
    assert requests.get(opened.get_json()["url"], timeout=30).content == DATA


def test_a_head_request_tells_whether_a_link_works_and_counts_nothing(app, client, auth):
    file = inspected(app, client, auth)
    plain, protected = share(client, auth, file["id"], max_downloads=1), share(client, auth, file["id"], password="pw")
    for _ in range(3):  # chat previews and link checkers probe with HEAD
        probe = visit(app, plain, "HEAD")
        assert probe.status_code == 200 and "Location" not in probe.headers and probe.data == b""
    assert visit(app, protected, "HEAD").status_code == 401
    assert [item["downloads"] for item in listed(client, auth)["items"]] == [0, 0]
    assert visit(app, plain).status_code == 302  # the one download is still there
    assert visit(app, plain, "HEAD").status_code == 410


def test_the_page_says_why_a_link_does_not_work(app, client, auth):
    file = inspected(app, client, auth)
    revoked, expired = share(client, auth, file["id"]), share(client, auth, file["id"])
    assert client.delete(f"/api/shares/{revoked['id']}", headers=auth).status_code == 200
    set_share(app, expired["id"], expires_at=utcnow() - timedelta(seconds=1))
    for link, status, words in ((revoked, 404, "No such link"), (expired, 410, "This link has expired")):
        page = page_of(app, link)
        assert page.status_code == status and page.mimetype == "text/html"
        assert words in page.get_data(as_text=True)
    unknown = app.test_client().get("/s/" + "x" * 43, headers={"Accept": BROWSER})
    assert unknown.status_code == 404 and "No such link" in unknown.get_data(as_text=True)


@pytest.mark.browser
def test_in_a_browser_the_page_downloads_the_exact_bytes(database_url):
    """Chromium, with no account, against moto over HTTP: the page of a plain link and that of a password
    link each download the file; a wrong password is told in words."""
    with (
        moto_server() as s3_url,
        serve_app(database_url, s3_url, "s3drive-shares", confirm="head", INSPECT=True) as live,
    ):
        live.fresh()
        owner = Api(live.base_url).login("page-owner")
        [ticket] = owner.presign([spec("numbers.txt", DATA, "text/plain")])
        assert put_bytes(ticket, DATA).status_code == 200
        assert owner.confirm_one(ticket["id"]).status_code == 200
        with live.app.app_context():
            assert str(inspect_file(ticket["id"])) == "passed"
        links = [
            owner.post(f"/api/files/{ticket['id']}/shares", json=body).json() for body in ({}, {"password": "pw!"})
        ]
        with chromium_browser() as browser:
            context = browser.new_context(accept_downloads=True)
            page = context.new_page()
            page.goto(links[0]["url"])
            assert page.locator("h1").inner_text() == "numbers.txt"
            with page.expect_download() as plain:
                page.click("#share-download")
            page.goto(links[1]["url"])
            page.fill("#share-password-input", "wrong guess")
            page.click("#share-password button")
            page.locator("#share-status", has_text="That password is not right.").wait_for()  # (CSP: no eval)
            page.fill("#share-password-input", "pw!")
            page.click("#share-password button")
            with page.expect_download() as protected:
                page.click("#share-download")
            for download in (plain.value, protected.value):
                assert download.suggested_filename == "numbers.txt"
                assert pathlib.Path(download.path()).read_bytes() == DATA
            context.close()
        listed = owner.get("/api/shares").json()["items"]
        assert [item["downloads"] for item in listed] == [1, 1]


def test_wrong_passwords_are_rate_limited_per_link_and_per_address(make_app):
    app = make_app(INSPECT=True, SHARE_PASSWORD_RATE_LIMIT="3 per hour")
    client = app.test_client()
    auth = register_and_login(client, "alice")
    file = inspected(app, client, auth)
    first, second = (share(client, auth, file["id"], password="right one") for _ in range(2))

    def attempt(link, password, address):
        return visit(app, link, "POST", json={"password": password}, environ_base={"REMOTE_ADDR": address})

    # Knowing the password is never held back: only failed guesses count.
    for _ in range(4):
        assert attempt(first, "right one", "10.0.0.1").status_code == 200
    # Per link: three wrong guesses from three addresses, then the link refuses everyone for a while.
    assert [attempt(first, "nope", f"10.0.1.{i}").status_code for i in range(3)] == [401, 401, 401]
    limited = attempt(first, "right one", "10.0.1.9")
    assert limited.status_code == 429 and error_code(limited) == "rate_limited"
    assert int(limited.headers["Retry-After"]) > 0
    # Per address: two guesses at one link and one at another use up that address, not the links.
    assert attempt(second, "nope", "10.0.2.1").status_code == 401
    assert attempt(second, "nope", "10.0.2.1").status_code == 401
    assert attempt(second, "nope", "10.0.2.2").status_code == 401  # the link's third
    assert attempt(second, "right one", "10.0.2.1").status_code == 429
    assert visit(app, second, headers={"Accept": "application/json"}).status_code == 401  # GET is not limited


# -- when a link stops ----------------------------------------------------------------------


def test_an_expired_link_is_gone(app, client, auth):
    file = inspected(app, client, auth)
    link = share(client, auth, file["id"], expires_in=60)
    expires_at = datetime.fromisoformat(link["expires_at"])
    assert abs(expires_at - (utcnow() + timedelta(seconds=60))) < timedelta(seconds=5)
    assert visit(app, link).status_code == 302
    set_share(app, link["id"], expires_at=utcnow() - timedelta(seconds=1))
    for method, body in (("GET", None), ("POST", {})):
        gone = visit(app, link, method, json=body)
        assert gone.status_code == 410 and error_code(gone) == "gone", method


def test_a_used_up_link_is_gone(app, client, auth):
    file = inspected(app, client, auth)
    link = share(client, auth, file["id"], max_downloads=2)
    assert visit(app, link).status_code == 302
    assert visit(app, link, headers={"Accept": "application/json"}).status_code == 200
    for _ in range(2):
        gone = visit(app, link)
        assert gone.status_code == 410 and error_code(gone) == "gone"
    assert listed(client, auth)["items"][0]["downloads"] == 2


def test_concurrent_opens_never_pass_max_downloads(app, client, auth):
    file = inspected(app, client, auth)
    link = share(client, auth, file["id"], max_downloads=5)
    start = threading.Barrier(16)

    def open_once(_):
        start.wait()
        return visit(app, link).status_code

    with ThreadPoolExecutor(16) as pool:
        statuses = sorted(pool.map(open_once, range(16)))
    assert statuses == [302] * 5 + [410] * 11
    with app.app_context():
        assert db.session.get(Share, link["id"]).downloads == 5


def test_the_count_itself_is_atomic(app, client, auth):
    """Many transactions count the last download of one link at the same instant: one wins."""
    file = inspected(app, client, auth)
    link = share(client, auth, file["id"], max_downloads=1)
    start = threading.Barrier(8)

    def count(_):
        with app.app_context():
            start.wait()
            counted = share_service.count_download(link["id"], utcnow())
            db.session.commit()
            return counted

    with ThreadPoolExecutor(8) as pool:
        assert sorted(pool.map(count, range(8))) == [False] * 7 + [True]
    assert visit(app, link).status_code == 410


def test_a_revoked_link_stops_at_once(app, client, auth, other_auth):
    file = inspected(app, client, auth)
    link = share(client, auth, file["id"])
    assert visit(app, link).status_code == 302
    foreign = client.delete(f"/api/shares/{link['id']}", headers=other_auth)
    assert foreign.status_code == 404 and error_code(foreign) == "not_found"
    revoked = client.delete(f"/api/shares/{link['id']}", headers=auth)
    assert revoked.status_code == 200
    assert revoked.get_json()["revoked"] is True and revoked.get_json()["downloads"] == 1
    for method, body in (("GET", None), ("POST", {"password": "x"})):
        after = visit(app, link, method, json=body)
        assert after.status_code == 404 and error_code(after) == "not_found"
    again = client.delete(f"/api/shares/{link['id']}", headers=auth)  # idempotent
    assert again.status_code == 200 and again.get_json() == revoked.get_json()
    assert client.delete("/api/shares/no-such-share", headers=auth).status_code == 404


def test_with_inspection_switched_off_complete_files_can_be_shared(make_app):
    """S3DRIVE_INSPECT=false: files are never inspected (inspection null); sharing needs only `complete`."""
    app = make_app(INSPECT=False)
    client = app.test_client()
    auth = register_and_login(client, "no-inspection")
    file = upload(client, auth, "plain.txt")
    assert file["inspection"] is None
    link = share(client, auth, file["id"])
    assert requests.get(visit(app, link).headers["Location"], timeout=30).content == DATA


def test_a_disabled_accounts_links_stop_and_come_back_with_it(app, client, auth, admin_auth):
    """An admin disables the owner (abuse, someone who left): the links stop at once, as the tokens do."""
    file = inspected(app, client, auth)
    link = share(client, auth, file["id"])
    owner = client.get("/api/auth/me", headers=auth).get_json()["id"]
    disabled = client.patch(f"/api/admin/users/{owner}", json={"is_active": False}, headers=admin_auth)
    assert disabled.status_code == 200, disabled.get_json()
    for method, headers in (("GET", {"Accept": "*/*"}), ("GET", {"Accept": BROWSER}), ("HEAD", {})):
        assert visit(app, link, method, headers=headers).status_code == 404
    assert client.patch(f"/api/admin/users/{owner}", json={"is_active": True}, headers=admin_auth).status_code == 200
    assert requests.get(visit(app, link).headers["Location"], timeout=30).content == DATA


@pytest.mark.parametrize("how", ["one", "batch"])
def test_deleting_the_file_makes_its_links_gone(app, client, auth, how):
    file = inspected(app, client, auth)
    link = share(client, auth, file["id"])
    if how == "one":
        assert client.delete(f"/api/files/{file['id']}", headers=auth).status_code == 200
    else:
        deleted = client.post("/api/files/delete", json={"ids": [file["id"]]}, headers=auth)
        assert deleted.get_json()["deleted"] == [file["id"]]
    gone = visit(app, link)
    assert gone.status_code == 410 and error_code(gone) == "gone"


def test_a_delete_left_half_done_already_ends_the_links(app, client, auth):
    # The intent is written, S3 not yet asked (a process that died, or S3 down): the sweeper finishes it later.
    file = inspected(app, client, auth)
    link = share(client, auth, file["id"])
    with app.app_context():
        user_id = db.session.get(File, file["id"]).user_id
        mark_deleting(user_id, [file["id"]])
    assert visit(app, link).status_code == 410


def test_a_rejected_or_reinspected_file_ends_or_holds_its_links(app, client, auth):
    file = inspected(app, client, auth)
    link = share(client, auth, file["id"])
    set_file(app, file["id"], inspection_state="pending")  # an admin asked for a new inspection
    held = visit(app, link)
    assert held.status_code == 409 and error_code(held) == "not_ready"
    set_file(app, file["id"], inspection_state="rejected", status="rejected")  # as the worker leaves it
    gone = visit(app, link)
    assert gone.status_code == 410 and error_code(gone) == "gone"
    assert listed(client, auth)["items"][0]["downloads"] == 0


def test_unknown_links_are_not_found(app, client):
    for path in ("/s/" + "A" * 43, "/s/" + "x" * 500, "/s/%00"):
        for method in ("GET", "POST"):
            response = client.open(path, method=method, json={"password": "x"})
            assert response.status_code in (404, 422), path
            assert error_code(response) in ("not_found", "validation_error")
    assert error_code(client.get("/s/" + "A" * 43)) == "not_found"


def test_the_sweeper_drops_links_dead_for_thirty_days(app, client, auth):
    file = inspected(app, client, auth)
    old_expired, old_revoked, recent, live = (share(client, auth, file["id"]) for _ in range(4))
    long_ago, lately = utcnow() - timedelta(days=31), utcnow() - timedelta(days=29)
    set_share(app, old_expired["id"], expires_at=long_ago)
    set_share(app, old_revoked["id"], revoked_at=long_ago)
    set_share(app, recent["id"], expires_at=lately, revoked_at=lately)
    with app.app_context():
        counts = sweeper.sweep()
    assert counts.shares_deleted == 2
    assert {s["id"] for s in listed(client, auth)["items"]} == {recent["id"], live["id"]}
    assert visit(app, old_expired).status_code == 404  # unknown now, no longer 410
    assert visit(app, recent).status_code == 404 and visit(app, live).status_code == 302


# -- what can be shared ---------------------------------------------------------------------


def test_only_complete_files_that_passed_inspection_can_be_shared(app, client, auth, other_auth):
    pending = upload(client, auth, "waiting.txt")
    response = client.post(f"/api/files/{pending['id']}/shares", json={}, headers=auth)
    assert response.status_code == 409 and error_code(response) == "not_ready"

    refused = upload(client, auth, "image.png", make_pdf(pages=1), "image/png")
    with app.app_context():
        assert str(inspect_file(refused["id"])) == "rejected"
    response = client.post(f"/api/files/{refused['id']}/shares", json={}, headers=auth)
    assert response.status_code == 409 and error_code(response) == "invalid_state"

    [unconfirmed] = presign(client, auth, spec("later.txt", DATA, "text/plain"))["successful"]
    response = client.post(f"/api/files/{unconfirmed['id']}/shares", json={}, headers=auth)
    assert response.status_code == 409 and error_code(response) == "invalid_state"

    never_inspected = upload(client, auth, "old.txt")
    set_file(app, never_inspected["id"], inspection_state=None)  # completed while inspection was off
    response = client.post(f"/api/files/{never_inspected['id']}/shares", json={}, headers=auth)
    assert response.status_code == 409 and error_code(response) == "invalid_state"

    archived = inspected(app, client, auth, "cold.txt")
    set_file(app, archived["id"], tier="glacier")
    response = client.post(f"/api/files/{archived['id']}/shares", json={}, headers=auth)
    assert response.status_code == 409 and error_code(response) == "invalid_state"

    mine = inspected(app, client, auth, "mine.txt")
    for file_id in (mine["id"], "no-such-file"):
        response = client.post(f"/api/files/{file_id}/shares", json={}, headers=other_auth)
        assert response.status_code == 404 and error_code(response) == "not_found"
    with app.app_context():
        assert db.session.query(Share).count() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"expires_in": 0}, "expires_in"),
        ({"expires_in": -5}, "expires_in"),
        ({"expires_in": 30 * DAY + 1}, "expires_in"),
        ({"expires_in": "3600"}, "expires_in"),
        ({"expires_in": 1.5}, "expires_in"),
        ({"expires_in": None}, "expires_in"),
        ({"expires_in": True}, "expires_in"),
        ({"expires_in": 10**30}, "expires_in"),
        ({"max_downloads": 0}, "max_downloads"),
        ({"max_downloads": -1}, "max_downloads"),
        ({"max_downloads": "3"}, "max_downloads"),
        ({"max_downloads": 2**31}, "max_downloads"),
        ({"max_downloads": 2.0}, "max_downloads"),
        ({"password": ""}, "password"),
        ({"password": "x" * 1025}, "password"),
        ({"password": 1234}, "password"),
        ({"password": ["a"]}, "password"),
        ({"password": "a\u0000b"}, "password"),
        ({"max_download": 1}, "max_download"),
    ],
)
def test_bad_values_are_validation_errors(app, client, auth, body, field):
    file = inspected(app, client, auth)
    response = client.post(f"/api/files/{file['id']}/shares", json=body, headers=auth)
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "validation_error" and field in error["details"], error
    with app.app_context():
        assert db.session.query(Share).count() == 0


def test_bad_bodies_and_queries(app, client, auth):
    file = inspected(app, client, auth)
    for kwargs in ({"data": "{nope", "content_type": "application/json"}, {"json": [1]}, {"data": "x=1"}):
        response = client.post(f"/api/files/{file['id']}/shares", headers=auth, **kwargs)
        assert response.status_code == 400 and error_code(response) == "bad_request"
    link = share(client, auth, file["id"], password="pw")
    assert visit(app, link, "POST", data="{nope", content_type="application/json").status_code == 400
    assert error_code(visit(app, link, "POST", json={"password": 5})) == "validation_error"
    for query in ({"limit": 0}, {"limit": 1001}, {"limit": "x"}, {"cursor": "forged"}):
        response = client.get("/api/shares", query_string=query, headers=auth)
        assert response.status_code == 422 and error_code(response) == "validation_error", query
    assert client.get("/api/shares").status_code == 401
    assert client.post(f"/api/files/{file['id']}/shares", json={}).status_code == 401


def test_the_limits_of_expiry_and_downloads_are_accepted(app, client, auth):
    file = inspected(app, client, auth)
    longest = share(client, auth, file["id"], expires_in=30 * DAY, max_downloads=2**31 - 1, password="p")
    default = share(client, auth, file["id"])
    with app.app_context():
        rows = {s.id: s for s in db.session.query(Share)}
    assert rows[longest["id"]].expires_at - rows[longest["id"]].created_at == timedelta(days=30)
    assert rows[default["id"]].expires_at - rows[default["id"]].created_at == timedelta(days=7)


# -- listing --------------------------------------------------------------------------------


def test_listing_pages_newest_first_and_filters_by_file(app, client, auth, other_auth):
    one = inspected(app, client, auth, "one.txt")
    two = inspected(app, client, auth, "two.txt")
    made = [share(client, auth, (one if i % 3 else two)["id"]) for i in range(7)]
    revoked = made[2]
    assert client.delete(f"/api/shares/{revoked['id']}", headers=auth).status_code == 200

    seen, cursor = [], None
    while True:
        page = listed(client, auth, limit=3, **({"cursor": cursor} if cursor else {}))
        assert len(page["items"]) <= 3
        seen.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [s["id"] for s in seen] == [s["id"] for s in reversed(made)]
    assert {s["id"]: s["revoked"] for s in seen}[revoked["id"]] is True
    assert all(s["url"] is None for s in seen)

    only_two = listed(client, auth, file_id=two["id"])
    assert [s["id"] for s in only_two["items"]] == [s["id"] for s in reversed(made) if s["file_id"] == two["id"]]
    assert only_two["next_cursor"] is None

    # Another user sees none of them, not even by file id, and cannot use the owner's cursor.
    assert listed(client, other_auth) == {"items": [], "next_cursor": None}
    assert listed(client, other_auth, file_id=one["id"])["items"] == []
    first_page = listed(client, auth, limit=2)
    response = client.get("/api/shares", query_string={"cursor": first_page["next_cursor"]}, headers=other_auth)
    assert response.status_code == 422 and error_code(response) == "validation_error"


# -- what the database holds ----------------------------------------------------------------


def test_only_hashes_of_the_token_and_password_are_stored(app, client, auth):
    file = inspected(app, client, auth)
    link = share(client, auth, file["id"], password="correct horse")
    token = token_of(link)
    with app.app_context():
        rows = [dict(row._mapping) for row in db.session.execute(text("SELECT * FROM shares"))]
    [row] = rows
    stored = " ".join(str(value) for value in row.values())
    assert token not in stored and "correct horse" not in stored
    assert row["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert row["password_hash"].startswith(("scrypt:", "pbkdf2:"))
    # A link is found by its hash: the stored hash itself is no link.
    assert visit(app, {"url": "http://x/s/" + row["token_hash"]}).status_code == 404


def test_the_routes_are_in_the_openapi_document(client):
    paths = client.get("/openapi.json").get_json()["paths"]
    assert set(paths["/api/files/{file_id}/shares"]) >= {"post"}
    assert set(paths["/api/shares"]) >= {"get"} and set(paths["/api/shares/{share_id}"]) >= {"delete"}
    public = paths["/s/{token}"]
    assert {"302", "200", "401", "404", "410"} <= set(public["get"]["responses"])
    assert {"200", "401", "410", "429"} <= set(public["post"]["responses"])
    assert "security" not in public["get"] and "security" not in public["post"]
    assert paths["/api/shares"]["get"]["security"] == [{"bearerAuth": []}]
