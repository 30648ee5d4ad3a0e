"""Raw webhook events: stored once each (by body hash) for audit and replay, then pruned."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from service.store.connector import Query, Tx, sql

_EVENT_COLUMNS = ("account", "body_sha256", "trigger_event", "booking_uid", "event_created_at", "received_at", "body")
_INSERT_EVENTS: dict[int, Query] = {}


def _insert_events_query(count: int) -> Query:
    """Insert `count` events in one statement; RETURNING names the ones that were new."""
    query = _INSERT_EVENTS.get(count)
    if query is None:
        rows = ", ".join("(" + ", ".join(f":{c}_{i}" for c in _EVENT_COLUMNS) + ")" for i in range(count))
        query = sql(
            f"INSERT INTO webhook_events ({', '.join(_EVENT_COLUMNS)}) VALUES {rows} "
            "ON CONFLICT (account, body_sha256) DO NOTHING RETURNING account, body_sha256"
        )
        _INSERT_EVENTS[count] = query
    return query


# Raw webhook bodies are kept for audit and replay for a while, then dropped in slices (what they
# taught us stays in booking_observations).
PRUNE_EVENTS = sql(
    "DELETE FROM webhook_events WHERE seq IN "
    "(SELECT seq FROM webhook_events WHERE received_at < :before ORDER BY received_at LIMIT :limit)",
    # ARRAY(): the slice is collected first and deleted by key, never joined against the whole table.
    postgresql="DELETE FROM webhook_events WHERE seq = ANY(ARRAY("
    "SELECT seq FROM webhook_events WHERE received_at < :before ORDER BY received_at LIMIT :limit))",
)


async def insert_events(tx: Tx, rows: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """Store raw webhook events once each; answer the (account, body hash) pairs that were new."""
    new: set[tuple[str, str]] = set()
    for start in range(0, len(rows), 200):
        chunk = rows[start : start + 200]
        params = {f"{c}_{i}": row[c] for i, row in enumerate(chunk) for c in _EVENT_COLUMNS}
        new |= {(r["account"], r["body_sha256"]) for r in await tx.fetch_all(_insert_events_query(len(chunk)), **params)}
    return new


async def prune_events(tx: Tx, before: datetime, limit: int = 5000) -> int:
    """Forget raw webhook bodies received before `before` (at most `limit` per call)."""
    return await tx.execute(PRUNE_EVENTS, before=before, limit=limit)
