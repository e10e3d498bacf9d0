"""Benchmark: a 1,000-file presign batch through the real endpoint vs naive boto3 signing.

Both run in the same process and the same run, so the ratio holds on a noisy machine:
  - s3drive: POST /api/files/upload/ with 1,000 FileSpecs through the Werkzeug test
    client (auth, validation, quota lock, bulk insert, signing, JSON), on SQLite;
  - naive:   the same 1,000 PUT URLs from boto3's generate_presigned_url on a
    ThreadPoolExecutor of 10, one URL per task (signing only, no HTTP, no DB).

Usage: .venv/bin/python bench/presign.py [--rounds 25] [--files 1000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import boto3
from botocore.config import Config
from flask_migrate import upgrade

from s3drive import create_app

BUCKET = "bench-bucket"


def make_app(database_url: str):
    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": database_url,
            "S3_BUCKET": BUCKET,
            "DEFAULT_QUOTA_BYTES": 10**15,
            "LOGIN_RATE_LIMIT": "1000 per minute",
        }
    )
    with app.app_context():
        upgrade()
    return app


def file_specs(count: int) -> list[dict]:
    return [
        {"file_name": f"IMG_{i:05d}.jpg", "content_type": "image/jpeg", "file_size": 1_000_000 + i, "tags": "bench"}
        for i in range(count)
    ]


def time_s3drive(client, headers, body, rounds: int, cpu: list[float] | None = None) -> list[float]:
    samples = []
    for _ in range(rounds):
        start, start_cpu = time.perf_counter(), time.process_time()
        response = client.post("/api/files/upload/", json=body, headers=headers)
        samples.append(time.perf_counter() - start)
        if cpu is not None:
            cpu.append(time.process_time() - start_cpu)
        assert response.status_code == 200 and response.get_json()["total_successful"] == len(body["files"])
    return samples


def make_naive_signer(specs: list[dict]):
    """Return a function that signs the batch's URLs the naive way, and closes its pool."""
    client = boto3.client(
        "s3",
        region_name="us-east-1",
        config=Config(signature_version="s3v4", request_checksum_calculation="when_required"),
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
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/bench.sqlite3"
        app = make_app(url)
        client = app.test_client()
        user = {"username": f"bench{int(time.time())}", "password": "bench-password"}
        client.post("/api/auth/register", json=user)
        token = client.post("/api/auth/login", json=user).get_json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        specs = file_specs(args.files)
        body = {"files": specs}

        naive_run, naive_close = make_naive_signer(specs)
        time_s3drive(client, headers, body, 2)  # warm up: imports, caches, SQLite pages
        naive_run()
        # Interleave the two so that a noisy neighbour slows both alike.
        ours, naive, ours_cpu = [], [], []
        for _ in range(args.rounds):
            gc.collect()  # neither side pays for the other's garbage
            ours += time_s3drive(client, headers, body, 1, ours_cpu)
            gc.collect()
            naive.append(naive_run())
        naive_close()

    ours_ms, naive_ms = statistics.median(ours) * 1e3, statistics.median(naive) * 1e3
    print(f"files per batch:                         {args.files}")
    print(f"s3drive whole request (median of {args.rounds}):   {ours_ms:8.1f} ms   (target < 50 ms)")
    print(f"s3drive CPU time per request (median):   {statistics.median(ours_cpu) * 1e3:8.1f} ms")
    print(f"naive boto3 signing only, 10 threads:    {naive_ms:8.1f} ms")
    print(f"ratio naive / s3drive:                   {naive_ms / ours_ms:8.1f}x  (target >= 8x)")


if __name__ == "__main__":
    main()
