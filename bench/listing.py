"""Benchmark: GET /api/files/ keyset pages vs the same queries with OFFSET, one user with many files.

Both run through the Werkzeug test client (auth, query parsing, SQL, JSON) in the same run:
  - keyset: the real endpoint, resuming from `next_cursor`;
  - offset: a baseline route added to the bench app that runs the same filters and sort
    (services.listing.file_filters) with OFFSET n instead of a cursor, and answers the same JSON.
Pages measured, each first and deep where a listing can be paged that far: the default sort, by
name, by size, a 1,000-item page, folder pages, tag pages (common, rare, none), `q` searches (a
common word, a rare one only a few dozen files contain, one no file contains) and `?profile=`
(a named profile, and `default`). Every keyset page is checked to hold exactly the rows OFFSET
returns; each is timed over --rounds rounds, interleaved with its baseline (median and p95).

The database is PostgreSQL: a database created for the run and dropped after it (bench/_stack.py).
The files are loaded with COPY while the listing indexes are set aside, then the indexes the
migrations made are rebuilt from their own definitions and the table is VACUUM ANALYZEd.
--explain prints EXPLAIN (ANALYZE, BUFFERS) of each keyset query as the endpoint sent it.
Usage: .venv/bin/python bench/listing.py [--rounds 20] [--files 100000] [--server-url URL] [--explain]
"""

from __future__ import annotations

import argparse
import gc
import json
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
from sqlalchemy import event, select, text

from bench._stack import POSTGRES_SERVER, load_average, own_database
from s3drive import create_app
from s3drive.api.listing import _file_json
from s3drive.extensions import db
from s3drive.models import File
from s3drive.services import listing

WORDS = ["IMG", "holiday", "report", "invoice", "scan", "Résumé", "notes", "draft", "backup", "clip"]
TAGS = ["work", "family", "2024", "2025", "receipts", "raw", "edited", "shared", "todo", "archive"]
FOLDERS = [""] + [
    f"{top}/{year}/{month:02d}" for top in ("photos", "docs") for year in (2024, 2025) for month in range(1, 13)
]
FOLDERS += [f"{top}/{year}" for top in ("photos", "docs") for year in (2024, 2025)] + ["music", "video/raw"]
RARE_WORD = "needle"  # in the title of one file in 23,757 (i % 7919 == 0 among the titled third)
MISSING_WORD = "zyzzyva"  # in no file
RARE_TAG = "audit"  # on one file in 5,000
MISSING_TAG = "nosuchtag"
# One file in 100 was uploaded under "avatar", one in 10 under "document", the rest under none.
PROFILES = {1: "avatar", 3: "document", 13: "document", 23: "document"}
COPY_CHUNK = 50_000


def make_app(url: str):
    app = create_app({"TESTING": True, "DATABASE_URL": url, "S3_BUCKET": "bench-bucket"})
    add_offset_route(app)
    with app.app_context():
        upgrade()
    return app


def add_offset_route(app) -> None:
    """Add the baseline: the same filters, sort and JSON as GET /api/files/, paged with OFFSET."""

    @jwt_required()
    def offset_page():
        args = request.args
        sort, limit, offset = args.get("sort", "-created_at"), int(args.get("limit", 50)), int(args.get("offset", 0))
        items = offset_rows(current_user.id, args, sort, offset, limit)
        folder = args.get("folder")
        dialect = db.engine.dialect.name
        folders = listing.subfolders(current_user.id, "complete", folder, dialect) if folder is not None else None
        return jsonify({"items": [_file_json(item) for item in items], "next_cursor": None, "folders": folders})

    app.add_url_rule("/bench/offset", "bench_offset", offset_page)


def offset_rows(user_id: str, args, sort: str, offset: int, limit: int) -> list[dict]:
    """Return the rows of one listing page found with OFFSET (the baseline's query)."""
    conditions = listing.file_filters(
        user_id, args.get("status", "complete"), args.get("folder"), args.get("q"), args.get("tag"), "postgresql"
    )
    if args.get("profile") is not None:
        conditions.append(File.profile == args["profile"])
    column = listing.SORT_COLUMNS[sort.lstrip("-")]
    order = (column.desc(), File.id.desc()) if sort.startswith("-") else (column.asc(), File.id.asc())
    statement = select(*listing.LISTED_COLUMNS).where(*conditions).order_by(*order).offset(offset).limit(limit)
    return listing.rows_as_dicts(db.session.execute(statement))


def file_rows(user_id: str, count: int):
    """Yield the COPY rows of `count` files: presign-sized batches that share a timestamp."""
    rng = random.Random(42)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    for i in range(count):
        file_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        status = "complete" if i % 20 else rng.choice(["pending", "deleted", "rejected"])
        title = None
        if i % 3 == 0:
            title = f"A {RARE_WORD} in a haystack {i}" if i % 7919 == 0 else f"Picture {i}"
        tags = rng.sample(TAGS, rng.randrange(0, 4)) + ([RARE_TAG] if i % 5000 == 7 else [])
        # Presign batches of 100 share one timestamp: ties the cursor must break by id.
        created = start + timedelta(seconds=i // 100)
        yield (
            file_id,
            user_id,
            file_id,
            f"{WORDS[i % len(WORDS)]}_{i:07d}.jpg",
            f"users/{user_id}/b/{file_id}/x.jpg",
            "image/jpeg",
            rng.randrange(1, 10**9),
            "standard",
            title,
            json.dumps(tags),
            rng.choice(FOLDERS),
            PROFILES.get(i % 100, "default"),
            status,
            "PUT",
            created,
            created + timedelta(seconds=5),
        )


COPY_COLUMNS = (
    "id, user_id, batch_id, file_name, s3_key, content_type, size, tier, title, tags, folder, profile, status,"
    " method, created_at, confirmed_at"
)


def fill(app, user_id: str, count: int) -> dict[str, float]:
    """Load `count` files for one user as fast as PostgreSQL takes them; return the seconds of each step.

    The indexes that back no constraint (the listing's, the trigram ones) are dropped, the rows are
    COPYed, then the indexes are rebuilt from the definitions the migrations gave them (pg_indexes),
    so what is measured is exactly the migrated schema.
    """
    seconds = {}
    with app.app_context():
        raw = db.engine.raw_connection()
        try:
            connection = raw.driver_connection
            connection.autocommit = True
            started = time.perf_counter()
            definitions = connection.execute(
                "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i"
                " JOIN pg_class c ON c.oid = i.indexrelid"
                " WHERE i.indrelid = 'files'::regclass"
                " AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)"
            ).fetchall()
            for name, _definition in definitions:
                connection.execute(f'DROP INDEX "{name}"')
            # The rows all belong to one user that exists: skip the per-row foreign-key trigger.
            connection.execute("SET session_replication_role = replica")
            rows = file_rows(user_id, count)
            with connection.transaction(), connection.cursor() as cursor:
                while True:
                    chunk = [row for _, row in zip(range(COPY_CHUNK), rows, strict=False)]
                    if not chunk:
                        break
                    with cursor.copy(f"COPY files ({COPY_COLUMNS}) FROM STDIN") as copy:
                        for row in chunk:
                            copy.write_row(row)
            connection.execute("SET session_replication_role = DEFAULT")
            seconds["copy"] = time.perf_counter() - started
            started = time.perf_counter()
            connection.execute("SET maintenance_work_mem = '512MB'")
            for _name, definition in definitions:
                connection.execute(definition)
            seconds["indexes"] = time.perf_counter() - started
            started = time.perf_counter()
            # As autovacuum would: statistics for the planner, visibility map for index-only scans.
            connection.execute("VACUUM ANALYZE files")
            seconds["vacuum analyze"] = time.perf_counter() - started
        finally:
            raw.close()
    return seconds


def timed(client, headers, url: str, params: dict, rounds_out: list[float]) -> dict:
    gc.collect()
    start = time.perf_counter()
    response = client.get(url, query_string=params, headers=headers)
    rounds_out.append(time.perf_counter() - start)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def cursor_at(app, user_id: str, params: dict, depth: int) -> str:
    """Return the cursor that resumes `params`' listing `depth` rows deep (the row before, found with OFFSET)."""
    sort = params.get("sort", listing.DEFAULT_SORT)
    with app.test_request_context():
        rows = offset_rows(user_id, params, sort, depth - 1, 1)
        assert rows, f"fewer than {depth} rows match {params}"
        key = sort.lstrip("-")
        return listing.encode_listing_cursor(sort, rows[0][key], rows[0]["id"], user_id)


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20, method="inclusive")[18]


class StatementLog:
    """Keep the last SELECT ... FROM files the engine ran, with its parameters (for --explain)."""

    def __init__(self, engine):
        self.last = None
        event.listen(engine, "before_cursor_execute", self._note)

    def _note(self, conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().startswith("SELECT files.id"):
            self.last = (statement, parameters)


def explain(app, statement: str, parameters) -> str:
    with app.app_context():
        raw = db.engine.raw_connection()
        try:
            rows = raw.driver_connection.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters).fetchall()
        finally:
            raw.close()
    return "\n".join("    " + row[0] for row in rows)


def cases(files: int, limit: int) -> list[tuple[str, dict, int]]:
    """Return the pages measured: (name, query parameters, rows deep)."""
    deep = int(files * 0.9) // 1000 * 1000  # of the ~95% complete files
    mid = min(9_999 * limit, files // 2)  # page 10,000 when there are that many
    in_folder, tagged, searched, avatars = min(10_000, files // 100), files // 10, files // 20, files // 200
    return [
        ("first page", {}, 0),
        ("second page", {}, limit),
        (f"page {mid // limit + 1:,} ({mid:,} rows deep)", {}, mid),
        (f"page {deep // limit + 1:,} ({deep:,} rows deep)", {}, deep),
        ("first page, limit=1000", {"limit": 1000}, 0),
        ("sort=file_name, first page", {"sort": "file_name"}, 0),
        (f"sort=file_name, {deep:,} deep", {"sort": "file_name"}, deep),
        ("sort=-size, first page", {"sort": "-size"}, 0),
        (f"sort=-size, {mid:,} deep", {"sort": "-size"}, mid),
        ("root folder page + its subfolders", {"folder": ""}, 0),
        ("folder photos/2025/06, first page", {"folder": "photos/2025/06"}, 0),
        (f"folder photos/2025/06, {in_folder:,} deep", {"folder": "photos/2025/06"}, in_folder),
        ("tag=receipts, first page", {"tag": "receipts"}, 0),
        (f"tag=receipts, {tagged:,} deep", {"tag": "receipts"}, tagged),
        (f"tag={RARE_TAG} (rare)", {"tag": RARE_TAG}, 0),
        (f"tag={MISSING_TAG} (no match)", {"tag": MISSING_TAG}, 0),
        ("q=holiday, first page", {"q": "holiday"}, 0),
        (f"q=holiday, {searched:,} deep", {"q": "holiday"}, searched),
        (f"q={RARE_WORD} (rare)", {"q": RARE_WORD}, 0),
        (f"q={MISSING_WORD} (no match)", {"q": MISSING_WORD}, 0),
        ("profile=avatar, first page", {"profile": "avatar"}, 0),
        (f"profile=avatar, {avatars:,} deep", {"profile": "avatar"}, avatars),
        ("profile=document, first page", {"profile": "document"}, 0),
        ("profile=default, first page", {"profile": "default"}, 0),
        (f"profile=default, {mid:,} deep", {"profile": "default"}, mid),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--server-url", default=os.environ.get("S3DRIVE_BENCH_POSTGRES", POSTGRES_SERVER))
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN (ANALYZE, BUFFERS) of each keyset page")
    args = parser.parse_args()

    print(f"load average {load_average()} ({os.cpu_count()} CPUs)")
    try:
        database = own_database(args.server_url)
        database_url = database.__enter__()
    except Exception as error:  # any connection failure means: no PostgreSQL here
        print(f"skipped: cannot reach {args.server_url} ({str(error).strip().splitlines()[0]})")
        return
    try:
        run(args, database_url)
    finally:
        database.__exit__(None, None, None)


def run(args, database_url: str) -> None:
    app = make_app(database_url)
    client = app.test_client()
    user = {"username": "bench", "password": "bench-password"}
    client.post("/api/auth/register", json=user)
    headers = {"Authorization": f"Bearer {client.post('/api/auth/login', json=user).get_json()['access_token']}"}
    with app.app_context():
        user_id = db.session.scalar(text("SELECT id FROM users WHERE username = 'bench'"))
        server_version = db.session.scalar(text("SHOW server_version"))
    started = time.perf_counter()
    steps = fill(app, user_id, args.files)
    took = ", ".join(f"{name} {value:.1f} s" for name, value in steps.items())
    print(f"loaded {args.files:,} files in {time.perf_counter() - started:.1f} s ({took}; PostgreSQL {server_version})")

    limit = args.limit
    plans = []
    for name, params, depth in cases(args.files, limit):
        cursor = cursor_at(app, user_id, params, depth) if depth else None
        keyset_params = {"limit": limit, **params, **({"cursor": cursor} if cursor else {})}
        offset_params = {"limit": limit, **params, "offset": depth}
        keyset_body = client.get("/api/files/", query_string=keyset_params, headers=headers).get_json()
        offset_body = client.get("/bench/offset", query_string=offset_params, headers=headers).get_json()
        assert [i["id"] for i in keyset_body["items"]] == [i["id"] for i in offset_body["items"]], name
        assert keyset_body["folders"] == offset_body["folders"], name
        plans.append((name, keyset_params, offset_params, len(keyset_body["items"])))

    for _ in range(6):  # warm up: imports, caches, prepared statements (psycopg prepares at the 5th), buffers
        for _name, keyset_params, offset_params, _count in plans:
            client.get("/api/files/", query_string=keyset_params, headers=headers)
            client.get("/bench/offset", query_string=offset_params, headers=headers)
    results = {name: ([], []) for name, *_ in plans}
    for _ in range(args.rounds):
        # Interleaved, so that a noisy neighbour slows both sides alike.
        for name, keyset_params, offset_params, _count in plans:
            timed(client, headers, "/api/files/", keyset_params, results[name][0])
            timed(client, headers, "/bench/offset", offset_params, results[name][1])

    print(f"{args.rounds} rounds, whole request through the test client, limit={limit}; load average {load_average()}")
    print(f"{'page':42} {'items':>5} {'keyset median':>13} {'p95':>7} {'OFFSET median':>13} {'OFFSET/keyset':>13}")
    worst = (0.0, "")
    for name, _keyset, _offset, count in plans:
        keyset, offset = results[name]
        keyset_ms, offset_ms = statistics.median(keyset) * 1e3, statistics.median(offset) * 1e3
        worst = max(worst, (keyset_ms, name))
        print(
            f"{name:42} {count:5d} {keyset_ms:10.2f} ms {p95(keyset) * 1e3:7.2f}"
            f" {offset_ms:10.2f} ms {offset_ms / keyset_ms:12.1f}x"
        )
    medians = {name: statistics.median(results[name][0]) for name in results}
    names = [name for name, *_ in plans]
    print(f"slowest keyset page (median): {worst[0]:.2f} ms, {worst[1]} (target < 20 ms)")
    print("deep keyset page / first page of the same listing (target ~1: depth costs nothing):")
    firsts = {}
    for (_name, params, depth), measured in zip(cases(args.files, limit), names, strict=True):
        shape = tuple(sorted(params.items()))
        if depth == 0:
            firsts[shape] = measured
        elif shape in firsts:
            print(f"  {measured:42} {medians[measured] / medians[firsts[shape]]:5.2f}")

    if args.explain:
        log = StatementLog(_engine(app))
        for name, keyset_params, _offset, _count in plans:
            client.get("/api/files/", query_string=keyset_params, headers=headers)
            print(f"\n== {name}: {keyset_params}")
            print(explain(app, *log.last))


def _engine(app):
    with app.app_context():
        return db.engine


if __name__ == "__main__":
    main()
