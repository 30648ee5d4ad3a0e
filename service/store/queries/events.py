"""Raw webhook events: stored once each (by body hash) for audit and replay, then pruned."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from service.store.connector import Query, Tx, sql

_EVENT_COLUMNS = ("account", "body_sha256", "trigger_event", "booking_uid", "event_created_at", "received_at", "body", "unmatched")
_INSERT_EVENTS: dict[int, Query] = {}
EVENTS_PER_STATEMENT = 200


def _insert_events_query(count: int) -> Query:
    """Insert `count` events in one statement; RETURNING names the ones that were new."""
    query = _INSERT_EVENTS.get(count)
    if query is None:
        rows = ", ".join("(" + ", ".join(f":{c}_{i}" for c in _EVENT_COLUMNS) + ")" for i in range(count))
        query = sql(
            f"INSERT INTO webhook_events ({', '.join(_EVENT_COLUMNS)}) VALUES {rows} "
            "ON CONFLICT (account, body_sha256) DO NOTHING RETURNING seq, account, body_sha256"
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


# Stored but not yet matched (oldest first), and the claim that takes them for matching: an event
# whose marker another matcher cleared meanwhile is not returned, so each is matched once.
UNMATCHED = sql(
    "SELECT seq, account, received_at, body FROM webhook_events "
    "WHERE unmatched = 1 AND seq > :after AND received_at <= :before ORDER BY seq LIMIT :limit"
)
# Through the small index of unmatched events: SQLite would otherwise search the (account,
# received_at) index and read every event the account ever had, bodies included, to find the few
# unmatched ones (an intake's cost grew with the history).
UNMATCHED_OF = sql(
    "SELECT seq, account, received_at, body FROM webhook_events INDEXED BY webhook_events_unmatched "
    "WHERE unmatched = 1 AND account = :account ORDER BY seq LIMIT :limit",
    postgresql="SELECT seq, account, received_at, body FROM webhook_events WHERE unmatched = 1 AND account = :account ORDER BY seq LIMIT :limit",
)
CLAIM_UNMATCHED = sql(
    "UPDATE webhook_events SET unmatched = 0 WHERE unmatched = 1 AND seq IN (SELECT value FROM json_each(:seqs)) RETURNING seq",
    postgresql="UPDATE webhook_events SET unmatched = 0 WHERE unmatched = 1 AND seq = ANY(:seqs) RETURNING seq",
)


async def insert_events(tx: Tx, rows: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    """Store raw webhook events once each; answer the new ones' (account, body hash) with their seq.

    One statement per EVENTS_PER_STATEMENT events (a batch is one round trip to the driver, not one per event).
    """
    new: dict[tuple[str, str], int] = {}
    for start in range(0, len(rows), EVENTS_PER_STATEMENT):
        chunk = rows[start : start + EVENTS_PER_STATEMENT]
        params = {f"{c}_{i}": row[c] for i, row in enumerate(chunk) for c in _EVENT_COLUMNS}
        for r in await tx.fetch_all(_insert_events_query(len(chunk)), **params):
            new[(r["account"], r["body_sha256"])] = int(r["seq"])
    return new


async def unmatched(tx: Tx, before: datetime, *, after: int = 0, limit: int = 500) -> list[dict[str, Any]]:
    """Events stored before `before` and still waiting to be matched, oldest first."""
    return await tx.fetch_all(UNMATCHED, after=after, before=before, limit=limit)


async def unmatched_of(tx: Tx, account: str, *, limit: int = 1000) -> list[dict[str, Any]]:
    """One account's events still waiting to be matched, oldest first, however recent."""
    return await tx.fetch_all(UNMATCHED_OF, account=account, limit=limit)


async def claim_unmatched(tx: Tx, seqs: list[int]) -> set[int]:
    """Clear the marker of these events; answer those this call cleared (the others are someone else's)."""
    if not seqs:
        return set()
    return {int(r["seq"]) for r in await tx.fetch_all(CLAIM_UNMATCHED, seqs=sorted(set(seqs)))}


async def prune_events(tx: Tx, before: datetime, limit: int = 5000) -> int:
    """Forget raw webhook bodies received before `before` (at most `limit` per call)."""
    return await tx.execute(PRUNE_EVENTS, before=before, limit=limit)
