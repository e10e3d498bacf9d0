"""Start-up validation: one clear line naming the variable, before serving anything."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import requests
from helpers import wait_until

from s3drive import ConfigError, create_app
from s3drive.dev import ministack

ROOT = Path(__file__).resolve().parent.parent
SECRET = "s" * 40


def start_wsgi(env: dict[str, str]) -> subprocess.CompletedProcess:
    """Import wsgi.py in a fresh process with exactly these S3DRIVE_* settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("S3DRIVE_")}
    return subprocess.run(
        [sys.executable, "-c", "import wsgi"],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"S3DRIVE_JWT_SECRET_KEY": SECRET}, "S3DRIVE_S3_BUCKET"),
        ({"S3DRIVE_S3_BUCKET": "b"}, "S3DRIVE_JWT_SECRET_KEY"),
        ({"S3DRIVE_S3_BUCKET": "b", "S3DRIVE_JWT_SECRET_KEY": "short"}, "S3DRIVE_JWT_SECRET_KEY"),
        ({"S3DRIVE_S3_BUCKET": "b", "S3DRIVE_JWT_SECRET_KEY": SECRET}, "S3DRIVE_PUBLIC_URL"),
        (
            {
                "S3DRIVE_S3_BUCKET": "b",
                "S3DRIVE_JWT_SECRET_KEY": SECRET,
                "S3DRIVE_PUBLIC_URL": "https://files.example",
                "S3DRIVE_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none",
            },
            "S3DRIVE_DATABASE_URL",
        ),
    ],
)
def test_start_up_refuses_with_one_line(env, variable, tmp_path):
    result = start_wsgi(env)
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and variable in lines[0], result.stderr


@pytest.mark.parametrize(
    "where", [{"S3DRIVE_PUBLIC_URL": "https://files.example"}, {"S3DRIVE_TRUSTED_HOSTS": "files.example"}]
)
def test_start_up_succeeds_with_required_settings(tmp_path, where):
    env = {
        "S3DRIVE_S3_BUCKET": "b",
        "S3DRIVE_JWT_SECRET_KEY": SECRET,
        "S3DRIVE_DATABASE_URL": f"sqlite:///{tmp_path}/ok.sqlite3",
        **where,
    }
    result = start_wsgi(env)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("override", "variable"),
    [
        ({"S3_CONFIRM": "maybe"}, "S3DRIVE_S3_CONFIRM"),
        ({"S3_ADDRESSING_STYLE": "sideways"}, "S3DRIVE_S3_ADDRESSING_STYLE"),
        ({"SSE": "rot13"}, "S3DRIVE_SSE"),
        ({"SSE_KMS_KEY_ID": "k"}, "S3DRIVE_SSE_KMS_KEY_ID"),
        ({"MAX_BATCH": "lots"}, "S3DRIVE_MAX_BATCH"),
        ({"MAX_BATCH": 0}, "S3DRIVE_MAX_BATCH"),
        ({"URL_EXPIRES_IN": 10 * 24 * 3600}, "S3DRIVE_URL_EXPIRES_IN"),
        ({"ALLOW_REGISTRATION": "perhaps"}, "S3DRIVE_ALLOW_REGISTRATION"),
        ({"MULTIPART_THRESHOLD": 1024}, "S3DRIVE_MULTIPART_THRESHOLD"),
        ({"PUBLIC_URL": "files.example"}, "S3DRIVE_PUBLIC_URL"),
        ({"METRICS_TOKEN": "short"}, "S3DRIVE_METRICS_TOKEN"),
        ({"DEFAULT_QUOTA_BYTES": 2**51}, "S3DRIVE_DEFAULT_QUOTA_BYTES"),
    ],
)
def test_invalid_settings_are_named(override, variable):
    with pytest.raises(ConfigError, match=variable):
        create_app({"TESTING": True, **override})


def test_environment_values_are_typed(monkeypatch, tmp_path):
    monkeypatch.setenv("S3DRIVE_MAX_BATCH", "250")
    monkeypatch.setenv("S3DRIVE_ALLOWED_CONTENT_TYPES", "image/*, Application/PDF")
    monkeypatch.setenv("S3DRIVE_ALLOW_REGISTRATION", "false")
    monkeypatch.setenv("S3DRIVE_CORS_ORIGINS", "https://a.example,https://b.example")
    app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp_path}/t.sqlite3"})
    assert app.config["MAX_BATCH"] == 250
    assert app.config["ALLOWED_CONTENT_TYPES"] == ["image/*", "application/pdf"]
    assert app.config["ALLOW_REGISTRATION"] is False
    assert app.config["CORS_ORIGINS"] == ["https://a.example", "https://b.example"]


def test_cors_preflight_for_configured_origin(make_app):
    app = make_app(CORS_ORIGINS="https://app.example")
    client = app.test_client()
    preflight = client.options(
        "/api/files/upload/",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example"
    other = client.options(
        "/api/files/upload/", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert "Access-Control-Allow-Origin" not in other.headers


def start_gunicorn(tmp_path, extra: dict[str, str], while_up=None) -> str:
    """Start gunicorn with 2 workers (reading gunicorn.conf.py), call while_up(base_url) once it
    answers, stop it; return its log."""
    port = ministack.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("S3DRIVE_")}
    env.update(
        S3DRIVE_S3_BUCKET="b",
        S3DRIVE_JWT_SECRET_KEY=SECRET,
        S3DRIVE_PUBLIC_URL="https://files.example",
        S3DRIVE_DATABASE_URL=f"sqlite:///{tmp_path}/g.sqlite3",
        **extra,
    )
    log = tmp_path / "gunicorn.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "wsgi:app", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        assert wait_until(lambda: b"Booting worker" in log.read_bytes() or proc.poll() is not None, timeout=60)
        assert proc.poll() is None, log.read_text()
        if while_up is not None:
            assert wait_until(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), timeout=60), log.read_text()
            while_up(f"http://127.0.0.1:{port}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return log.read_text()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_a_long_request_line_reaches_the_app_not_gunicorns_html_414(tmp_path):
    def long_line(base: str) -> None:
        # What Uppy sends to sign 1,000 parts at once.
        numbers = ",".join(map(str, range(1, 1001)))
        key, upload_id = "users/" + "k" * 150 + "/video.mp4", "u" * 150  # about as long as real ones
        answer = requests.get(f"{base}/uppy/s3/multipart/{upload_id}/batch?key={key}&partNumbers={numbers}", timeout=10)
        assert answer.status_code == 401 and answer.json()["error"], answer.text  # ours: Companion's shape

    start_gunicorn(tmp_path, {}, long_line)


def test_several_workers_with_in_memory_rate_limits_are_reported(tmp_path):
    assert "counts the rate limits on its own" in start_gunicorn(tmp_path, {})
    shared = start_gunicorn(tmp_path, {"S3DRIVE_RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379/0"})
    assert "counts the rate limits on its own" not in shared


def test_the_access_log_is_gunicorns_combined_format_without_session_or_share_tokens(tmp_path):
    """With text logs, gunicorn.conf.py's AccessLogger writes gunicorn's default line (Apache's combined format),
    quotes escaped as gunicorn escapes them, and never the token of an Uppy session or a share link."""
    session = "SECRET-uppy-session-token"
    share = "SECRET-share-link-token-0123456789abcdefghijk"

    def calls(base: str) -> None:
        headers = {"User-Agent": 'probe "quoted"', "Referer": "https://app.example/"}
        assert requests.get(f"{base}/healthz", headers=headers, timeout=10).status_code == 200
        answer = requests.get(f"{base}/uppy/{session}/s3/params?filename=a.jpg&type=image/jpeg", timeout=10)
        assert answer.status_code == 401
        # (This database is never migrated: the share's lookup fails; only the log line matters here.)
        requests.get(f"{base}/s/{share}?download=1", timeout=10)
        requests.head(f"{base}/s/{share}", timeout=10)

    log = start_gunicorn(tmp_path, {"S3DRIVE_LOG_FORMAT": "text"}, calls)
    stamp = r"\[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]"
    healthz = (
        rf'^127\.0\.0\.1 - - {stamp} "GET /healthz HTTP/1\.1" 200 \d+ "https://app\.example/" "probe \\"quoted\\""$'
    )
    assert re.search(healthz, log, re.MULTILINE), log
    uppy = (
        rf'^127\.0\.0\.1 - - {stamp} "GET /uppy/\[session\]/s3/params\?filename=a\.jpg&type=image/jpeg HTTP/1\.1" 401 '
    )
    assert re.search(uppy, log, re.MULTILINE), log
    assert re.search(rf'^127\.0\.0\.1 - - {stamp} "GET /s/\[token\]\?download=1 HTTP/1\.1" \d+ ', log, re.M), log
    assert re.search(r'"HEAD /s/\[token\] HTTP/1\.1" \d+ ', log), log
    assert session not in log and share not in log


@pytest.mark.parametrize(
    ("database_url", "worker_class"),
    [
        ("postgresql+psycopg://db.example/s3drive", "gevent"),
        ("sqlite:////tmp/s3drive.sqlite3", "gthread"),
        ("", "gthread"),
    ],
)
def test_gunicorn_runs_gevent_on_postgresql_and_threads_on_sqlite(database_url, worker_class):
    # psycopg cooperates with gevent; SQLite's driver would stall a gevent worker while it waits for a lock.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("S3DRIVE_", "GUNICORN_"))}
    env["S3DRIVE_DATABASE_URL"] = database_url
    script = "import runpy; print(runpy.run_path('gunicorn.conf.py')['worker_class'])"
    chosen = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert chosen.stdout.strip() == worker_class


def test_gunicorn_workers_freeze_what_start_up_allocated():
    # In a process of its own: gunicorn.conf.py also sets S3DRIVE_MAX_IN_FLIGHT in the environment.
    script = (
        "import gc, runpy; conf = runpy.run_path('gunicorn.conf.py'); conf['post_worker_init'](None);"
        " print(gc.get_freeze_count() > 0, gc.get_threshold()[0] == conf['GC_THRESHOLD'])"
    )
    checked = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    assert checked.stdout.split() == ["True", "True"]


def test_migrating_a_fresh_database_prints_no_warning(tmp_path):
    """`flask db upgrade` on SQLite (whose migrations rebuild tables by reflecting them) says nothing
    but Alembic's own lines: no SAWarning about the index SQLAlchemy cannot reflect."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("S3DRIVE_")}
    env = {
        **clean,
        "S3DRIVE_DATABASE_URL": f"sqlite:///{tmp_path}/fresh.sqlite3",
        "S3DRIVE_S3_BUCKET": "b",
        "S3DRIVE_JWT_SECRET_KEY": SECRET,
        "S3DRIVE_PUBLIC_URL": "https://files.example",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "y",
        "PYTHONWARNINGS": "default",
    }
    upgraded = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert upgraded.returncode == 0, upgraded.stderr
    assert "Running upgrade 0007 -> 0008" in upgraded.stderr + upgraded.stdout
    assert "Warning" not in upgraded.stderr + upgraded.stdout, upgraded.stderr


def test_the_migrations_build_what_the_models_declare(app):
    """Alembic's autogenerate finds nothing to change between the migrated test database (SQLite, or
    PostgreSQL in CI's second run) and the models: every table, column, index and constraint is there."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from s3drive.extensions import db

    with app.app_context(), db.engine.connect() as connection, warnings.catch_warnings():
        # SQLite cannot reflect expression indexes (lower(username), the trigram ones): Alembic says so and skips them.
        warnings.filterwarnings("ignore", message="autogenerate skipping metadata-specified expression-based index")
        warnings.filterwarnings("ignore", message="Skipped unsupported reflection of expression-based index")
        differences = compare_metadata(MigrationContext.configure(connection), db.metadata)
    assert differences == []
