"""The SQLite connector: one writer connection, a small pool of readers, WAL checkpoints beside them.

SQLite runs one writer at a time anyway, so the process keeps one writer connection (behind a
lock) and a few reader connections (WAL readers never wait for the writer nor for each other),
instead of a new connection per statement.

Inside a write transaction the statements run on the event loop's own thread. aiosqlite sends
every call to the connection's thread and back (~55 µs each, more when the loop is busy), and a
transaction that records a failure or matches webhooks runs 10–30 statements. Once BEGIN IMMEDIATE
holds the write lock (taken on the driver thread: another process' writer may hold it for a while),
nothing inside the transaction waits for another connection; COMMIT, whose fsync does wait for the
disk, goes back to the driver thread. Reads keep to the driver threads: a long one must not stop the
loop.

Values come back typed by the schema, never by column names: columns are declared `UTCTIME TEXT`
and `BOOL INTEGER` (the first word names a sqlite3 converter, the rest keeps SQLite's type
affinity), and a computed column names its converter in its alias: `MIN(x) AS "oldest_at [UTCTIME]"`.
Datetimes are written as fixed-width UTC text, so text order is time order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any

import aiosqlite
import orjson

from service.errors import DatabaseUnavailable, UniqueViolation
from service.store.checkpointer import Checkpointer
from service.store.connector import Database, Query, Tx, to_the_end
from service.store.files import prepare_sqlite_file

log = logging.getLogger("service.store.sqlite")
OPTIMIZE_EVERY = 3600.0  # seconds between PRAGMA optimize runs on a long-lived connection
READERS = 3
_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA busy_timeout=15000",
    "PRAGMA foreign_keys=ON",
    "PRAGMA wal_autocheckpoint=0",  # the Checkpointer's job, off the commit path
    # The default 2 MiB page cache spills a write transaction's pages to the WAL before its commit
    # and re-reads hot index pages from the file; 64 MiB per connection keeps a burst's working set.
    "PRAGMA cache_size=-65536",
)
# SQLite result codes (primary, the low byte) that mean "not usable right now", not a bug in our SQL:
# busy, locked, out of memory, read-only, I/O error, disk full, cannot open, lock protocol.
_UNAVAILABLE = frozenset({5, 6, 7, 8, 10, 13, 14, 15})


# Converters are looked up by the first word of a column's declared type (or its `[name]` alias).
sqlite3.register_converter("UTCTIME", lambda raw: datetime.fromisoformat(raw.decode()))
sqlite3.register_converter("BOOL", lambda raw: bool(int(raw)))

_PLAIN = (str, int, float, type(None))


def to_sqlite(value: Any) -> Any:
    """A parameter as SQLite stores it: datetimes as fixed-width UTC text, booleans 0/1, lists as JSON."""
    if type(value) in _PLAIN:  # the common case first: this runs for every parameter of every row
        return value
    if isinstance(value, datetime):
        # Fixed width, so text order is time order: 2026-12-01T09:00:00.000000Z (isoformat is C, strftime is slow).
        if value.tzinfo is not timezone.utc:
            value = value.astimezone(timezone.utc)
        return value.isoformat(timespec="microseconds")[:-6] + "Z"
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (list, tuple)):
        # Lists bind as JSON text and are read back with json_each(:param) in SQLite queries
        # (PostgreSQL spells the same query `= ANY(:param)` with a real array).
        return orjson.dumps(_json_ready(value)).decode()
    return value


def _json_ready(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    if isinstance(value, datetime):
        return to_sqlite(value)
    return value


class SqliteTx(Tx):
    """Statements on one aiosqlite connection."""

    dialect = "sqlite"

    def __init__(self, raw: aiosqlite.Connection) -> None:
        self.raw = raw
        # Inside a write transaction the statements run right here, on the event loop's thread (see
        # SqliteDatabase.transaction): no trip to the driver thread and back for each of them.
        self.inline = False

    def _bind(self, query: Query, params: Mapping[str, Any]) -> tuple[str, list[Any]]:
        text, args = super()._bind(query, params)
        plain = _PLAIN  # most arguments are plain: no call for them (this runs for every parameter of every row)
        return text, [arg if type(arg) in plain else to_sqlite(arg) for arg in args]

    async def _fetch(self, text: str, args: list[Any]) -> list[dict[str, Any]]:
        # Inline, or one trip to aiosqlite's thread (execute + fetch); rows are sqlite3.Row, typed by the converters.
        rows = self.raw._conn.execute(text, args).fetchall() if self.inline else await self.raw.execute_fetchall(text, args)
        if not rows:
            return []
        keys = rows[0].keys()
        return [dict(zip(keys, row)) for row in rows]

    async def _run(self, text: str, args: list[Any]) -> int:
        if self.inline:
            return int(self.raw._conn.execute(text, args).rowcount)
        cursor = await self.raw.execute(text, args)
        return int(cursor.rowcount)  # no close(): one thread trip less; nothing is left open

    async def _run_many(self, text: str, args: list[list[Any]]) -> None:
        if self.inline:
            self.raw._conn.executemany(text, args)
            return
        await self.raw.executemany(text, args)

    @staticmethod
    def translate(exc: BaseException) -> BaseException:
        return SqliteDatabase.translate(exc)

    async def lock_account(self, account: str) -> None:
        """Nothing to do: SQLite already serialises every writer."""

    async def lock_accounts(self, accounts: Iterable[str], *, commit_waits: bool = True) -> None:
        """Nothing to do: SQLite already serialises every writer (and a COMMIT's fsync is a fraction of a millisecond)."""

    async def notify(self, channel: str, payload: str) -> None:
        """Nothing to do: one process owns a SQLite database; its waiters are told directly."""


class SqliteDatabase(Database):
    """A SQLite file: `transaction()` on the one writer, `read()` on a free reader."""

    dialect = "sqlite"

    def __init__(self, url: str, *, readers: int = READERS, checkpoints: bool = True) -> None:
        self.url = url
        self.path = url.split(":///", 1)[1]
        self.readers = readers
        self.checkpoints = checkpoints  # run the Checkpointer (False only for tests that drive one themselves)
        self._connections: list[aiosqlite.Connection] = []
        self._writer: SqliteTx | None = None
        self._idle: asyncio.Queue[SqliteTx] | None = None
        self._write_lock = asyncio.Lock()
        self._checkpointer: Checkpointer | None = None
        self._housekeeping: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        prepare_sqlite_file(self.path)  # owner-only directory and file: it holds every account's secrets
        try:
            self._writer = SqliteTx(await self._open())
            self._idle = asyncio.Queue()
            for _ in range(self.readers):
                self._idle.put_nowait(SqliteTx(await self._open()))
            if self.checkpoints:
                self._checkpointer = Checkpointer(self.path)
                await self._checkpointer.start()
        except Exception as exc:
            await self.disconnect()  # every open connection has a thread that would keep the process alive
            raise self.translate(exc) from exc
        self._housekeeping = asyncio.create_task(self._optimize_hourly(), name="sqlite-optimize")

    async def _open(self) -> aiosqlite.Connection:
        raw = await aiosqlite.connect(
            self.path, isolation_level=None, detect_types=sqlite3.PARSE_DECLTYPES | sqlite3.PARSE_COLNAMES, check_same_thread=False
        )
        self._connections.append(raw)
        raw.row_factory = sqlite3.Row
        for pragma in _PRAGMAS:
            await (await raw.execute(pragma)).close()
        return raw

    async def disconnect(self) -> None:
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping
            self._housekeeping = None
        if self._checkpointer is not None:
            await self._checkpointer.stop()
            self._checkpointer = None
        for raw in self._connections:
            with contextlib.suppress(Exception):  # closing a broken connection must not hide the real error
                await raw.close()
        self._connections.clear()
        self._writer = self._idle = None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        assert self._writer is not None, "database not connected"
        async with self._write_lock:
            tx = self._writer
            await _exec(tx.raw, "BEGIN IMMEDIATE")  # may wait for another process' writer: on the driver thread
            tx.inline = True
            try:
                yield tx
            except BaseException:
                tx.inline = False
                await to_the_end(_exec(tx.raw, "ROLLBACK"))
                raise
            else:
                tx.inline = False
                await _commit(tx.raw)  # the fsync: on the driver thread

    @asynccontextmanager
    async def schema_transaction(self) -> AsyncIterator[Tx]:
        """A write transaction with foreign keys checked once, before COMMIT, instead of per statement.

        Rebuilding a table others reference (SQLite's way to change a column's type) drops and
        renames it; enforcement must be off meanwhile, and it can only be switched outside a
        transaction.
        """
        assert self._writer is not None, "database not connected"
        async with self._write_lock:
            raw = self._writer.raw
            await _exec(raw, "PRAGMA foreign_keys=OFF")
            try:
                await _exec(raw, "BEGIN IMMEDIATE")
                try:
                    yield self._writer
                    broken = await raw.execute_fetchall("PRAGMA foreign_key_check")
                    if broken:
                        raise RuntimeError(f"migration broke foreign keys: {[tuple(row) for row in broken][:5]}")
                except BaseException:
                    await to_the_end(_exec(raw, "ROLLBACK"))
                    raise
                await _commit(raw)
            finally:
                await to_the_end(_exec(raw, "PRAGMA foreign_keys=ON"))

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Tx]:
        idle = self._idle
        assert idle is not None, "database not connected"
        tx = await idle.get()
        try:
            await _exec(tx.raw, "BEGIN")
            try:
                yield tx
            finally:
                await _commit(tx.raw)
        finally:
            idle.put_nowait(tx)

    @asynccontextmanager
    async def session_lock(self, key: int) -> AsyncIterator[None]:
        """Nothing to hold: every write transaction starts with BEGIN IMMEDIATE, one writer at a time."""
        yield

    async def listen(self, channel: str, on_notify: Callable[[str], None], *, on_listening: Callable[[], None] | None = None) -> None:
        """Returns at once: no other process writes this file's verdicts, so none will notify."""

    async def optimize(self, *, full: bool = False) -> None:
        if self._writer is None:
            return
        async with self._write_lock:
            raw = self._writer.raw
            # ANALYZE samples about this many rows per index: a few ms, however large the tables grow.
            await _exec(raw, "PRAGMA analysis_limit=400")
            await _exec(raw, "ANALYZE" if full else "PRAGMA optimize")

    async def _optimize_hourly(self) -> None:
        while True:
            await asyncio.sleep(OPTIMIZE_EVERY)
            try:
                await self.optimize()
            except Exception as exc:  # statistics can wait for the next hour
                log.warning("SQLite optimize failed", extra={"event": "sqlite_optimize_failed", "error": type(exc).__name__})

    @staticmethod
    def translate(exc: BaseException) -> BaseException:
        if isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc):
            return UniqueViolation(str(exc))
        if isinstance(exc, sqlite3.OperationalError) and _unavailable(exc):
            return DatabaseUnavailable(type(exc).__name__)
        return exc


def _unavailable(exc: sqlite3.OperationalError) -> bool:
    """Busy, locked, I/O, full, read-only, cannot open: the database, not the statement, is the trouble."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:  # raised without a result code: nothing says our SQL is wrong
        return True
    return (code & 0xFF) in _UNAVAILABLE


async def _commit(raw: aiosqlite.Connection) -> None:
    """COMMIT; when it fails (busy, I/O error, disk full, a deferred constraint) roll back.

    A failed COMMIT can leave the transaction open, and this connection serves every later
    transaction of the process: left inside one, each of them would fail until a restart.
    """
    try:
        await to_the_end(_exec(raw, "COMMIT"))
    except BaseException:
        if raw.in_transaction:
            with contextlib.suppress(Exception):
                await to_the_end(_exec(raw, "ROLLBACK"))
        raise


async def _exec(raw: aiosqlite.Connection, statement: str) -> None:
    try:
        await raw.execute(statement)
    except Exception as exc:
        raise SqliteDatabase.translate(exc) from exc
