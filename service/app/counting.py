"""Adding a process' tally to the counters every process shares (what /status and /metrics report)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from service.core.tallies import Tally
from service.store.connector import Database
from service.store.queries import counters as counter_store

log = logging.getLogger("service.app.counting")
FLUSH_EVERY = 5.0  # seconds


async def flush(db: Database, tally: Tally) -> None:
    """Write what the tally counted; on failure the counts stay in the tally for the next try."""
    if not tally:
        return
    counts = tally.take()
    try:
        async with db.transaction() as tx:
            for (name, label), by in sorted(counts.items()):
                await counter_store.bump(tx, name, label, by)
    except BaseException:
        tally.give_back(counts)
        raise


class Flusher:
    """Flushes a tally every `interval` seconds, and once more when stopped."""

    def __init__(self, db: Database, tally: Tally, *, interval: float = FLUSH_EVERY) -> None:
        self.db = db
        self.tally = tally
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="counters-flush")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await flush(self.db, self.tally)
            except Exception as exc:  # the database may be away; the counts wait in the tally
                log.warning("counters not written yet", extra={"event": "counters_flush_failed", "error": type(exc).__name__})

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await flush(self.db, self.tally)
        except Exception as exc:
            log.warning("counters lost at shutdown", extra={"event": "counters_flush_failed", "error": type(exc).__name__})
