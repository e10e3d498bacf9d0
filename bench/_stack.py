"""What the HTTP benchmarks share: MiniStack, a database of their own, s3drive under gunicorn, wrk.

s3drive runs as the Procfile runs it (`gunicorn wsgi:app`, settings from gunicorn.conf.py) on
PostgreSQL (a database created for the run and dropped after it) with Redis as the task broker,
as deployed. Nothing here is imported by the server.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from s3drive.dev import ministack as dev_s3  # noqa: E402

VENV_BIN = Path(sys.executable).parent
POSTGRES_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
REDIS_BROKER = "redis://127.0.0.1:6379/14"


def load_average() -> str:
    """Return the 1, 5 and 15 minute load averages, for the report."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


# -- processes ------------------------------------------------------------------------------


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    """Wait until url answers (any status), or fail with the process's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args[0]} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@contextmanager
def process(args: list[str], *, env: dict, log: Path, cwd: Path, ready_url: str) -> Iterator[subprocess.Popen]:
    """Run a server process in its own group until the block ends."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(ready_url, proc, log)
        yield proc
    finally:
        dev_s3.stop_process(proc)


@contextmanager
def ministack(tmp: Path, bucket: str) -> Iterator[str]:
    """Run MiniStack (AUTH=true) with the bucket; yield its URL."""
    executable = dev_s3.ensure_ministack(REPO / ".cache" / "ministack-venv")
    port = dev_s3.free_port()
    proc = dev_s3.start_ministack(
        port=port, data_dir=tmp / "ministack", persist=False, log_path=tmp / "ministack.log", executable=executable
    )
    url = dev_s3.endpoint_url(port)
    try:
        dev_s3.wait_ready(url, proc=proc)
        dev_s3.ensure_bucket(url, bucket, cors_origins=[])
        yield url
    finally:
        dev_s3.stop_process(proc)


@contextmanager
def own_database(server_url: str | None) -> Iterator[str | None]:
    """Create a PostgreSQL database for this run on server_url and drop it after; None: yield None."""
    if server_url is None:
        yield None
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    server = make_url(server_url)
    name = f"s3drive_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# -- s3drive under gunicorn -----------------------------------------------------------------


@dataclass
class Settings:
    """How s3drive is served: storage, database, broker, and gunicorn overrides (None: gunicorn.conf.py)."""

    bucket: str
    s3_url: str
    database_url: str | None  # None: a SQLite file in the run's directory
    broker_url: str = REDIS_BROKER
    workers: int | None = None
    threads: int | None = None


def s3drive_env(tmp: Path, settings: Settings) -> dict:
    """Return the environment of the s3drive processes (nothing of the caller's S3DRIVE_* leaks in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("S3DRIVE_", "WEB_CONCURRENCY", "GUNICORN_"))}
    env.update(
        AWS_ACCESS_KEY_ID=dev_s3.ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=dev_s3.SECRET_KEY,
        AWS_DEFAULT_REGION=dev_s3.REGION,
        S3DRIVE_DATABASE_URL=settings.database_url or f"sqlite:///{tmp}/bench.sqlite3",
        S3DRIVE_BROKER_URL=settings.broker_url,
        S3DRIVE_S3_BUCKET=settings.bucket,
        S3DRIVE_S3_ENDPOINT_URL=settings.s3_url,
        S3DRIVE_S3_ADDRESSING_STYLE="path",
        S3DRIVE_JWT_SECRET_KEY=secrets.token_urlsafe(48),
        S3DRIVE_LOGIN_RATE_LIMIT="100000 per minute",
        S3DRIVE_DEFAULT_QUOTA_BYTES=str(10**15),
    )
    if settings.workers is not None:
        env["WEB_CONCURRENCY"] = str(settings.workers)
    if settings.threads is not None:
        env["GUNICORN_THREADS"] = str(settings.threads)
    return env


@contextmanager
def gunicorn(tmp: Path, settings: Settings) -> Iterator[str]:
    """Migrate the database, then serve s3drive as the Procfile does (`gunicorn wsgi:app`); yield its URL."""
    port = dev_s3.free_port()
    url = f"http://127.0.0.1:{port}"
    env = s3drive_env(tmp, settings) | {"PORT": str(port), "S3DRIVE_PUBLIC_URL": url}
    migrated = subprocess.run(
        [str(VENV_BIN / "flask"), "--app", "wsgi", "db", "upgrade"], env=env, cwd=REPO, capture_output=True, text=True
    )
    if migrated.returncode:
        sys.exit(f"flask db upgrade failed:\n{migrated.stdout}{migrated.stderr}")
    command = [str(VENV_BIN / "gunicorn"), "wsgi:app"]
    with process(command, env=env, log=tmp / "gunicorn.log", cwd=REPO, ready_url=url + "/healthz"):
        try:
            yield url
        finally:
            _clear_broker(settings.broker_url)


def _clear_broker(broker_url: str) -> None:
    """Drop the tasks the run queued (nobody consumes them in a bench)."""
    if broker_url.startswith("redis://"):
        import redis

        redis.Redis.from_url(broker_url).flushdb()


def describe(settings: Settings) -> str:
    """Return one line saying how s3drive is served."""
    database = "PostgreSQL" if settings.database_url else "SQLite"
    broker = "Redis" if settings.broker_url.startswith("redis") else settings.broker_url
    workers = settings.workers or os.environ.get("WEB_CONCURRENCY") or "gunicorn.conf.py's"
    threads = settings.threads or "gunicorn.conf.py's"
    kind = "gevent workers" if settings.database_url else "gthread workers"  # gunicorn.conf.py's choice
    return f"gunicorn wsgi:app ({workers} {kind}, {threads} threads for gthread), {database}, broker {broker}"


# -- load -----------------------------------------------------------------------------------

LUA_ROTATE = """
local requests = {}
local n = 0
init = function(args)
  local items = %s
  for i, item in ipairs(items) do
    local headers = {}
    for name, value in pairs(item.headers) do headers[name] = value end
    if item.body then headers["Content-Type"] = "application/json" end
    requests[i] = wrk.format(item.method, item.path, headers, item.body)
  end
  n = math.random(#requests)
end
request = function()
  n = n %% #requests + 1
  return requests[n]
end
local reported = false
response = function(status, headers, body)
  if status >= 300 and not reported then
    reported = true
    io.stderr:write("first failure: " .. status .. " " .. string.sub(body, 1, 300) .. "\\n")
  end
end
"""


def _lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


def _lua_items(items: list[dict]) -> str:
    """Render request descriptions as a Lua table literal."""
    rendered = []
    for item in items:
        headers = ", ".join(f"[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in item.get("headers", {}).items())
        body = _lua_string(item["body"]) if item.get("body") else "nil"
        rendered.append(
            f"{{method = {_lua_string(item['method'])}, path = {_lua_string(item['path'])},"
            f" headers = {{{headers}}}, body = {body}}}"
        )
    return "{" + ",\n".join(rendered) + "}"


def load_tool() -> str:
    """Name the load generator run_load uses."""
    return "wrk, 1 thread" if shutil.which("wrk") else "Python threads"


def run_load(base_url: str, items: list[dict], connections: int, duration: float, tmp: Path) -> float:
    """Drive base_url with the requests in rotation for a fixed time; return requests/s (all must be 2xx)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return _python_load(base_url, items, connections, duration)
    script = tmp / f"load-{time.monotonic_ns()}.lua"
    script.write_text(LUA_ROTATE % _lua_items(items))
    command = [
        wrk,
        "--threads=1",
        f"--connections={connections}",
        f"--duration={int(duration)}s",
        "--timeout=30s",
        f"--script={script}",
        base_url,
    ]
    run = subprocess.run(command, capture_output=True, text=True, check=True)
    output = run.stdout + run.stderr
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: (.*)", output)
    if bad or errors:
        first = items[0]
        sample = requests.request(
            first["method"], base_url + first["path"], headers=_headers(first), data=first.get("body"), timeout=30
        )
        sys.exit(
            f"load run had failures against {base_url}{first['path']}:\n{output}\n"
            f"one such request now answers {sample.status_code}: {sample.text[:500]}"
        )
    return float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))


def _headers(item: dict) -> dict:
    """Return a load item's headers, with the JSON type its body has (as the wrk script sends it)."""
    headers = dict(item.get("headers") or {})
    if item.get("body"):
        headers["Content-Type"] = "application/json"
    return headers


def _python_load(base_url: str, items: list[dict], connections: int, duration: float) -> float:
    """Closed-loop load from threads with one requests.Session each (slower than wrk: it shares the CPU)."""
    deadline = time.monotonic() + duration
    counts = [0] * connections
    failures: list[str] = []

    def worker(index: int) -> None:
        with requests.Session() as session:
            position = index
            while time.monotonic() < deadline and not failures:
                item = items[position % len(items)]
                position += 1
                response = session.request(
                    item["method"], base_url + item["path"], headers=_headers(item), data=item.get("body")
                )
                if response.status_code >= 300:
                    failures.append(f"{response.status_code} {response.text[:300]}")
                counts[index] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        sys.exit(f"load run had failures against {base_url}{items[0]['path']}: {failures[0]}")
    return sum(counts) / (time.monotonic() - started)
