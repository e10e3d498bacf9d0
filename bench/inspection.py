"""Benchmark: what content inspection costs, against a naive inspector measured in the same run.

1. S3 bytes read per file by inspection without previews, counted at the S3 endpoint (bench/_virtual_s3.py
   serves virtual objects and counts every byte it writes, FFmpeg's reads included), for a 10 MiB and a
   5 GiB ZIP64 archive and video (a 3-second faststart MP4 padded with zeros: what FFmpeg reads to probe
   it does not grow with the object). Baseline: a naive inspector reads the whole object.
2. Worker RSS, flat from 10 MiB to 5 GiB: each inspection runs in a fresh process; its peak RSS is
   reported, with the ratio 5 GiB / 10 MiB.
3. Throughput of the real pipeline: 1,000 small mixed files (JPEG, PNG, PDF, ZIP, text) uploaded to
   MiniStack (AUTH=true) and confirmed in one call, inspected (with previews) by 2 worker processes
   (`celery worker --concurrency=2`) on Redis, on PostgreSQL. Files/s from the first confirm to the
   last verdict, and the time from confirm to `passed` (median, p99). Baseline: the same inspections
   (claim, reads, preview and its PUT, verdict) run one after another in one process, no queue.

Usage: .venv/bin/python bench/inspection.py [--files 1000] [--database-url URL] [--redis-url URL] [--skip-throughput]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")

MIB, GIB = 1024**2, 1024**3
SIZES = {"10 MiB": 10 * MIB, "5 GiB": 5 * GIB}
DEFAULT_DB = "postgresql+psycopg://postgres@127.0.0.1:5432/s3drive_bench_inspect"
DEFAULT_REDIS = "redis://127.0.0.1:6379/9"
BUCKET = "bench-inspect"


# -- 1 and 2: bytes read and RSS, one fresh process per object ----------------------------------


def faststart_mp4() -> bytes:
    """Return a 3-second 64×48 MP4 whose index (moov) comes first."""
    import av
    from PIL import Image

    # faststart moves the index to the front when the file is closed: it needs a real file.
    with (
        tempfile.TemporaryDirectory() as tmp,
        av.open(f"{tmp}/clip.mp4", "w", options={"movflags": "faststart"}) as container,
    ):
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(30):
            frame = av.VideoFrame.from_image(Image.new("RGB", (64, 48), (index * 8, 100, 150)))
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
        container.close()
        return Path(f"{tmp}/clip.mp4").read_bytes()


def inspect_one(kind: str, size: int) -> dict:
    """Serve one virtual object and inspect it as a worker does, without previews; return the counts."""
    from _virtual_s3 import padded, serve, zip64_of_zeros

    from s3drive import create_app
    from s3drive.inspect import inspect_object
    from s3drive.services.inspection import MEDIA_URL_SECONDS, limits
    from s3drive.storage import get_storage

    if kind == "zip":
        obj, declared = zip64_of_zeros(size), "application/zip"
    else:
        obj, declared = padded(faststart_mp4(), size, "video/mp4"), "video/mp4"
    key = f"users/u/b/f/object.{kind}"
    server, counter, stop = serve({key: obj})
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(
            {
                "TESTING": True,
                "DATABASE_URL": f"sqlite:///{tmp}/db.sqlite3",
                "S3_BUCKET": "bench",
                "S3_ENDPOINT_URL": f"http://127.0.0.1:{server.server_port}",
                "S3_ADDRESSING_STYLE": "path",
                "CHECK_DATABASE": False,
            }
        )
        with app.app_context():
            storage = get_storage()
            media_url = storage.presign_get(key, MEDIA_URL_SECONDS) if kind == "video" else None
            started = time.perf_counter()
            report = inspect_object(storage.reader(key, size), declared, limits(), media_url)
            seconds = time.perf_counter() - started
    time.sleep(0.2)  # let the server finish counting what it wrote
    stop()
    return {
        "kind": kind,
        "size": size,
        "bytes": counter.bytes_sent.get(key, 0),
        "requests": counter.requests.get(key, 0),
        "seconds": seconds,
        "found": {"entries": report.entry_count, "duration": report.duration_seconds},
        "max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def bytes_and_rss() -> None:
    print("== 1, 2: S3 bytes read per file (no previews) and worker peak RSS, one fresh process each")
    print(f"{'object':<16}{'bytes read':>12}{'GETs':>6}{'naive reads':>16}{'ratio':>12}{'peak RSS':>12}{'time':>9}")
    rss: dict[str, dict[str, int]] = {}
    for kind in ("zip", "video"):
        for label, size in SIZES.items():
            out = subprocess.run(
                [sys.executable, __file__, "--one", kind, str(size)], capture_output=True, text=True, check=True
            )
            result = json.loads(out.stdout.strip().splitlines()[-1])
            rss.setdefault(kind, {})[label] = result["max_rss_kib"]
            print(
                f"{kind + ' ' + label:<16}{result['bytes']:>12,}{result['requests']:>6}{size:>16,}"
                f"{result['bytes'] / size:>12.2e}{result['max_rss_kib'] / 1024:>10.1f} M{result['seconds']:>8.2f}s"
                f"  {result['found']}"
            )
    for kind, by_size in rss.items():
        print(f"{kind}: peak RSS 5 GiB / 10 MiB = {by_size['5 GiB'] / by_size['10 MiB']:.3f}")


# -- 3: throughput with real workers --------------------------------------------------------------


def mixed_files(count: int) -> list[tuple[str, str, bytes]]:
    """Return `count` small files of five kinds, each distinct."""
    import zipfile

    from PIL import Image
    from pypdf import PdfWriter

    def jpeg(i: int) -> bytes:
        out = io.BytesIO()
        Image.new("RGB", (640, 480), (i % 256, 80, 160)).save(out, "JPEG", quality=85)
        return out.getvalue()

    def png(i: int) -> bytes:
        out = io.BytesIO()
        Image.new("RGB", (320, 240), (30, i % 256, 90)).save(out, "PNG")
        return out.getvalue()

    def pdf(i: int) -> bytes:
        writer, out = PdfWriter(), io.BytesIO()
        for _ in range(1 + i % 3):
            writer.add_blank_page(612, 792)
        writer.write(out)
        return out.getvalue()

    def archive(i: int) -> bytes:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
            for n in range(5):
                z.writestr(f"dir/{i}-{n}.txt", f"line {i} {n}\n" * 200)
        return out.getvalue()

    def text(i: int) -> bytes:
        return f"notes {i}\n".encode() * 300

    kinds = [("jpg", "image/jpeg", jpeg), ("png", "image/png", png), ("pdf", "application/pdf", pdf)]
    kinds += [("zip", "application/zip", archive), ("txt", "text/plain", text)]
    return [(f"file-{i}.{ext}", ctype, make(i)) for i in range(count) for ext, ctype, make in [kinds[i % len(kinds)]]]


def recreate_database(url: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    target = make_url(url)
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{target.database}"'))
    admin.dispose()


def throughput(count: int, database_url: str, redis_url: str) -> None:
    import redis
    import requests
    from _stack import ministack
    from flask_migrate import upgrade
    from sqlalchemy import select, update

    from s3drive import create_app
    from s3drive.dev import ministack as dev_s3
    from s3drive.extensions import db
    from s3drive.models import File
    from s3drive.services import inspection
    from s3drive.services.users import create_user

    print(f"\n== 3: {count} small mixed files, confirmed in one call, inspected by 2 worker processes (Redis)")
    recreate_database(database_url)
    redis.Redis.from_url(redis_url).flushdb()
    files = mixed_files(count)
    with tempfile.TemporaryDirectory() as tmp_name, ministack(Path(tmp_name), BUCKET) as s3_url:
        tmp = Path(tmp_name)
        settings = {
            "DATABASE_URL": database_url,
            "S3_BUCKET": BUCKET,
            "S3_ENDPOINT_URL": s3_url,
            "S3_ADDRESSING_STYLE": "path",
            "BROKER_URL": redis_url,
            "JWT_SECRET_KEY": "bench-" + "x" * 40,
            "PUBLIC_URL": "http://127.0.0.1:5000",
            "INSPECT": True,
        }
        os.environ.update(AWS_ACCESS_KEY_ID=dev_s3.ACCESS_KEY, AWS_SECRET_ACCESS_KEY=dev_s3.SECRET_KEY)
        app = create_app(dict(settings))
        with app.app_context():
            upgrade(directory=str(REPO / "migrations"))
            create_user("bench", "bench-password", quota_bytes=10 * GIB)
        client = app.test_client()
        login = client.post("/api/auth/login", json={"username": "bench", "password": "bench-password"})
        auth = {"Authorization": f"Bearer {login.get_json()['access_token']}"}
        specs = [{"file_name": n, "content_type": t, "file_size": len(d)} for n, t, d in files]
        tickets = client.post("/api/files/upload/", json={"files": specs}, headers=auth).get_json()["successful"]
        assert len(tickets) == count
        with ThreadPoolExecutor(16) as pool:
            puts = pool.map(
                lambda pair: requests.put(pair[0]["presigned_url"], data=pair[1][2], headers=pair[0]["headers"]),
                zip(tickets, files, strict=True),
            )
            failed = [(r.status_code, r.text[:300]) for r in puts if r.status_code != 200]
            assert not failed, failed[:3]

        env = {k: v for k, v in os.environ.items() if not k.startswith("S3DRIVE_")}
        env.update({f"S3DRIVE_{k}": str(v) for k, v in settings.items()})
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "wsgi:celery",
            "worker",
            "--concurrency=2",
            "--loglevel=warning",
        ]
        with open(tmp / "worker.log", "wb") as log:
            worker = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            time.sleep(4)  # the workers are up and waiting
            started = time.perf_counter()
            confirmed = client.post(
                "/api/files/confirm_uploads/", json={"ids": [t["id"] for t in tickets]}, headers=auth
            )
            confirm_seconds = time.perf_counter() - started
            assert confirmed.get_json()["total_successful"] == count, confirmed.get_json()
            with app.app_context():
                while db.session.scalar(select(db.func.count()).where(File.inspection_state == "pending")):
                    db.session.commit()
                    time.sleep(0.1)
                rows = db.session.execute(select(File.confirmed_at, File.inspected_at, File.inspection_state)).all()
        finally:
            worker.terminate()
            worker.wait(30)
        states = {
            state: sum(1 for r in rows if r.inspection_state == state) for state in {r.inspection_state for r in rows}
        }
        latencies = sorted((r.inspected_at - r.confirmed_at).total_seconds() for r in rows)
        span = (max(r.inspected_at for r in rows) - min(r.confirmed_at for r in rows)).total_seconds()
        queued_rate = count / span

        # Baseline: the same inspections (claim, reads, preview, its PUT, the verdict), one after another
        # in this process: the files are marked pending again and inspected in a loop, no queue.
        with app.app_context():
            ids = list(db.session.scalars(select(File.id)))
            db.session.execute(
                update(File).values(inspection_state="pending", inspection_claimed_at=None, inspection=None)
            )
            db.session.commit()
            started = time.perf_counter()
            for file_id in ids:
                inspection.inspect_file(file_id)
            sequential_rate = count / (time.perf_counter() - started)

    print(f"confirm of {count} files (queues their inspections): {confirm_seconds * 1000:.0f} ms; verdicts {states}")
    median, p99 = statistics.median(latencies), latencies[int(0.99 * (len(latencies) - 1))]
    print(f"2 worker processes: {queued_rate:.1f} files/s; confirm -> verdict median {median:.2f} s, p99 {p99:.2f} s")
    print(f"baseline, one process in a loop: {sequential_rate:.1f} files/s; ratio {queued_rate / sequential_rate:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--database-url", default=DEFAULT_DB)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--one", nargs=2, metavar=("KIND", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(inspect_one(args.one[0], int(args.one[1]))))
        return
    bytes_and_rss()
    if not args.skip_throughput:
        throughput(args.files, args.database_url, args.redis_url)


if __name__ == "__main__":
    main()
