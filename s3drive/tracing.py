"""Traces: OpenTelemetry for Flask, SQLAlchemy, botocore and Celery, off unless a collector is configured.

Tracing is on when OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set and
OTEL_SDK_DISABLED is not `true`. The SDK reads every other standard variable itself: OTEL_SERVICE_NAME
and OTEL_RESOURCE_ATTRIBUTES (the service is `s3drive` unless they name it), OTEL_TRACES_SAMPLER(_ARG),
OTEL_EXPORTER_OTLP_HEADERS / _TIMEOUT / _COMPRESSION / _CERTIFICATE, OTEL_BSP_* for the batching.
Spans go to the collector by OTLP over HTTP (port 4318, path /v1/traces).

When tracing is off, nothing of OpenTelemetry is imported: every import below is inside a function
that only runs when it is on.

One tracer provider per process. What a process instruments once: botocore (every S3 call), Celery
(publishing a task, and running one: the publisher's context travels in the message headers, so a
task's spans join the trace of the request that queued it) and threads (the S3 pool's calls stay
under the request that submitted them). What each app instruments: its Flask requests and its own
database engines (not every engine of the process: the embedded broker's engine polls each second).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from celery.signals import worker_process_init
from flask import Flask

from .logs import redact_target

if TYPE_CHECKING:
    import requests
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

__all__ = ["enabled", "init_app", "after_fork", "shutdown"]

DEFAULT_SERVICE_NAME = "s3drive"
# Probes and scrapes every few seconds would drown the traces that matter.
EXCLUDED_URLS = "/healthz,/readyz,/metrics"


@dataclass
class _Process:
    """What this process installed: its provider, the instrumentors to undo, the exporter's HTTP session."""

    provider: TracerProvider
    instrumentors: list[Any] = field(default_factory=list)
    session: requests.Session | None = None
    apps: list[Flask] = field(default_factory=list)


_process: _Process | None = None


def enabled(environ: os._Environ | dict[str, str] = os.environ) -> bool:
    """Tell whether an OTLP collector is configured (and the SDK not disabled)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return bool(environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def init_app(app: Flask, exporter: SpanExporter | None = None) -> None:
    """Trace this app's requests, queries, S3 calls and tasks, when a collector is configured.

    `exporter` (tests) receives every span at once, whatever the environment says.
    """
    if exporter is None and not enabled():
        return
    process = _start_process()
    if exporter is not None:
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        process.provider.add_span_processor(SimpleSpanProcessor(exporter))
    _instrument_app(app, process)


def after_fork() -> None:
    """In a forked child (Celery's prefork pool, gunicorn with --preload): drop the parent's connections.

    The SDK restarts its batch thread in the child by itself; the exporter's pooled HTTP connections
    are the parent's sockets, which two processes must not share.
    """
    if _process is not None and _process.session is not None:
        _process.session.close()


def shutdown() -> None:
    """Export what is pending, then undo every instrumentation of this process (tests)."""
    global _process
    if _process is None:
        return
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer

    process, _process = _process, None
    for app in process.apps:
        FlaskInstrumentor.uninstrument_app(app)
    EngineTracer.remove_all_event_listeners()
    for instrumentor in process.instrumentors:
        instrumentor.uninstrument()
    process.provider.shutdown()


def _start_process() -> _Process:
    """Create this process's provider and instrument what is process-wide, once."""
    global _process
    if _process is not None:
        return _process
    import requests
    from opentelemetry import trace
    from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.threading import ThreadingInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider

    resource = Resource.create()
    if resource.attributes.get(SERVICE_NAME, "").startswith("unknown_service"):
        # Neither OTEL_SERVICE_NAME nor OTEL_RESOURCE_ATTRIBUTES named the service.
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    provider = TracerProvider(resource=resource)  # the sampler from OTEL_TRACES_SAMPLER
    process = _Process(provider=provider)
    if enabled():
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        # Our own session, so that a forked child can drop the connections it inherited (after_fork).
        process.session = requests.Session()
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(session=process.session)))
        trace.set_tracer_provider(provider)
    for instrumentor in (ThreadingInstrumentor(), BotocoreInstrumentor(), CeleryInstrumentor()):
        instrumentor.instrument(tracer_provider=provider)
        process.instrumentors.append(instrumentor)
    worker_process_init.connect(_after_worker_fork, weak=False)
    _process = process
    return process


def _instrument_app(app: Flask, process: _Process) -> None:
    """Trace this app's requests and its own database engines; let its publishers name their tasks."""
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.metrics import get_meter

    from .extensions import db

    FlaskInstrumentor.instrument_app(
        app, tracer_provider=process.provider, excluded_urls=EXCLUDED_URLS, response_hook=_redact_request
    )
    process.apps.append(app)
    tracer = process.provider.get_tracer("opentelemetry.instrumentation.sqlalchemy")
    # The connection-usage metric EngineTracer wants: a no-op meter, s3drive exports no OTel metrics.
    connections = get_meter(__name__).create_up_down_counter("db.client.connections.usage")
    with app.app_context():
        for engine in db.engines.values():
            EngineTracer(tracer, engine, connections)
    # The Celery instrumentation ends a publish span once the message is sent only for a task registered
    # in this process; a web process sends tasks by name, and its publish spans would end before the
    # send, when the instrumentation drops them (a slow broker would not show). Register the tasks.
    for module in app.extensions["celery"].conf.include:
        importlib.import_module(module)


# The span attributes that may hold the request's path (older and newer HTTP semantic conventions).
PATH_ATTRIBUTES = ("http.target", "http.url", "url.path", "url.full")


def _redact_request(span, status: str, response_headers: list) -> None:
    """Leave Uppy session tokens and share tokens out of a request's span, as out of the access log.

    A response hook: the instrumentation sets the request's attributes after its request hook runs.
    """
    attributes = getattr(span, "attributes", None) or {}
    for key in PATH_ATTRIBUTES:
        value = attributes.get(key)
        if isinstance(value, str):
            hidden = _redact_url(value)
            if hidden != value:
                span.set_attribute(key, hidden)


def _redact_url(value: str) -> str:
    """Return a path or URL with redact_target() applied to its path and query."""
    parts = urlsplit(value)
    if not parts.scheme:
        return redact_target(value)
    target = redact_target(urlunsplit(("", "", parts.path, parts.query, "")))
    return urlunsplit((parts.scheme, parts.netloc, "", "", "")) + target


def _after_worker_fork(**kwargs) -> None:
    after_fork()
