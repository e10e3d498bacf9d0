"""Benchmark: s3drive's Companion-compatible routes vs Uppy Companion itself, over HTTP on loopback.

Both servers sign for the same S3 emulator (MiniStack, bucket and key test/test) in the same
run, and one closed-loop load generator (wrk, fixed duration and connection count) drives
each in turn:

  - params:  GET /s3/params?filename=&type=  (a POST form per request, as stock Uppy asks: no size)
      s3drive: /uppy/s3/params with a Bearer header, and /uppy/<token>/s3/params (session
               token); each request also checks policy, reserves quota and inserts a record,
               and the upload watcher then looks for each form's object in S3 (HeadObject at
               1, 3, 7 s ... : the bench uploads nothing, so every form is looked for again and
               again, which a real upload ends after one or two looks). That background work
               runs in the same gunicorn workers and is counted.
      Companion: /s3/params (it checks nothing and records nothing).
  - batch part signing, 100 part numbers a request (signed URLs/s = requests/s x 100):
      Companion: GET /s3/multipart/<id>/batch?key=&partNumbers=1,...,100
      s3drive:   POST /api/files/multipart/<id>/sign {"part_numbers": [1..100]} (native), and
                 GET /uppy/s3/multipart/<id>/batch (the Companion-compatible route).

s3drive runs under gunicorn (--workers/--threads) on a SQLite file (or --database-url);
Companion runs as its standalone server (one Node.js process, as shipped). Before every
measurement s3drive's workers are replaced (SIGHUP), so no watcher work of an earlier run
overlaps the next one, whoever's it is. Requests rotate
over --users accounts, as on a server many people use at once.

Uses wrk (apt-get install wrk) when present, else a slower closed loop of Python threads.
Needs Node.js/npm (bench/companion is installed with npm on first use) and MiniStack
(installed into .cache/ministack-venv on first use).

Usage: .venv/bin/python bench/uppy_params.py [--duration 10] [--rounds 3] [--connections 32]
       [--workers 3] [--threads 2] [--users 100] [--database-url URL]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from s3drive.dev import ministack as dev_s3  # noqa: E402

COMPANION_DIR = REPO / "bench" / "companion"
VENV_BIN = Path(sys.executable).parent
BUCKET = "bench-uppy"
PASSWORD = "correct horse battery"
PARTS = 100
MIB = 1024**2
PARAMS_QUERY = "filename=IMG_0001.jpg&type=image%2Fjpeg"
TARGETS = {"params": 2.0, "batch": 10.0}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per measurement")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections (closed loop)")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=2, help="gunicorn threads per worker")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per comparison")
    parser.add_argument("--users", type=int, default=100, help="accounts the s3drive requests rotate over")
    parser.add_argument("--database-url", default=None, help="default: a SQLite file in a temporary directory")
    return parser.parse_args()


# -- servers --------------------------------------------------------------------------------


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
def process(args: list[str], *, env: dict, log: Path, cwd: Path, ready_url: str):
    """Run a server process in its own group until the block ends."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(ready_url, proc, log)
        yield proc
    finally:
        dev_s3.stop_process(proc)


@contextmanager
def ministack(tmp: Path):
    """Run MiniStack (AUTH=true) with the bench bucket; yield its URL."""
    executable = dev_s3.ensure_ministack(REPO / ".cache" / "ministack-venv")
    port = dev_s3.free_port()
    proc = dev_s3.start_ministack(
        port=port, data_dir=tmp / "ministack", persist=False, log_path=tmp / "ministack.log", executable=executable
    )
    url = dev_s3.endpoint_url(port)
    try:
        dev_s3.wait_ready(url, proc=proc)
        dev_s3.ensure_bucket(url, BUCKET, cors_origins=[])
        yield url
    finally:
        dev_s3.stop_process(proc)


def s3drive_env(tmp: Path, s3_url: str, database_url: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("S3DRIVE_")}
    env.update(
        AWS_ACCESS_KEY_ID=dev_s3.ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=dev_s3.SECRET_KEY,
        AWS_DEFAULT_REGION=dev_s3.REGION,
        S3DRIVE_DATABASE_URL=database_url or f"sqlite:///{tmp}/bench.sqlite3",
        S3DRIVE_S3_BUCKET=BUCKET,
        S3DRIVE_S3_ENDPOINT_URL=s3_url,
        S3DRIVE_S3_ADDRESSING_STYLE="path",
        S3DRIVE_JWT_SECRET_KEY=secrets.token_urlsafe(48),
        S3DRIVE_LOGIN_RATE_LIMIT="100000 per minute",
        S3DRIVE_DEFAULT_QUOTA_BYTES=str(10**15),
    )
    return env


@dataclass
class Gunicorn:
    """The s3drive server: its URL, and a way to replace its workers."""

    url: str
    proc: subprocess.Popen
    workers: int

    def worker_pids(self) -> set[int]:
        pids = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid:
                pids.add(int(stat.parent.name))
        return pids

    def fresh(self) -> None:
        """Replace every worker (SIGHUP) and wait until only the new ones run: their watchers start empty."""
        old = self.worker_pids()
        os.kill(self.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = self.worker_pids()
            if len(now) == self.workers and not now & old:
                break
            time.sleep(0.1)
        else:
            sys.exit("gunicorn did not replace its workers within 60 s")
        for _ in range(self.workers * 4):  # every new worker has imported the app and answers
            requests.get(self.url + "/healthz", timeout=30).raise_for_status()


@contextmanager
def s3drive(tmp: Path, s3_url: str, args: argparse.Namespace):
    """Migrate the database and serve s3drive with gunicorn; yield it."""
    env = s3drive_env(tmp, s3_url, args.database_url)
    migrated = subprocess.run(
        [str(VENV_BIN / "flask"), "--app", "wsgi", "db", "upgrade"], env=env, cwd=REPO, capture_output=True, text=True
    )
    if migrated.returncode:
        sys.exit(f"flask db upgrade failed:\n{migrated.stdout}{migrated.stderr}")
    port = dev_s3.free_port()
    command = [
        str(VENV_BIN / "gunicorn"),
        f"--workers={args.workers}",
        f"--threads={args.threads}",
        f"--bind=127.0.0.1:{port}",
        "--log-level=warning",
        "wsgi:app",
    ]
    url = f"http://127.0.0.1:{port}"
    with process(command, env=env, log=tmp / "gunicorn.log", cwd=REPO, ready_url=url + "/healthz") as proc:
        yield Gunicorn(url, proc, args.workers)


def install_companion() -> Path:
    """Install bench/companion's pinned @uppy/companion with npm on first use; return its start script."""
    script = COMPANION_DIR / "node_modules" / "@uppy" / "companion" / "bin" / "companion"
    if not script.exists():
        npm = shutil.which("npm") or sys.exit("npm is needed for the Companion baseline (apt-get install npm)")
        command = "ci" if (COMPANION_DIR / "package-lock.json").exists() else "install"
        subprocess.run([npm, command, "--no-audit", "--no-fund"], cwd=COMPANION_DIR, check=True)
    return script


@contextmanager
def companion(tmp: Path, s3_url: str):
    """Serve Uppy Companion's S3 routes against the same MiniStack; yield its URL."""
    script = install_companion()
    port = dev_s3.free_port()
    (tmp / "companion-data").mkdir()
    env = {
        **os.environ,
        "NODE_ENV": "production",
        "COMPANION_PORT": str(port),
        "COMPANION_DOMAIN": f"127.0.0.1:{port}",
        "COMPANION_PROTOCOL": "http",
        "COMPANION_DATADIR": str(tmp / "companion-data"),
        "COMPANION_SECRET": secrets.token_urlsafe(32),
        "COMPANION_CLIENT_ORIGINS": "true",
        "COMPANION_PREAUTH_SECRET": secrets.token_urlsafe(32),
        # Required by Companion's config check; only its remote-URL uploads use it.
        "COMPANION_UPLOAD_URLS": "http://127.0.0.1/",
        "COMPANION_AWS_KEY": dev_s3.ACCESS_KEY,
        "COMPANION_AWS_SECRET": dev_s3.SECRET_KEY,
        "COMPANION_AWS_BUCKET": BUCKET,
        "COMPANION_AWS_REGION": dev_s3.REGION,
        "COMPANION_AWS_ENDPOINT": s3_url,
        "COMPANION_AWS_FORCE_PATH_STYLE": "true",
    }
    node = shutil.which("node") or sys.exit("node is needed for the Companion baseline")
    url = f"http://127.0.0.1:{port}"
    with process([node, str(script)], env=env, log=tmp / "companion.log", cwd=COMPANION_DIR, ready_url=url):
        yield url


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


def lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


def lua_items(items: list[dict]) -> str:
    """Render request descriptions as a Lua table literal."""
    rendered = []
    for item in items:
        headers = ", ".join(f"[ {lua_string(k)} ] = {lua_string(v)}" for k, v in item.get("headers", {}).items())
        body = lua_string(item["body"]) if item.get("body") else "nil"
        rendered.append(
            f"{{method = {lua_string(item['method'])}, path = {lua_string(item['path'])},"
            f" headers = {{{headers}}}, body = {body}}}"
        )
    return "{" + ",\n".join(rendered) + "}"


def run_wrk(
    base_url: str, items: list[dict], args: argparse.Namespace, tmp: Path, duration: int | None = None
) -> float:
    """Drive base_url with the requests in rotation for a fixed time; return requests/s (all must be 2xx)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return python_load(base_url, items, args.connections, duration or args.duration)
    script = tmp / f"load-{time.monotonic_ns()}.lua"
    script.write_text(LUA_ROTATE % lua_items(items))
    command = [
        wrk,
        "--threads=1",
        f"--connections={args.connections}",
        f"--duration={duration or args.duration}s",
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
            first["method"], base_url + first["path"], headers=first.get("headers"), data=first.get("body"), timeout=30
        )
        sys.exit(
            f"load run had failures against {base_url}{first['path']}:\n{output}\n"
            f"one such request now answers {sample.status_code}: {sample.text[:500]}"
        )
    return float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))


def python_load(base_url: str, items: list[dict], connections: int, duration: float) -> float:
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
                    item["method"], base_url + item["path"], headers=item.get("headers"), data=item.get("body")
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


def measure_rounds(
    title: str,
    contenders: list[tuple[str, str, str, list[dict]]],
    args: argparse.Namespace,
    tmp: Path,
    server: Gunicorn,
) -> dict[str, list[float]]:
    """Measure each (key, label, url, requests) in turn, round after round; return key -> req/s per round.

    Interleaved rounds share whatever else the machine is doing, so per-round ratios stay fair.
    s3drive's workers are replaced before each run, then warmed up if the run is s3drive's.
    """
    print(title, flush=True)
    for _, _, url, items in contenders:
        run_wrk(url, items, args, tmp, duration=2)  # warm-up: connections, caches, JIT
    rates: dict[str, list[float]] = {key: [] for key, *_ in contenders}
    for round_number in range(1, args.rounds + 1):
        for key, label, url, items in contenders:
            server.fresh()
            if url == server.url:
                run_wrk(url, items, args, tmp, duration=2)
            rate = run_wrk(url, items, args, tmp)
            rates[key].append(rate)
            print(f"  round {round_number}  {label:<52} {rate:10,.0f} req/s", flush=True)
    return rates


# -- scenarios ------------------------------------------------------------------------------


def login(api: str, username: str) -> str:
    """Register and log in; return the access token."""
    requests.post(f"{api}/api/auth/register", json={"username": username, "password": PASSWORD}, timeout=30)
    response = requests.post(f"{api}/api/auth/login", json={"username": username, "password": PASSWORD}, timeout=30)
    response.raise_for_status()
    return response.json()["access_token"]


def s3drive_accounts(api: str, count: int) -> list[dict]:
    """Return {token, session} for `count` users (session: the /uppy/<token> path prefix)."""
    accounts = []
    for index in range(count):
        token = login(api, f"bench{index:04d}")
        headers = {"Authorization": f"Bearer {token}"}
        endpoint = requests.post(f"{api}/api/uppy/session", headers=headers, timeout=30).json()["companion_endpoint"]
        accounts.append({"headers": headers, "session": endpoint.removeprefix(api)})
    return accounts


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-uppy-") as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        s3_url = stack.enter_context(ministack(tmp))
        server = stack.enter_context(s3drive(tmp, s3_url, args))
        api = server.url
        companion_url = stack.enter_context(companion(tmp, s3_url))
        print(
            f"s3drive: gunicorn {args.workers} workers x {args.threads} threads, "
            f"{'SQLite' if not args.database_url else args.database_url}; Companion 6.2.2 (one Node.js process); "
            f"{'wrk, 1 thread' if shutil.which('wrk') else 'Python threads'} x {args.connections} connections, "
            f"{args.duration} s a run; {args.users} users",
            flush=True,
        )
        accounts = s3drive_accounts(api, args.users)

        rates = measure_rounds(
            "params: GET /s3/params (a POST form per request)",
            [
                (
                    "companion_params",
                    "Companion /s3/params",
                    companion_url,
                    [{"method": "GET", "path": f"/s3/params?{PARAMS_QUERY}"}],
                ),
                (
                    "params",
                    "s3drive /uppy/s3/params (Bearer header)",
                    api,
                    [
                        {"method": "GET", "path": f"/uppy/s3/params?{PARAMS_QUERY}", "headers": a["headers"]}
                        for a in accounts
                    ],
                ),
                (
                    "params_session",
                    "s3drive /uppy/<token>/s3/params (session token)",
                    api,
                    [{"method": "GET", "path": f"{a['session']}/s3/params?{PARAMS_QUERY}"} for a in accounts],
                ),
            ],
            args,
            tmp,
            server,
        )
        rates |= measure_rounds(
            f"batch part signing: {PARTS} part numbers a request",
            [
                (
                    "companion_batch",
                    "Companion /s3/multipart/<id>/batch",
                    companion_url,
                    companion_batch(companion_url),
                ),
                ("batch_native", "s3drive POST /api/files/multipart/<id>/sign", api, native_sign(api, accounts)),
                ("batch_uppy", "s3drive /uppy/s3/multipart/<id>/batch", api, uppy_batch(api, accounts)),
            ],
            args,
            tmp,
            server,
        )
    report(rates)


def batch_path(prefix: str, upload: dict) -> str:
    numbers = ",".join(map(str, range(1, PARTS + 1)))
    return f"{prefix}/s3/multipart/{quote(upload['uploadId'])}/batch?key={quote(upload['key'])}&partNumbers={numbers}"


def companion_batch(url: str) -> list[dict]:
    """Start one multipart upload on Companion; return its batch-signing request."""
    body = {"filename": "movie.mp4", "type": "video/mp4", "metadata": {}}
    upload = requests.post(f"{url}/s3/multipart", json=body, timeout=30).json()
    return [{"method": "GET", "path": batch_path("", upload)}]


def native_sign(api: str, accounts: list[dict]) -> list[dict]:
    """Start a 100-part upload per account (up to 20) on the native API; return their sign requests."""
    spec = {"file_name": "movie.mp4", "content_type": "video/mp4", "file_size": PARTS * 5 * MIB, "part_size": 5 * MIB}
    items = []
    for account in accounts[:20]:
        upload = requests.post(f"{api}/api/files/multipart/", json=spec, headers=account["headers"], timeout=30).json()
        body = json.dumps({"part_numbers": list(range(1, PARTS + 1))})
        path = f"/api/files/multipart/{upload['id']}/sign"
        items.append({"method": "POST", "path": path, "headers": account["headers"], "body": body})
    return items


def uppy_batch(api: str, accounts: list[dict]) -> list[dict]:
    """Start an upload per account (up to 20) through /uppy; return their batch-signing requests."""
    body = {"filename": "movie.mp4", "type": "video/mp4", "metadata": {}}
    items = []
    for account in accounts[:20]:
        upload = requests.post(f"{api}/uppy/s3/multipart", json=body, headers=account["headers"], timeout=30).json()
        items.append({"method": "GET", "path": batch_path("/uppy", upload), "headers": account["headers"]})
    return items


def report(rates: dict[str, list[float]]) -> None:
    """Print the median rates and the median of the per-round ratios against Companion."""
    print("\nresults: medians over the rounds; ratio = median of the per-round s3drive / Companion")
    rows = [
        ("params, Bearer header", "params", "companion_params", "params", 1),
        ("params, session token", "params_session", "companion_params", "params", 1),
        ("batch signing, native /sign", "batch_native", "companion_batch", "batch", PARTS),
        ("batch signing, /uppy batch", "batch_uppy", "companion_batch", "batch", PARTS),
    ]
    for name, ours, theirs, target, per_request in rows:
        ratio = statistics.median(a / b for a, b in zip(rates[ours], rates[theirs], strict=True))
        unit = "signed URLs/s" if per_request > 1 else "req/s"
        verdict = "meets" if ratio >= TARGETS[target] else "BELOW"
        print(
            f"  {name:<28} s3drive {statistics.median(rates[ours]) * per_request:>9,.0f} {unit:<13}"
            f" Companion {statistics.median(rates[theirs]) * per_request:>8,.0f}"
            f"  ratio {ratio:5.1f}x (target {TARGETS[target]:.0f}x: {verdict})"
        )


if __name__ == "__main__":
    main()
