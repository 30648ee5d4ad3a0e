"""SQLite WAL checkpoints off the request path.

By default SQLite checkpoints inside the commit that pushes the WAL past 1,000 pages: about once a
second at 100 webhooks/s, and that commit's caller waits for the copy into the database file and
its fsync, longer as the file grows. Our connections turn that off (`wal_autocheckpoint=0`) and
this task checkpoints instead, from its own connection on its own thread, with PASSIVE checkpoints
that neither wait for nor block readers and writers. Durability is untouched: a commit is on disk
once the WAL is synced (synchronous=FULL), and the checkpoint syncs the WAL before copying it and
the database file after.

A writer starts the WAL over only when everything in it was copied (and no reader still uses it).
Commits that land while a checkpoint copies would keep that from ever happening under steady
traffic, so a round chases them with a few more (short) PASSIVE checkpoints until one sees none. If the WAL still
grows past `limit_frames` frames (heavy traffic, a long reader), a TRUNCATE checkpoint waits (at
most `busy_ms`) for readers and writers and empties the file: a rare short pause instead of a WAL
without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aiosqlite

log = logging.getLogger("service.store.sqlite")

CHECKPOINT_EVERY = 1.0  # seconds
WAL_LIMIT_FRAMES = 16_384  # 64 MB of 4 kB pages
CHASE = 4  # further PASSIVE rounds for commits that landed during one


class Checkpointer:
    """Checkpoints one SQLite database's WAL every `interval` seconds until stopped."""

    def __init__(self, path: str, *, interval: float = CHECKPOINT_EVERY, limit_frames: int = WAL_LIMIT_FRAMES, busy_ms: int = 2000) -> None:
        self.path = path
        self.interval = interval
        self.limit_frames = limit_frames
        self.busy_ms = busy_ms
        self.checkpoints = 0
        self.truncations = 0
        self._connection: Any = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self, *, timer: bool = True) -> None:
        """Open the checkpoint connection; with `timer`, checkpoint every `interval` seconds."""
        self._connection = await aiosqlite.connect(self.path, isolation_level=None)
        for pragma in ("PRAGMA synchronous=FULL", f"PRAGMA busy_timeout={self.busy_ms}", "PRAGMA wal_autocheckpoint=0"):
            await self._connection.execute(pragma)
        if timer:
            self._task = asyncio.create_task(self._run(), name="sqlite-checkpoint")

    async def checkpoint(self) -> tuple[int, int]:
        """One round: PASSIVE, then TRUNCATE if the WAL is still too long; answer (frames in WAL, frames copied)."""
        busy, frames, copied = await self._pragma("PASSIVE")
        for _ in range(CHASE):  # until a round saw no commit land while it copied (an idle round costs no I/O)
            busy, seen, copied = await self._pragma("PASSIVE")
            if busy or seen == frames:
                break
            frames = seen
        self.checkpoints += 1
        if frames > self.limit_frames:
            busy, after, copied_after = await self._pragma("TRUNCATE")
            if busy:  # readers or a writer held on for busy_ms: the next round tries again
                log.warning("SQLite WAL over its limit and busy", extra={"event": "sqlite_wal_busy", "frames": frames})
            else:
                self.truncations += 1
                log.info("SQLite WAL truncated", extra={"event": "sqlite_wal_truncated", "frames": frames})
                frames, copied = after, copied_after
        return frames, copied

    async def _pragma(self, mode: str) -> tuple[int, int, int]:
        async with self._connection.execute(f"PRAGMA wal_checkpoint({mode})") as cursor:
            row = await cursor.fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    async def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval)
            if self._stop.is_set():
                return
            try:
                await self.checkpoint()
            except Exception as exc:  # the next round tries again; the database may be busy or away
                log.warning("SQLite checkpoint failed", extra={"event": "sqlite_checkpoint_failed", "error": type(exc).__name__})

    async def stop(self) -> None:
        """Finish the checkpoint in progress (if any) and close the connection."""
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
            self._connection = None
