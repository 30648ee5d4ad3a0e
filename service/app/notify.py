"""Waking long-poll requests when a verdict lands — in this process or in another one.

In-process verdicts set an event directly. Verdicts written by other processes arrive by
PostgreSQL LISTEN/NOTIFY (sent inside the verdict's transaction, so only after commit). A short
status re-check while anyone is waiting covers SQLite (no NOTIFY) and a listener reconnecting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable

from service.store.connector import Database
from service.store.queries import verifications as verification_store

log = logging.getLogger("service.app.notify")
CHANNEL = "verdicts"


class Notifier:
    def __init__(self, db: Database, *, recheck_seconds: float | None = None) -> None:
        self.db = db
        self.recheck_seconds = recheck_seconds or (0.1 if db.dialect == "sqlite" else 1.0)
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self.listening = asyncio.Event()  # set once other processes' verdicts can reach us (never on SQLite)

    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._recheck_loop(), name="notify-recheck"))
        # Anything resolved while the listener was not connected is caught by the recheck loop.
        listen = self.db.listen(CHANNEL, lambda payload: self.resolved([payload]), on_listening=self.listening.set)
        self._tasks.append(asyncio.create_task(listen, name="notify-listen"))

    async def stop(self) -> None:
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    def resolved(self, ids: Iterable[str]) -> None:
        """Wake everyone waiting for these verifications."""
        for verification_id in ids:
            for event in self._waiters.get(verification_id, ()):
                event.set()

    async def wait(
        self,
        verification_id: str,
        timeout: float,
        *,
        decided: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        """Return when the verification may have a verdict, or after `timeout` seconds.

        `decided` is asked once the waiter is registered, so a verdict that landed just before
        cannot slip between the caller's last read and the wait.
        """
        event = asyncio.Event()
        self._waiters[verification_id].add(event)
        try:
            if decided is not None and await decided():
                return
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(event.wait(), timeout)
        finally:
            waiters = self._waiters.get(verification_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[verification_id]

    async def _recheck_loop(self) -> None:
        while not self._stopping.is_set():
            await asyncio.sleep(self.recheck_seconds)
            ids = list(self._waiters)
            if not ids:
                continue
            try:
                async with self.db.read() as tx:
                    found = await verification_store.statuses(tx, ids)
            except Exception as exc:  # the database may be restarting: try again next round
                log.debug("verdict recheck failed", extra={"event": "notify_recheck_failed", "error": type(exc).__name__})
                continue
            self.resolved(vid for vid, status in found.items() if status != "pending")
