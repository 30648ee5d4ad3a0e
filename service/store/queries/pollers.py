"""One heartbeat row per poller process, so operators (and /status) see who is alive."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from service.store.connector import Tx, sql

HEARTBEAT = sql(
    """
    INSERT INTO pollers (id, hostname, pid, started_at, heartbeat_at, ticks)
    VALUES (:id, :hostname, :pid, :now, :now, :ticks)
    ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, ticks = excluded.ticks, stopped_at = NULL
    """
)
STOPPED = sql("UPDATE pollers SET stopped_at = :now, heartbeat_at = :now WHERE id = :id")
GOODBYE = sql("DELETE FROM pollers WHERE id = :id")
LIST = sql("SELECT id, hostname, pid, started_at, heartbeat_at, stopped_at, ticks FROM pollers ORDER BY started_at DESC, id")
PRUNE = sql("DELETE FROM pollers WHERE heartbeat_at < :before")


async def heartbeat(tx: Tx, poller_id: str, *, hostname: str, pid: int, ticks: int, now: datetime) -> None:
    await tx.execute(HEARTBEAT, id=poller_id, hostname=hostname, pid=pid, ticks=ticks, now=now)


async def stopped(tx: Tx, poller_id: str, now: datetime) -> None:
    await tx.execute(STOPPED, id=poller_id, now=now)


async def goodbye(tx: Tx, poller_id: str) -> None:
    """A poller stopping cleanly leaves the list: /status then counts only pollers that may still run."""
    await tx.execute(GOODBYE, id=poller_id)


async def list_all(tx: Tx) -> list[dict[str, Any]]:
    return await tx.fetch_all(LIST)


async def prune(tx: Tx, before: datetime) -> int:
    """Forget pollers silent since `before` (restarted processes get new ids)."""
    return await tx.execute(PRUNE, before=before)
