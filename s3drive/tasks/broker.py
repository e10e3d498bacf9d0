"""Upkeep of the embedded broker (kombu's SQLAlchemy transport on a SQLite file).

That transport marks a delivered message invisible and never deletes it: left alone, the file
grows by every task ever run. The sweep task deletes what was delivered more than a day ago (a
message delivered that long ago and never acknowledged belonged to a worker that died: what it
carried is recovered from the database, e.g. inspections by their lease, not from the broker).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import create_engine, text
from sqlalchemy import inspect as inspect_database

DELIVERED_KEPT = timedelta(days=1)
EMBEDDED_PREFIX = "sqla+"


def prune_delivered(broker_url: str, now: datetime | None = None) -> int:
    """Delete messages the embedded broker delivered more than DELIVERED_KEPT ago; return how many."""
    if not broker_url.startswith(EMBEDDED_PREFIX):
        return 0  # Redis deletes what is acknowledged
    engine = create_engine(broker_url.removeprefix(EMBEDDED_PREFIX))
    try:
        if not inspect_database(engine).has_table("kombu_message"):
            return 0
        # kombu stamps a message (local, naive time) when it marks it delivered.
        cutoff = (now or datetime.now()) - DELIVERED_KEPT
        with engine.begin() as connection:
            deleted = connection.execute(
                text("DELETE FROM kombu_message WHERE visible = :delivered AND timestamp < :cutoff"),
                {"delivered": False, "cutoff": cutoff},
            )
            return deleted.rowcount
    finally:
        engine.dispose()
