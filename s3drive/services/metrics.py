"""Prometheus metrics: the store's state, read from the database at scrape time.

Every gauge comes from the database when /metrics is scraped, so any worker of any process
answers the same (no per-process counters to aggregate). Process metrics (CPU, memory, open
files) are those of the worker that answers.
"""

from __future__ import annotations

from collections.abc import Iterator

from flask import current_app
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from ..inspect.base import REASONS
from ..models import InspectionState
from . import admin, inspection

EXTENSION_KEY = "s3drive.metrics_registry"


class StoreCollector(Collector):
    """Users, files and bytes by status, quota use, and uploads the sweeper has yet to settle."""

    def collect(self) -> Iterator[Metric]:
        stats = admin.stats()
        users = GaugeMetricFamily("s3drive_users", "Accounts by state.", labels=["state"])
        for state in ("active", "disabled"):
            users.add_metric([state], getattr(stats.users, state))
        yield users
        files = GaugeMetricFamily("s3drive_files", "File records by status.", labels=["status"])
        size = GaugeMetricFamily(
            "s3drive_file_bytes", "Bytes of file records by status (pending: reserved).", labels=["status"]
        )
        for status, totals in stats.files.items():
            files.add_metric([status], totals.count)
            size.add_metric([status], totals.bytes)
        yield files
        yield size
        yield GaugeMetricFamily("s3drive_used_bytes", "Bytes of complete files, all users.", value=stats.used_bytes)
        yield GaugeMetricFamily(
            "s3drive_reserved_bytes", "Bytes held by uploads whose URLs are live.", value=stats.reserved_bytes
        )
        yield GaugeMetricFamily("s3drive_quota_bytes", "Sum of all users' quotas.", value=stats.quota_bytes)
        yield GaugeMetricFamily(
            "s3drive_lapsed_uploads",
            "Uploads whose URLs expired unconfirmed: the sweeper's backlog.",
            value=stats.lapsed_reservations,
        )
        by_state, by_reason, stale = inspection.counts()
        states = GaugeMetricFamily("s3drive_inspections", "Content inspections by state.", labels=["state"])
        for state in InspectionState:
            states.add_metric([state.value], by_state.get(state.value, 0))
        yield states
        reasons = GaugeMetricFamily(
            "s3drive_inspection_rejections", "Files rejected by inspection, by reason code.", labels=["reason"]
        )
        for code in sorted(REASONS | set(by_reason)):
            reasons.add_metric([code], by_reason.get(code, 0))
        yield reasons
        yield GaugeMetricFamily(
            "s3drive_inspections_stale",
            "Pending inspections no worker holds past the lease: workers down, or the broker lost messages.",
            value=stale,
        )


def render() -> bytes:
    """Return the metrics in Prometheus' text format."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    registry = app.extensions.get(EXTENSION_KEY)
    if registry is None:
        registry = CollectorRegistry()
        registry.register(StoreCollector())
        registry.register(ProcessCollector(registry=None))
        registry = app.extensions.setdefault(EXTENSION_KEY, registry)
    return generate_latest(registry)
