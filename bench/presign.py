"""Benchmark: a 1,000-file presign batch through HTTP (a real gunicorn) vs naive boto3 signing.

Both are timed in the same run, rounds interleaved, so the ratio holds on a noisy machine:
  - s3drive: POST /api/files/upload/ with 1,000 FileSpecs to s3drive served as the Procfile serves
    it (gunicorn wsgi:app, gunicorn.conf.py) on PostgreSQL (a database of its own) with MiniStack
    as S3: auth, validation, quota, one bulk insert, signing, JSON, the HTTP round trip. Timed from
    sending the request to the last byte of the answer (keep-alive connection; the answer is
    parsed and checked after the clock stops);
  - naive:   the same 1,000 PUT URLs from boto3's generate_presigned_url on a ThreadPoolExecutor
    of 10, one URL per task (signing only, no HTTP, no database) in this process.

Usage: .venv/bin/python bench/presign.py [--rounds 25] [--files 1000] [--postgres URL | --sqlite]
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

import boto3
from _stack import POSTGRES_SERVER, Settings, describe, gunicorn, load_average, ministack, own_database
from botocore.config import Config

from s3drive.dev import ministack as dev_s3

BUCKET = "bench-presign"
PASSWORD = "bench-password"
TARGET_MS, TARGET_RATIO = 30.0, 8.0


def file_specs(count: int) -> list[dict]:
    return [
        {"file_name": f"IMG_{i:05d}.jpg", "content_type": "image/jpeg", "file_size": 1_000_000 + i, "tags": "bench"}
        for i in range(count)
    ]


class Api:
    """One keep-alive HTTP connection to s3drive."""

    def __init__(self, base_url: str):
        self.connection = http.client.HTTPConnection(urlsplit(base_url).netloc, timeout=60)
        self.headers = {"Content-Type": "application/json"}

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        self.connection.request(method, path, body=body, headers=self.headers)
        response = self.connection.getresponse()
        return response.status, response.read()

    def login(self) -> None:
        user = json.dumps({"username": f"bench{int(time.time())}", "password": PASSWORD}).encode()
        self.call("POST", "/api/auth/register", user)
        status, answer = self.call("POST", "/api/auth/login", user)
        assert status == 200, answer
        self.headers["Authorization"] = f"Bearer {json.loads(answer)['access_token']}"

    def time_batch(self, body: bytes, count: int) -> float:
        """POST the batch; return the seconds to the last byte (the answer is checked afterwards)."""
        start = time.perf_counter()
        status, answer = self.call("POST", "/api/files/upload/", body)
        elapsed = time.perf_counter() - start
        assert status == 200, answer[:500]
        assert json.loads(answer)["total_successful"] == count
        return elapsed


def make_naive_signer(specs: list[dict], s3_url: str):
    """Return a function that signs the batch's URLs the naive way, and one that closes its pool."""
    client = boto3.client(
        "s3",
        region_name=dev_s3.REGION,
        endpoint_url=s3_url,
        aws_access_key_id=dev_s3.ACCESS_KEY,
        aws_secret_access_key=dev_s3.SECRET_KEY,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )

    def sign(index_spec):
        index, spec = index_spec
        return client.generate_presigned_url(
            "put_object",
            Params={
                "Bucket": BUCKET,
                "Key": f"users/u/batch/{index}/{spec['file_name']}",
                "ContentType": spec["content_type"],
                "ContentLength": spec["file_size"],
                "Metadata": {"file-id": str(index)},
            },
            ExpiresIn=3600,
        )

    pool = ThreadPoolExecutor(10)

    def run() -> float:
        start = time.perf_counter()
        urls = list(pool.map(sign, enumerate(specs)))
        elapsed = time.perf_counter() - start
        assert len(urls) == len(specs)
        return elapsed

    return run, pool.shutdown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--postgres", default=POSTGRES_SERVER, help="PostgreSQL server to create the run's database on")
    parser.add_argument("--sqlite", action="store_true", help="serve s3drive from a SQLite file instead")
    args = parser.parse_args()

    specs = file_specs(args.files)
    body = json.dumps({"files": specs}).encode()
    with tempfile.TemporaryDirectory(prefix="bench-presign-") as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        s3_url = stack.enter_context(ministack(tmp, BUCKET))
        database_url = stack.enter_context(own_database(None if args.sqlite else args.postgres))
        settings = Settings(BUCKET, s3_url, database_url)
        api = Api(stack.enter_context(gunicorn(tmp, settings)))
        api.login()
        naive_run, naive_close = make_naive_signer(specs, s3_url)
        stack.callback(naive_close)
        print(f"s3drive: {describe(settings)}; {os.cpu_count()} CPUs, load average {load_average()}", flush=True)
        for _ in range(3):  # warm-up: imports, caches, the database's pages
            api.time_batch(body, args.files)
            naive_run()
        ours, naive = [], []
        for _ in range(args.rounds):
            gc.collect()  # neither side pays for the other's garbage
            ours.append(api.time_batch(body, args.files))
            gc.collect()
            naive.append(naive_run())
        load = load_average()

    ours_ms, naive_ms = statistics.median(ours) * 1e3, statistics.median(naive) * 1e3
    ratios = [b / a for a, b in zip(ours, naive, strict=True)]
    print(f"files per batch:                               {args.files}")
    print(
        f"s3drive over HTTP, whole request (median of {args.rounds}): {ours_ms:8.1f} ms"
        f"   (target <= {TARGET_MS:.0f} ms: {'meets' if ours_ms <= TARGET_MS else 'BELOW'})"
    )
    print(f"naive boto3 signing only, 10 threads:          {naive_ms:8.1f} ms")
    ratio = statistics.median(ratios)
    print(
        f"ratio naive / s3drive (median per round):      {ratio:8.1f}x"
        f"  (target >= {TARGET_RATIO:.0f}x: {'meets' if ratio >= TARGET_RATIO else 'BELOW'})"
    )
    print(f"load average after the run:                    {load}")


if __name__ == "__main__":
    main()
