"""Traces (s3drive/tracing.py): one confirm followed from the request through its queries, its S3
calls and the task it queued, run by a real worker on a real broker; off without a collector; spans
really POSTed to an OTLP/HTTP collector when one is configured."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker
from conftest import register_and_login
from helpers import presign, put_bytes, sha256_b64, spec, wait_until
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from s3drive import tracing

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def spans():
    """Yield an in-memory exporter for tracing.init_app; undo every instrumentation afterwards."""
    exporter = InMemorySpanExporter()
    yield exporter
    tracing.shutdown()


def ancestors(span, by_id: dict) -> list:
    """Return the spans above `span`, nearest first."""
    found = []
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        found.append(span)
    return found


def test_a_confirm_its_queries_s3_calls_and_the_inspection_it_queued_are_one_trace(make_app, spans, tmp_path):
    app = make_app(INSPECT=True, BROKER_URL=f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}")
    tracing.init_app(app, exporter=spans)
    client = app.test_client()
    auth = register_and_login(client, "tracy")
    data = [b"first file\n", b"second file\n"]
    tickets = presign(
        client, auth, *(spec(f"f{i}.txt", d, "text/plain", checksum_sha256=sha256_b64(d)) for i, d in enumerate(data))
    )
    for ticket, body in zip(tickets["successful"], data, strict=True):
        assert put_bytes(ticket, body).status_code == 200
    spans.clear()

    # The one request: two HeadObjects on the S3 pool's threads, then one inspection message.
    response = client.post(
        "/api/files/confirm_uploads/", json={"ids": [t["id"] for t in tickets["successful"]]}, headers=auth
    )
    assert response.status_code == 200 and response.get_json()["total_successful"] == 2, response.get_json()

    celery = app.extensions["celery"]
    with start_worker(celery, pool="solo", perform_ping_check=False, shutdown_timeout=30):
        ran = wait_until(lambda: any(s.name == "run/s3drive.inspect" for s in spans.get_finished_spans()), timeout=60)
        assert ran, [s.name for s in spans.get_finished_spans()]

    finished = spans.get_finished_spans()
    by_id = {s.context.span_id: s for s in finished}
    (route,) = [s for s in finished if s.kind is SpanKind.SERVER]
    assert route.name == "POST /api/files/confirm_uploads/"
    assert route.attributes["http.route"] == "/api/files/confirm_uploads/"
    assert route.parent is None
    trace_id = route.context.trace_id

    queries = [s for s in finished if "db.system" in s.attributes or "db.system.name" in s.attributes]
    request_queries = [s for s in queries if s.parent is not None and s.parent.span_id == route.context.span_id]
    assert request_queries, [s.name for s in queries]

    heads = [s for s in finished if s.attributes.get("rpc.method") == "HeadObject"]
    assert len(heads) == 2, [s.name for s in finished]
    for head in heads:
        assert head.name == "S3.HeadObject" and head.kind is SpanKind.CLIENT
        assert head.context.trace_id == trace_id
        assert route in ancestors(head, by_id)

    (publish,) = [s for s in finished if s.name == "apply_async/s3drive.inspect"]
    assert publish.kind is SpanKind.PRODUCER
    assert publish.context.trace_id == trace_id and route in ancestors(publish, by_id)

    (run,) = [s for s in finished if s.name == "run/s3drive.inspect"]
    assert run.kind is SpanKind.CONSUMER
    assert run.context.trace_id == trace_id
    assert run.parent.span_id == publish.context.span_id
    # The worker's own S3 reads and queries are in the same trace, under its run span.
    worker_spans = [s for s in finished if run in ancestors(s, by_id)]
    assert any(s.attributes.get("rpc.service") == "S3" for s in worker_spans), [s.name for s in worker_spans]
    assert any(s in queries for s in worker_spans)


def _run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "S3DRIVE_"))}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**clean, **env},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


APP_SCRIPT = """
    import sys
    from s3drive import create_app

    app = create_app({"TESTING": True, "S3_BUCKET": "traces", "BROKER_URL": "memory://",
                      "DATABASE_URL": "sqlite:///%s"})
    assert app.test_client().get("/api/files/limits").status_code == 200
    import time
    from celery.signals import before_task_publish

    sending = []  # connected after the instrumentation's receiver: runs once its publish span started
    before_task_publish.connect(lambda **kwargs: sending.append(time.time_ns()), weak=False)
    with app.app_context():  # a web process sends tasks by name, as confirm does
        app.extensions["celery"].send_task("s3drive.inspect", args=[[]])
    print("sending:", sending)  # a JSON list
    loaded = sorted(name for name in sys.modules if name.startswith("opentelemetry"))
    print("loaded:", len(loaded), loaded[:5])
"""


def test_without_a_collector_nothing_of_opentelemetry_is_imported(tmp_path):
    # A process of its own: this one has imported OpenTelemetry for the other tests.
    done = _run_python(APP_SCRIPT % (tmp_path / "db.sqlite3"), {})
    assert done.returncode == 0, done.stderr
    assert "loaded: 0 []" in done.stdout, done.stdout


class _Collector(BaseHTTPRequestHandler):
    requests: list[tuple[str, ExportTraceServiceRequest]]

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        export = ExportTraceServiceRequest()
        export.ParseFromString(body)
        self.server.received.append((self.path, export))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_with_a_collector_the_spans_are_posted_to_it_over_otlp_http(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{server.server_port}",
            "OTEL_SERVICE_NAME": "s3drive-traces-test",
        }
        done = _run_python(APP_SCRIPT % (tmp_path / "db.sqlite3"), env)
        assert done.returncode == 0, done.stderr
        assert "loaded: 0" not in done.stdout
        # The process exited: the SDK exported what its batch held on the way out.
        assert server.received, done.stderr
    finally:
        server.shutdown()
        server.server_close()
    paths = {path for path, _ in server.received}
    assert paths == {"/v1/traces"}
    spans, services = {}, set()
    for _, export in server.received:
        for resource_spans in export.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            services.add(attributes["service.name"])
            for scope_spans in resource_spans.scope_spans:
                spans.update((span.name, span) for span in scope_spans.spans)
    assert services == {"s3drive-traces-test"}
    assert "GET /api/files/limits" in spans, list(spans)
    # The publish span lasts until the message is sent (the publisher knows its task by name).
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("sending:")]
    (sending,) = json.loads(line.removeprefix("sending:"))
    assert spans["apply_async/s3drive.inspect"].end_time_unix_nano > sending


def test_a_share_links_token_and_an_uppy_session_token_stay_out_of_spans(make_app, spans):
    app = make_app()
    tracing.init_app(app, exporter=spans)
    client = app.test_client()
    auth = register_and_login(client, "tracy")
    spans.clear()
    session = client.post("/api/uppy/session", headers=auth).get_json()["companion_endpoint"].rsplit("/", 1)[1]
    client.get(f"/uppy/{session}/s3/params?filename=a.txt&type=text/plain")
    share_token = "s" * 43
    client.get(f"/s/{share_token}?download=1")
    client.post(f"/s/{share_token}", json={"password": "x"})
    served = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert len(served) == 4, [s.name for s in served]
    for span in served:
        text = json.dumps(dict(span.attributes)) + span.name
        assert session not in text and share_token not in text, span.attributes
    assert any("/s/[token]" in json.dumps(dict(s.attributes)) for s in served)


def test_a_log_line_written_under_a_span_names_its_trace(spans):
    from opentelemetry.sdk.trace import TracerProvider

    from s3drive.logs import AddContext

    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Keep()
    handler.addFilter(AddContext())
    logger = logging.getLogger("test_tracing.log_line")
    logger.setLevel(logging.INFO)
    logger.disabled = False
    logger.addHandler(handler)
    try:
        with TracerProvider().get_tracer(__name__).start_as_current_span("work") as span:
            logger.warning("inside")
        logger.warning("outside")
    finally:
        logger.removeHandler(handler)
    inside, outside = records
    assert inside.trace_id == format(span.get_span_context().trace_id, "032x")
    assert inside.span_id == format(span.get_span_context().span_id, "016x")
    assert not hasattr(outside, "trace_id")
