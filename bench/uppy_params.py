"""Benchmark: s3drive's Companion-compatible routes vs Uppy Companion itself, over HTTP on loopback.

Both servers sign for the same S3 emulator (MiniStack, bucket and key test/test) in the same
run, and one closed-loop load generator (wrk, fixed duration and connection count) drives
each in turn, round after round (ABAB), so a noisy neighbour slows both alike:

  - params:  GET /s3/params?filename=&type=  (a POST form per request, as stock Uppy asks: no size)
      s3drive: /uppy/s3/params with a Bearer header, and /uppy/<token>/s3/params (session
               token); each request authenticates, checks policy, checks the quota and writes the
               record in one statement (the record schedules the upload watcher's first look; the
               watcher runs in the task-queue worker, which this bench does not start).
      Companion: /s3/params (it checks nothing and records nothing).
  - batch part signing, 100 part numbers a request (signed URLs/s = requests/s x 100):
      Companion: GET /s3/multipart/<id>/batch?key=&partNumbers=1,...,100
      s3drive:   POST /api/files/multipart/<id>/sign {"part_numbers": [1..100]} (native), and
                 GET /uppy/s3/multipart/<id>/batch (the Companion-compatible route).

s3drive runs as the Procfile runs it (gunicorn wsgi:app with gunicorn.conf.py) on PostgreSQL (a
database of its own, dropped afterwards) with Redis as the task broker; Companion runs as its
standalone server (one Node.js process, as shipped). Requests rotate over --users accounts, as
on a server many people use at once.

Uses wrk (apt-get install wrk) when present, else a slower closed loop of Python threads.
Needs Node.js/npm (bench/companion is installed with npm on first use) and MiniStack
(installed into .cache/ministack-venv on first use).

Usage: .venv/bin/python bench/uppy_params.py [--duration 10] [--rounds 3] [--connections 32]
       [--users 100] [--postgres URL | --sqlite] [--workers N] [--threads N] [--only params|batch]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import quote

import requests

# At the end: bench/inspect.py must not shadow the standard library's inspect.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _stack import (
    POSTGRES_SERVER,
    REPO,
    Settings,
    describe,
    dev_s3,
    gunicorn,
    load_average,
    load_tool,
    ministack,
    own_database,
    process,
    run_load,
)

COMPANION_DIR = REPO / "bench" / "companion"
BUCKET = "bench-uppy"
PASSWORD = "correct horse battery"
PARTS = 100
MIB = 1024**2
PARAMS_QUERY = "filename=IMG_0001.jpg&type=image%2Fjpeg"
TARGETS = {"params": 1.5, "batch": 10.0}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per measurement")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections (closed loop)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per comparison")
    parser.add_argument("--users", type=int, default=100, help="accounts the s3drive requests rotate over")
    parser.add_argument("--postgres", default=POSTGRES_SERVER, help="PostgreSQL server to create the run's database on")
    parser.add_argument("--sqlite", action="store_true", help="serve s3drive from a SQLite file instead")
    parser.add_argument("--workers", type=int, default=None, help="gunicorn workers (default: gunicorn.conf.py)")
    parser.add_argument("--threads", type=int, default=None, help="gunicorn threads (default: gunicorn.conf.py)")
    parser.add_argument("--only", choices=["params", "batch"], default=None, help="run one comparison only")
    return parser.parse_args()


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


def measure_rounds(
    title: str, contenders: list[tuple[str, str, str, list[dict]]], args: argparse.Namespace, tmp: Path
) -> dict[str, list[float]]:
    """Measure each (key, label, url, requests) in turn, round after round; return key -> req/s per round.

    Interleaved rounds share whatever else the machine is doing, so per-round ratios stay fair.
    """
    print(title, flush=True)
    for _, _, url, items in contenders:
        run_load(url, items, args.connections, 2, tmp)  # warm-up: connections, caches, JIT
    rates: dict[str, list[float]] = {key: [] for key, *_ in contenders}
    for round_number in range(1, args.rounds + 1):
        for key, label, url, items in contenders:
            rate = run_load(url, items, args.connections, args.duration, tmp)
            rates[key].append(rate)
            print(f"  round {round_number}  {label:<52} {rate:10,.0f} req/s   load {load_average()}", flush=True)
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
        s3_url = stack.enter_context(ministack(tmp, BUCKET))
        database_url = stack.enter_context(own_database(None if args.sqlite else args.postgres))
        settings = Settings(BUCKET, s3_url, database_url, workers=args.workers, threads=args.threads)
        api = stack.enter_context(gunicorn(tmp, settings))
        companion_url = stack.enter_context(companion(tmp, s3_url))
        print(
            f"s3drive: {describe(settings)}; Companion 6.2.2 (one Node.js process); "
            f"{load_tool()} x {args.connections} connections, {args.duration} s a run; {args.users} users; "
            f"{os.cpu_count()} CPUs, load average {load_average()}",
            flush=True,
        )
        accounts = s3drive_accounts(api, args.users)
        rates: dict[str, list[float]] = {}
        if args.only in (None, "params"):
            rates |= measure_rounds(
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
            )
        if args.only in (None, "batch"):
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
        if ours not in rates:
            continue
        ratio = statistics.median(a / b for a, b in zip(rates[ours], rates[theirs], strict=True))
        unit = "signed URLs/s" if per_request > 1 else "req/s"
        verdict = "meets" if ratio >= TARGETS[target] else "BELOW"
        print(
            f"  {name:<28} s3drive {statistics.median(rates[ours]) * per_request:>9,.0f} {unit:<13}"
            f" Companion {statistics.median(rates[theirs]) * per_request:>8,.0f}"
            f"  ratio {ratio:5.1f}x (target {TARGETS[target]:.1f}x: {verdict})"
        )


if __name__ == "__main__":
    main()
