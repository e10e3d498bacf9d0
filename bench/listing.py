"""Benchmark: GET /api/files/ keyset pages vs the same queries with OFFSET, one user with 100,000 files.

Both run through the Werkzeug test client (auth, query parsing, SQL, JSON) in the same run:
  - keyset: the real endpoint, resuming from `next_cursor`;
  - offset: a baseline route added to the bench app that runs the same filters and sort
    (services.listing.file_filters) with OFFSET n instead of a cursor, and answers the same JSON.
Pages measured: the first page, a page 90,000 rows deep, the second page, a 1,000-item page,
folder pages, a tag page, and `q` searches (a common word, and a rare one that only a handful of
files contain), each at the same depth on both sides. Every keyset page is checked to hold exactly
the rows OFFSET returns.

The database is PostgreSQL (a database of its own, created when missing, rebuilt every run).
Usage: .venv/bin/python bench/listing.py [--rounds 30] [--files 100000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask import jsonify, request
from flask_jwt_extended import current_user, jwt_required
from flask_migrate import upgrade
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from s3drive import create_app
from s3drive.api.listing import _file_json
from s3drive.bulk import bulk_insert
from s3drive.extensions import db
from s3drive.models import File
from s3drive.services import listing

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/s3drive_bench"
WORDS = ["IMG", "holiday", "report", "invoice", "scan", "Résumé", "notes", "draft", "backup", "clip"]
TAGS = ["work", "family", "2024", "2025", "receipts", "raw", "edited", "shared", "todo", "archive"]
FOLDERS = [""] + [
    f"{top}/{year}/{month:02d}" for top in ("photos", "docs") for year in (2024, 2025) for month in range(1, 13)
]
FOLDERS += [f"{top}/{year}" for top in ("photos", "docs") for year in (2024, 2025)] + ["music", "video/raw"]
RARE_WORD = "needle"


def ensure_database(url: str) -> None:
    """Create the bench database when it does not exist (PostgreSQL only)."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("postgresql"):
        return
    import psycopg

    admin = parsed.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as connection:
        if connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (parsed.database,)).fetchone() is None:
            connection.execute(f'CREATE DATABASE "{parsed.database}"')


def make_app(url: str):
    app = create_app({"TESTING": True, "DATABASE_URL": url, "S3_BUCKET": "bench-bucket"})
    add_offset_route(app)
    with app.app_context():
        with db.engine.begin() as connection:
            cascade = " CASCADE" if db.engine.dialect.name == "postgresql" else ""
            for table in ("files", "revoked_tokens", "users", "alembic_version"):
                connection.execute(text(f"DROP TABLE IF EXISTS {table}{cascade}"))
        upgrade()
    return app


def add_offset_route(app) -> None:
    """Add the baseline: the same filters, sort and JSON as GET /api/files/, paged with OFFSET."""

    @jwt_required()
    def offset_page():
        args = request.args
        sort, limit, offset = args.get("sort", "-created_at"), int(args.get("limit", 50)), int(args.get("offset", 0))
        dialect = db.engine.dialect.name
        folder = args.get("folder")
        conditions = listing.file_filters(
            current_user.id, args.get("status", "complete"), folder, args.get("q"), args.get("tag"), dialect
        )
        column = listing.SORT_COLUMNS[sort.lstrip("-")]
        order = (column.desc(), File.id.desc()) if sort.startswith("-") else (column.asc(), File.id.asc())
        statement = select(*listing.LISTED_COLUMNS).where(*conditions).order_by(*order).offset(offset).limit(limit)
        items = listing.rows_as_dicts(db.session.execute(statement))
        folders = listing.subfolders(current_user.id, "complete", folder, dialect) if folder is not None else None
        return jsonify({"items": [_file_json(item) for item in items], "next_cursor": None, "folders": folders})

    app.add_url_rule("/bench/offset", "bench_offset", offset_page)


def fill(app, user_id: str, count: int) -> None:
    """Insert `count` files for one user, in presign-sized batches that share a timestamp."""
    rng = random.Random(42)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    with app.app_context():
        for first in range(0, count, 10_000):
            rows = []
            for i in range(first, min(first + 10_000, count)):
                file_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                word = WORDS[i % len(WORDS)]
                status = "complete" if i % 20 else rng.choice(["pending", "deleted", "rejected"])
                rows.append(
                    {
                        "id": file_id,
                        "user_id": user_id,
                        "batch_id": file_id,
                        "file_name": f"{word}_{i:06d}.jpg",
                        "s3_key": f"users/{user_id}/b/{file_id}/x.jpg",
                        "content_type": "image/jpeg",
                        "size": rng.randrange(1, 10**9),
                        "checksum_sha256": None,
                        "tier": "standard",
                        "title": (f"A {RARE_WORD} in a haystack {i}" if i % 7919 == 0 else f"Picture {i}")
                        if i % 3 == 0
                        else None,
                        "description": None,
                        "tags": rng.sample(TAGS, rng.randrange(0, 4)),
                        "folder": rng.choice(FOLDERS),
                        "status": status,
                        "method": "PUT",
                        # Presign batches of 100 share one timestamp: ties the cursor must break by id.
                        "created_at": start + timedelta(seconds=i // 100),
                        "expires_at": None,
                        "confirmed_at": start + timedelta(seconds=i // 100 + 5),
                    }
                )
            bulk_insert(File.__table__, rows)
            db.session.commit()
        with db.engine.connect() as connection:
            if db.engine.dialect.name == "postgresql":
                # As autovacuum would: statistics for the planner, visibility map for index-only scans.
                connection.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE files"))
            else:
                connection.execute(text("ANALYZE"))


def timed(client, headers, url: str, params: dict, rounds_out: list[float]) -> dict:
    gc.collect()
    start = time.perf_counter()
    response = client.get(url, query_string=params, headers=headers)
    rounds_out.append(time.perf_counter() - start)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def cursor_at(client, headers, params: dict, depth: int) -> str:
    """Walk the cursor chain `depth` rows deep and return the cursor there."""
    cursor, seen = None, 0
    while seen < depth:
        step = min(1000, depth - seen)
        body = client.get(
            "/api/files/",
            query_string={**params, "limit": step, **({"cursor": cursor} if cursor else {})},
            headers=headers,
        ).get_json()
        seen += len(body["items"])
        cursor = body["next_cursor"]
        assert cursor, f"fewer than {depth} rows match {params}"
    return cursor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--database-url", default=os.environ.get("S3DRIVE_BENCH_DATABASE_URL", DEFAULT_URL))
    args = parser.parse_args()

    try:
        ensure_database(args.database_url)
    except Exception as error:  # any connection failure means: no PostgreSQL here
        print(f"skipped: cannot reach {args.database_url} ({str(error).strip().splitlines()[0]})")
        return
    app = make_app(args.database_url)
    client = app.test_client()
    user = {"username": "bench", "password": "bench-password"}
    client.post("/api/auth/register", json=user)
    headers = {"Authorization": f"Bearer {client.post('/api/auth/login', json=user).get_json()['access_token']}"}
    with app.app_context():
        user_id = db.session.scalar(text("SELECT id FROM users WHERE username = 'bench'"))
    started = time.perf_counter()
    fill(app, user_id, args.files)
    print(f"inserted {args.files} files in {time.perf_counter() - started:.1f} s ({app.config['DATABASE_URL']})")

    deep = int(args.files * 0.9) // 1000 * 1000  # of the ~95% complete files
    limit = args.limit
    cases = [
        ("first page", {}, 0),
        (f"page {deep:,} rows deep", {}, deep),
        ("second page (cursor after 50 rows)", {}, limit),
        (f"page {deep:,} deep, sort=file_name", {"sort": "file_name"}, deep),
        ("first page, limit=1000", {"limit": 1000}, 0),
        ("root folder page + its subfolders", {"folder": ""}, 0),
        ("folder page (photos/2025/06)", {"folder": "photos/2025/06"}, 0),
        ("tag page (tag=receipts)", {"tag": "receipts"}, 0),
        ("q=holiday, first page", {"q": "holiday"}, 0),
        ("q=holiday, 5,000 matches deep", {"q": "holiday"}, 5000),
        (f"q={RARE_WORD} (rare: a few files match)", {"q": RARE_WORD}, 0),
    ]
    plans = []
    for name, params, depth in cases:
        cursor = cursor_at(client, headers, params, depth) if depth else None
        keyset_params = {"limit": limit, **params, **({"cursor": cursor} if cursor else {})}
        offset_params = {"limit": limit, **params, "offset": depth}
        keyset_body = client.get("/api/files/", query_string=keyset_params, headers=headers).get_json()
        offset_body = client.get("/bench/offset", query_string=offset_params, headers=headers).get_json()
        assert [i["id"] for i in keyset_body["items"]] == [i["id"] for i in offset_body["items"]], name
        plans.append((name, keyset_params, offset_params, len(keyset_body["items"])))

    for _ in range(3):  # warm up: imports, caches, prepared statements, buffers
        for _name, keyset_params, offset_params, _count in plans:
            client.get("/api/files/", query_string=keyset_params, headers=headers)
            client.get("/bench/offset", query_string=offset_params, headers=headers)
    results = {name: ([], []) for name, *_ in plans}
    for _ in range(args.rounds):
        # Interleaved, so that a noisy neighbour slows both sides alike.
        for name, keyset_params, offset_params, _count in plans:
            timed(client, headers, "/api/files/", keyset_params, results[name][0])
            timed(client, headers, "/bench/offset", offset_params, results[name][1])

    print(f"median of {args.rounds} rounds, whole request through the test client, limit={limit}:")
    print(f"{'page':44} {'items':>5} {'keyset ms':>10} {'OFFSET ms':>10} {'OFFSET/keyset':>14}")
    first = statistics.median(results[plans[0][0]][0])
    worst = 0.0
    for name, _keyset, _offset, count in plans:
        keyset_ms = statistics.median(results[name][0]) * 1e3
        offset_ms = statistics.median(results[name][1]) * 1e3
        worst = max(worst, keyset_ms)
        print(f"{name:44} {count:5d} {keyset_ms:10.2f} {offset_ms:10.2f} {offset_ms / keyset_ms:13.1f}x")
    deep_ms = statistics.median(results[plans[1][0]][0])
    second_ms = statistics.median(results[plans[2][0]][0])
    print(f"slowest keyset page: {worst:.2f} ms (target < 20 ms)")
    print(f"deep keyset page / first page: {deep_ms / first:.2f} (target: no slower, ~1)")
    print(f"deep keyset page / second page: {deep_ms / second_ms:.2f} (both resume from a cursor: depth costs nothing)")


if __name__ == "__main__":
    main()
