"""gunicorn's settings for s3drive (`gunicorn wsgi:app` reads this file; the Procfile's flags override it)."""

import os
import sys

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# The worker class, by measurement (README, Performance): on PostgreSQL gevent serves an Uppy form
# for a fifth less CPU than gthread (no thread hand-off per request; psycopg cooperates with gevent).
# SQLite's driver does not: a request waiting for its write lock would stall the whole worker, so
# a SQLite deployment (the dev stack) keeps threads.
_postgres = os.environ.get("S3DRIVE_DATABASE_URL", "").startswith("postgresql")
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gevent" if _postgres else "gthread")
# gevent: the connections a worker keeps open at once.
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "1000"))
threads = int(os.environ.get("GUNICORN_THREADS", "8"))  # gthread
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
# At most threads - 1 requests of a worker are served at once, the rest wait briefly or answer 503
# server_busy (s3drive/api/admission.py): with gthread one thread stays free for /healthz; with gevent
# the bound keeps a dead dependency from piling up requests. The app reads it at import.
if threads > 1:
    os.environ.setdefault("S3DRIVE_MAX_IN_FLIGHT", str(threads - 1))
# S3DRIVE_LOG_FORMAT=json (the default): the app writes one JSON line per request, with its route, request
# id and user (s3drive/logs.py, RequestLog), so gunicorn's access line would be a second one: off. text:
# gunicorn's combined line, at a fraction of gunicorn's cost, without Uppy session or share link tokens.
# Either way gunicorn's own lines come in the format, through the same redaction (s3drive/accesslog.py).
_log_format = os.environ.get("S3DRIVE_LOG_FORMAT", "json").strip().lower()
accesslog = "-" if _log_format == "text" else None
logger_class = "s3drive.accesslog.AccessLogger"
# Each worker listens on a socket of its own (SO_REUSEPORT) and the kernel spreads new connections
# over them. With one shared socket, a burst of keep-alive connections (a proxy's pool, a browser,
# a load test) lands on whichever worker wakes first and stays there: measured, all 32 of wrk's
# connections on one worker half the time, the other worker idle, 550 req/s instead of 900.
reuse_port = True
# Uppy signs up to 1,000 parts in one GET (`?partNumbers=1,2,…,1000&key=…`, about 5 KiB): gunicorn's
# default 4 KiB request line would answer with an HTML 414.
limit_request_line = 16384
# The proxy in front (TLS) may set X-Forwarded-*; nobody else.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def when_ready(server):
    """Say at start-up when several workers would each count the rate limits on their own."""
    store = os.environ.get("S3DRIVE_RATELIMIT_STORAGE_URI", "memory://")
    if server.cfg.workers > 1 and store.startswith("memory://"):
        server.log.warning(
            "S3DRIVE_RATELIMIT_STORAGE_URI is %s: each of the %d workers counts the rate limits on its own,"
            " so a client gets up to %d times the login limit; set it to redis://... to share them",
            store,
            server.cfg.workers,
            server.cfg.workers,
        )


# The cyclic garbage collector, measured in process: a 1,000-file batch spent an eighth of its CPU in
# collections that walked the ~150,000 objects loaded at start-up (Flask, SQLAlchemy, boto3, the
# app), and an Uppy form a twentieth. Those objects live as long as the worker: gc.freeze() takes
# them out of every collection; the larger first threshold collects a busy request's short-lived
# cycles less often (reference counting still frees everything else at once).
GC_THRESHOLD = 20_000


def post_worker_init(worker):
    """Once the app is loaded in a worker: freeze what start-up allocated, collect less often."""
    import gc

    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])


def post_fork(server, worker):
    """In a worker forked with the app already loaded (--preload): no exporter connections of the parent's."""
    # Only when the app was loaded before the fork; importing it here would precede gevent's patching.
    tracing = sys.modules.get("s3drive.tracing")
    if tracing is not None:
        tracing.after_fork()
