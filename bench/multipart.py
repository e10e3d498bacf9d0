"""Benchmark: a large file through the broker's multipart flow vs boto3's upload_file, same S3, same run.

- s3drive: the broker runs under gunicorn (one gthread worker) in its own process. The client
  creates the upload, signs every part in one call, PUTs the parts straight to S3 from a pool
  of threads (one requests.Session each), and completes: the broker never sees a file byte.
- baseline: boto3's upload_file with a TransferConfig of the same part size and concurrency,
  straight to the same S3, once stock (over plain HTTP botocore SHA-256s every part for its
  signature) and once with UNSIGNED-PAYLOAD like the presigned URLs (the stricter baseline).
- S3: MiniStack with AUTH=true (signatures and signed Content-Length enforced), or moto server.

It prints throughput per method and size, the ratio s3drive / boto3 (target >= 0.9), the
broker requests an upload costs, and the broker worker's memory (VmRSS, VmHWM from
/proc/<pid>/status) when idle and after each size: it must not grow with the file size.

Usage: .venv/bin/python bench/multipart.py [--size 256MiB,1GiB] [--part-size 16MiB]
                                           [--concurrency 8] [--rounds 2] [--s3 ministack|moto]
"""

from __future__ import annotations

import argparse
import contextlib
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
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1")
os.environ.pop("AWS_SESSION_TOKEN", None)
os.environ.pop("AWS_PROFILE", None)

import botocore.auth  # noqa: E402
import requests  # noqa: E402
from boto3.s3.transfer import TransferConfig  # noqa: E402

from s3drive.dev import ministack  # noqa: E402

BUCKET = "bench-multipart"
MINISTACK_VENV = Path(os.environ.get("S3DRIVE_MINISTACK_VENV", ROOT / ".cache" / "ministack-venv"))
UNITS = {"": 1, "b": 1, "k": 1024, "kib": 1024, "m": 1024**2, "mib": 1024**2, "g": 1024**3, "gib": 1024**3}


def parse_size(text: str) -> int:
    """Parse '256MiB', '1G', '1048576' into bytes."""
    match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}")
    return int(match.group(1)) * UNITS[match.group(2).lower()]


def human(size: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} B"


# -- processes -------------------------------------------------------------------------------


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=2):
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


@contextlib.contextmanager
def s3_server(kind: str, tmp: Path) -> Iterator[str]:
    """Run MiniStack (AUTH=true) or moto server in its own process; yield its URL."""
    port = ministack.free_port()
    log = open(tmp / f"{kind}.log", "ab")  # the child keeps its own copy
    if kind == "ministack":
        executable = ministack.ensure_ministack(MINISTACK_VENV)
        proc = ministack.start_ministack(
            port=port, data_dir=tmp / "ministack", persist=False, log_path=tmp / "ministack.log", executable=executable
        )
    else:
        moto = Path(sys.executable).with_name("moto_server")
        proc = subprocess.Popen(
            [str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log, start_new_session=True
        )
    log.close()
    url = ministack.endpoint_url(port)
    try:
        if kind == "ministack":
            ministack.wait_ready(url, proc=proc)
        else:
            wait_http(url + "/moto-api/", proc)
        ministack.ensure_bucket(url, BUCKET, cors_origins=[])
        yield url
    finally:
        ministack.stop_process(proc)


def migrate(database_url: str) -> None:
    """Create the broker's schema with the Alembic migrations."""
    from flask_migrate import upgrade  # only the parent process needs Flask

    from s3drive import create_app

    app = create_app({"TESTING": True, "DATABASE_URL": database_url, "S3_BUCKET": BUCKET})
    with app.app_context():
        upgrade()


@contextlib.contextmanager
def broker(s3_url: str, database_url: str, tmp: Path, threads: int) -> Iterator[tuple[str, int]]:
    """Run the broker under gunicorn (one gthread worker); yield its URL and the worker's pid."""
    port = ministack.free_port()
    env = {
        **os.environ,
        "S3DRIVE_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "S3DRIVE_DATABASE_URL": database_url,
        "S3DRIVE_S3_BUCKET": BUCKET,
        "S3DRIVE_S3_ENDPOINT_URL": s3_url,
        "S3DRIVE_S3_ADDRESSING_STYLE": "path",
        "S3DRIVE_JWT_SECRET_KEY": secrets.token_urlsafe(48),
        "S3DRIVE_MAX_FILE_SIZE": str(5 * 1024**4),
        "S3DRIVE_DEFAULT_QUOTA_BYTES": str(100 * 1024**4),
        "S3DRIVE_LOGIN_RATE_LIMIT": "1000 per minute",
    }
    gunicorn = Path(sys.executable).with_name("gunicorn")
    command = [str(gunicorn), "wsgi:app", "--bind", f"127.0.0.1:{port}", "--workers", "1"]
    command += ["--worker-class", "gthread", "--threads", str(threads), "--log-level", "warning"]
    with open(tmp / "gunicorn.log", "ab") as log:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/healthz", proc)
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert len(children) == 1, f"expected one gunicorn worker, found {children}"
        yield url, int(children[0])
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def memory_kib(pid: int) -> dict[str, int]:
    """Return VmRSS and VmHWM (peak RSS) of a process, in KiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0])
    return values


def cpu_seconds(pid: int) -> float:
    """Return the user + system CPU time a process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the two ways to upload ------------------------------------------------------------------


class BrokerClient:
    """A logged-in client of the broker that counts its requests."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.session = requests.Session()
        self.requests = 0
        user = {"username": f"bench{secrets.token_hex(4)}", "password": "bench-password"}
        self.call("POST", "/api/auth/register", json=user)
        token = self.call("POST", "/api/auth/login", json=user)["access_token"]
        self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, **kwargs) -> dict:
        self.requests += 1
        response = self.session.request(method, self.base_url + path, timeout=120, **kwargs)
        if response.status_code >= 300:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response.json()


def upload_through_broker(api: BrokerClient, path: Path, size: int, part_size: int, workers: int) -> tuple[str, int]:
    """Upload a file with the multipart routes and parallel part PUTs; return (key, broker requests)."""
    before = api.requests
    spec = {"file_name": path.name, "content_type": "application/octet-stream", "file_size": size}
    upload = api.call("POST", "/api/files/multipart/", json={**spec, "part_size": part_size})
    numbers = list(range(1, upload["part_count"] + 1))
    parts = []
    for start in range(0, len(numbers), 1000):
        signed = api.call(
            "POST", f"/api/files/multipart/{upload['id']}/sign", json={"part_numbers": numbers[start : start + 1000]}
        )
        parts.extend(signed["parts"])
    local = threading.local()
    fd = os.open(path, os.O_RDONLY)

    def put(part: dict) -> dict:
        session = getattr(local, "session", None) or setattr(local, "session", requests.Session()) or local.session
        body = os.pread(fd, part["size"], (part["part_number"] - 1) * upload["part_size"])
        response = session.put(part["url"], data=body, headers=part["headers"], timeout=300)
        if response.status_code != 200:
            raise RuntimeError(f"part {part['part_number']}: {response.status_code} {response.text[:300]}")
        return {"part_number": part["part_number"], "etag": response.headers["ETag"]}

    try:
        with ThreadPoolExecutor(workers) as pool:
            etags = list(pool.map(put, parts))
    finally:
        os.close(fd)
    done = api.call("POST", f"/api/files/multipart/{upload['id']}/complete", json={"parts": etags})
    assert done["status"] == "complete" and done["size"] == size, done
    return done["s3_key"], api.requests - before


@contextlib.contextmanager
def unsigned_payload() -> Iterator[None]:
    """Make botocore send UNSIGNED-PAYLOAD over plain HTTP too, as the presigned part URLs do."""
    original = botocore.auth.S3SigV4Auth._should_sha256_sign_payload
    botocore.auth.S3SigV4Auth._should_sha256_sign_payload = lambda self, request: False
    try:
        yield
    finally:
        botocore.auth.S3SigV4Auth._should_sha256_sign_payload = original


def upload_with_boto3(s3, path: Path, key: str, part_size: int, workers: int, *, signed_payload: bool) -> str:
    """Upload a file with boto3's managed transfer (same part size and concurrency)."""
    config = TransferConfig(
        multipart_threshold=part_size,
        multipart_chunksize=part_size,
        max_concurrency=workers,
        use_threads=True,
        preferred_transfer_client="classic",
    )
    with contextlib.nullcontext() if signed_payload else unsigned_payload():
        s3.upload_file(str(path), BUCKET, key, Config=config)
    return key


# -- the run ---------------------------------------------------------------------------------


def make_file(directory: Path, size: int) -> Path:
    """Write `size` random bytes (random, so no layer can compress or deduplicate them)."""
    path = directory / f"payload-{size}.bin"
    chunk = 16 * 1024**2
    with open(path, "wb") as out:
        for start in range(0, size, chunk):
            out.write(os.urandom(min(chunk, size - start)))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="256MiB,1GiB", help="comma list of file sizes (default 256MiB,1GiB)")
    parser.add_argument("--part-size", type=parse_size, default=16 * 1024**2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--s3", choices=("ministack", "moto"), default="ministack")
    args = parser.parse_args()
    sizes = [parse_size(item) for item in args.size.split(",") if item.strip()]

    tmp = Path(tempfile.mkdtemp(prefix="bench-multipart-"))
    try:
        database_url = f"sqlite:///{tmp}/bench.sqlite3"
        migrate(database_url)
        with s3_server(args.s3, tmp) as s3_url, broker(s3_url, database_url, tmp, args.concurrency) as (url, pid):
            run(args, sizes, tmp, s3_url, url, pid)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args, sizes: list[int], tmp: Path, s3_url: str, broker_url: str, pid: int) -> None:
    s3 = ministack.s3_client(s3_url)  # CRC32 trailers off: both sides send the bare bytes
    api = BrokerClient(broker_url)
    cold = memory_kib(pid)
    # Warm up both paths once (imports, the broker's boto3 client and pools, connections).
    warm = make_file(tmp, 2 * args.part_size + 1)
    s3.delete_object(Bucket=BUCKET, Key=upload_through_broker(api, warm, warm.stat().st_size, args.part_size, 2)[0])
    upload_with_boto3(s3, warm, "warm", args.part_size, 2, signed_payload=True)
    s3.delete_object(Bucket=BUCKET, Key="warm")
    idle = memory_kib(pid)

    methods = {
        "s3drive": None,
        "boto3 upload_file (stock)": True,
        "boto3 upload_file (unsigned payload)": False,
    }
    print(f"S3: {args.s3} at {s3_url} | part size {human(args.part_size)} | {args.concurrency} parallel parts")
    print(f"broker worker (gunicorn gthread, pid {pid}): cold VmRSS {cold['VmRSS'] / 1024:.1f} MiB")
    print(
        f"broker worker idle after warm-up: VmRSS {idle['VmRSS'] / 1024:.1f} MiB, VmHWM {idle['VmHWM'] / 1024:.1f} MiB"
    )
    for size in sizes:
        path = make_file(tmp, size)
        seconds: dict[str, list[float]] = {name: [] for name in methods}
        broker_requests: set[int] = set()
        broker_cpu: list[float] = []
        etags = set()
        for round_number in range(args.rounds):
            order = list(methods) if round_number % 2 == 0 else list(reversed(methods))
            for name in order:
                start, cpu = time.perf_counter(), cpu_seconds(pid)
                if methods[name] is None:
                    key, count = upload_through_broker(api, path, size, args.part_size, args.concurrency)
                    broker_requests.add(count)
                else:
                    key = f"boto3-{size}-{round_number}"
                    upload_with_boto3(s3, path, key, args.part_size, args.concurrency, signed_payload=methods[name])
                seconds[name].append(time.perf_counter() - start)
                if methods[name] is None:
                    broker_cpu.append(cpu_seconds(pid) - cpu)
                head = s3.head_object(Bucket=BUCKET, Key=key)
                assert head["ContentLength"] == size, (name, head["ContentLength"])
                etags.add(head["ETag"])
                s3.delete_object(Bucket=BUCKET, Key=key)  # keep the emulator's memory flat
        # Same bytes in the same part boundaries give the same multipart ETag on every path.
        assert len(etags) == 1, etags
        memory = memory_kib(pid)
        print(f"\nfile {human(size)} ({-(-size // args.part_size)} parts), mean of {args.rounds} rounds:")
        rates = {name: size / statistics.mean(values) / 1024**2 for name, values in seconds.items()}
        for name, rate in rates.items():
            print(f"  {name:38s} {rate:8.1f} MiB/s   ({statistics.mean(seconds[name]):6.2f} s)")
        stock, unsigned = (rates[name] for name in list(methods)[1:])
        print(f"  ratio s3drive / boto3 stock:            {rates['s3drive'] / stock:8.2f}  (target >= 0.9)")
        print(f"  ratio s3drive / boto3 unsigned payload: {rates['s3drive'] / unsigned:8.2f}  (target >= 0.9)")
        print(f"  broker requests per upload:             {max(broker_requests):8d}  (create, sign, complete)")
        print(f"  broker CPU time per upload:             {statistics.mean(broker_cpu) * 1e3:8.0f} ms")
        print(
            f"  broker worker after it: VmRSS {memory['VmRSS'] / 1024:.1f} MiB, VmHWM {memory['VmHWM'] / 1024:.1f} MiB"
            f" (idle HWM {idle['VmHWM'] / 1024:.1f} MiB, growth {(memory['VmHWM'] - idle['VmHWM']) / 1024:+.1f} MiB)"
        )
        path.unlink()


if __name__ == "__main__":
    main()
