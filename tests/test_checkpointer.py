"""SQLite WAL checkpoints run beside the writers, not inside their commits, and keep the WAL bounded."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

from service.store.checkpointer import Checkpointer
from service.store.connector import Database, sql
from service.store.migrations import migrate

_EVENT = sql(
    "INSERT INTO webhook_events (account, body_sha256, trigger_event, received_at, body) VALUES ('a', :sha, 'BOOKING_CREATED', :at, :body)"
)
_BODY = "x" * 6000  # two pages of WAL per commit, at least


async def _open(path: Path) -> Database:
    db = Database(f"sqlite+aiosqlite:///{path}", checkpoints=False)
    await db.connect()
    await migrate(db)
    return db


async def _write(db: Database, first: int, count: int) -> None:
    for n in range(first, first + count):
        async with db.transaction() as tx:
            await tx.execute(_EVENT, sha=f"{n:064x}", at=datetime(2026, 12, 1, tzinfo=timezone.utc), body=_BODY)


def _wal_bytes(path: Path) -> int:
    return os.path.getsize(f"{path}-wal")


async def test_commits_never_checkpoint_and_the_checkpointer_keeps_the_wal_short(tmp_path: Path) -> None:
    path = tmp_path / "v.sqlite3"
    db = await _open(path)
    checkpointer = Checkpointer(str(path))
    await checkpointer.start(timer=False)
    try:
        await checkpointer.checkpoint()
        await _write(db, 0, 400)
        grown = _wal_bytes(path)
        frames, copied = await checkpointer.checkpoint()
        # No commit checkpointed: SQLite's own default would have started over at 1,000 frames.
        assert frames == copied > 1200
        for round_ in range(10):
            await _write(db, 1000 + 40 * round_, 40)
            last, _ = await checkpointer.checkpoint()
            assert last < frames / 2
        # The writers started the WAL over after each round: the file never grew past its first size.
        assert _wal_bytes(path) <= grown
    finally:
        await checkpointer.stop()
        await db.disconnect()


async def test_a_wal_held_by_a_reader_is_truncated_once_the_reader_lets_go(tmp_path: Path) -> None:
    path = tmp_path / "v.sqlite3"
    db = await _open(path)
    checkpointer = Checkpointer(str(path), limit_frames=100, busy_ms=50)
    await checkpointer.start(timer=False)
    try:
        async with db.read() as tx:
            await tx.fetch_all(sql("SELECT COUNT(*) FROM webhook_events"))  # a snapshot the checkpoint cannot pass
            await _write(db, 0, 100)
            frames, copied = await checkpointer.checkpoint()
            assert frames > 100 and copied < frames and checkpointer.truncations == 0
        await checkpointer.checkpoint()
        assert checkpointer.truncations == 1 and _wal_bytes(path) == 0
    finally:
        await checkpointer.stop()
        await db.disconnect()


async def test_the_checkpointer_stops_with_the_database_and_leaves_no_wal(tmp_path: Path) -> None:
    path = tmp_path / "v.sqlite3"
    db = Database(f"sqlite+aiosqlite:///{path}")
    await db.connect()
    await migrate(db)
    await _write(db, 0, 20)
    checkpointer = db._checkpointer
    assert checkpointer is not None and checkpointer._task is not None and not checkpointer._task.done()
    task = checkpointer._task
    async with db.read() as tx:
        assert await tx.fetch_val(sql("PRAGMA wal_autocheckpoint")) == 0
        assert await tx.fetch_val(sql("PRAGMA synchronous")) == 2  # FULL: a commit is on disk when it returns
    await db.disconnect()
    assert task.done() and not task.cancelled()
    # The last connection to close copies the WAL home and deletes it: none was left open.
    assert not os.path.exists(f"{path}-wal")
