"""Connections and transactions for SQLite (aiosqlite) and PostgreSQL (asyncpg), through `databases`.

`databases` owns the drivers and the PostgreSQL pool. Statements run on the driver connection it
hands out (`raw_connection`) with SQL written once, `:name` parameters, translated per dialect and
cached: SQLAlchemy's per-statement compilation cost more than the statement itself on the webhook
path. SQL text lives in `service/store/`; this module knows how to run it, not what it says.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import asyncpg
import databases

from service.errors import DatabaseUnavailable, UniqueViolation
from service.store.checkpointer import Checkpointer
from service.store.files import prepare_sqlite_file

log = logging.getLogger("service.store.connector")
OPTIMIZE_EVERY = 3600.0  # seconds between PRAGMA optimize runs on a long-lived SQLite connection
_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_][A-Za-z0-9_]*)")
BOOL_COLUMNS = frozenset({"enabled", "staff_required", "active", "time_only_matching"})

_PG_UNAVAILABLE = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.InternalClientError,  # a connection cut mid-operation is left in an unusable state
)
# SQLite result codes (primary, the low byte) that mean "not usable right now", not a bug in our SQL:
# busy, locked, out of memory, read-only, I/O error, disk full, cannot open, lock protocol.
_SQLITE_UNAVAILABLE = frozenset({5, 6, 7, 8, 10, 13, 14, 15})


@dataclass
class Query:
    """One SQL statement with `:name` parameters, optionally spelled differently per dialect."""

    text: str
    postgresql: str | None = None
    _compiled: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict, repr=False)

    def compiled(self, dialect: str) -> tuple[str, tuple[str, ...]]:
        hit = self._compiled.get(dialect)
        if hit is None:
            source = self.postgresql if (dialect == "postgresql" and self.postgresql) else self.text
            names: list[str] = []

            def replace(match: re.Match[str]) -> str:
                name = match.group(1)
                if dialect == "sqlite":
                    names.append(name)
                    return "?"
                if name not in names:
                    names.append(name)
                return f"${names.index(name) + 1}"

            hit = (_PARAM.sub(replace, source), tuple(names))
            self._compiled[dialect] = hit
        return hit


def sql(text: str, *, postgresql: str | None = None) -> Query:
    return Query(text, postgresql)


_PLAIN = (str, int, float, type(None))


def to_sqlite(value: Any) -> Any:
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
        return json.dumps(_json_ready(value))
    return value


def _json_ready(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    if isinstance(value, datetime):
        return to_sqlite(value)
    return value


def from_sqlite(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name.endswith("_at") and isinstance(value, str):
        return datetime.fromisoformat(value)
    if name in BOOL_COLUMNS:
        return bool(value)
    return value


class Tx:
    """Statements inside one unit of work on one driver connection."""

    def __init__(self, dialect: str, raw: Any) -> None:
        self.dialect = dialect
        self.raw = raw

    def _args(self, query: Query, params: Mapping[str, Any]) -> tuple[str, list[Any]]:
        text, names = query.compiled(self.dialect)
        try:
            if self.dialect == "sqlite":
                return text, [to_sqlite(params[name]) for name in names]
            return text, [params[name] for name in names]
        except KeyError as exc:
            raise TypeError(f"missing SQL parameter {exc.args[0]!r}") from None

    async def fetch_all(self, query: Query, **params: Any) -> list[dict[str, Any]]:
        text, args = self._args(query, params)
        try:
            if self.dialect == "sqlite":
                # One trip to aiosqlite's thread (execute + fetch); rows are sqlite3.Row.
                rows = await self.raw.execute_fetchall(text, args)
                if not rows:
                    return []
                keys = rows[0].keys()
                typed = [c for c in keys if c.endswith("_at") or c in BOOL_COLUMNS]
                found = [dict(zip(keys, row)) for row in rows]
                if typed:  # convert only the columns that need it (this runs for every row read)
                    for item in found:
                        for c in typed:
                            item[c] = from_sqlite(c, item[c])
                return found
            return [dict(r) for r in await self.raw.fetch(text, *args)]
        except Exception as exc:
            raise translate(exc) from exc

    async def fetch_one(self, query: Query, **params: Any) -> dict[str, Any] | None:
        rows = await self.fetch_all(query, **params)
        return rows[0] if rows else None

    async def fetch_val(self, query: Query, **params: Any) -> Any:
        row = await self.fetch_one(query, **params)
        return next(iter(row.values())) if row else None

    async def execute(self, query: Query, **params: Any) -> int:
        """Run a statement; answer the number of rows it changed."""
        text, args = self._args(query, params)
        try:
            if self.dialect == "sqlite":
                cursor = await self.raw.execute(text, args)
                return int(cursor.rowcount)  # no close(): one thread trip less; nothing is left open
            status = await self.raw.execute(text, *args)
            tail = status.rsplit(" ", 1)[-1]
            return int(tail) if tail.isdigit() else 0
        except Exception as exc:
            raise translate(exc) from exc

    async def execute_many(self, query: Query, rows: Iterable[Mapping[str, Any]]) -> None:
        rows = list(rows)
        if not rows:
            return
        text, _ = query.compiled(self.dialect)
        args = [self._args(query, row)[1] for row in rows]
        try:
            await self.raw.executemany(text, args)
        except Exception as exc:
            raise translate(exc) from exc

    async def lock_account(self, account: str) -> None:
        """Serialise writers of one account (SQLite already serialises every writer)."""
        if self.dialect == "postgresql":
            await self.execute(_ACCOUNT_LOCK, account=account)

    async def lock_accounts(self, accounts: Iterable[str]) -> None:
        """Lock several accounts in one round trip, in a fixed order (so two batches cannot deadlock)."""
        if self.dialect == "postgresql":
            await self.execute(_ACCOUNT_LOCKS, accounts=sorted(set(accounts)))

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """A nested unit inside the transaction: on error only its own writes are undone."""
        await self.execute(_SAVEPOINT)
        try:
            yield
        except BaseException:
            await self.execute(_ROLLBACK_TO_SAVEPOINT)
            await self.execute(_RELEASE_SAVEPOINT)
            raise
        await self.execute(_RELEASE_SAVEPOINT)

    async def notify(self, channel: str, payload: str) -> None:
        """Tell other processes after commit (PostgreSQL NOTIFY is transactional)."""
        if self.dialect == "postgresql":
            await self.execute(_NOTIFY, channel=channel, payload=payload)


_ACCOUNT_LOCK = sql("SELECT pg_advisory_xact_lock(hashtextextended(:account, 7))")
_ACCOUNT_LOCKS = sql(
    "SELECT pg_advisory_xact_lock(hashtextextended(a, 7)) FROM (SELECT a FROM unnest(CAST(:accounts AS text[])) a ORDER BY a) s"
)
_NOTIFY = sql("SELECT pg_notify(:channel, :payload)")
_SAVEPOINT = sql("SAVEPOINT nested_unit")
_ROLLBACK_TO_SAVEPOINT = sql("ROLLBACK TO SAVEPOINT nested_unit")
_RELEASE_SAVEPOINT = sql("RELEASE SAVEPOINT nested_unit")


def translate(exc: BaseException) -> BaseException:
    """Map driver errors to ours: a unique violation, or 'the database is not there right now'."""
    if isinstance(exc, (UniqueViolation, DatabaseUnavailable)):
        return exc
    if isinstance(exc, asyncpg.UniqueViolationError):
        return UniqueViolation(str(exc.constraint_name or "unique"))
    if isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc):
        return UniqueViolation(str(exc))
    if isinstance(exc, _PG_UNAVAILABLE) or (isinstance(exc, sqlite3.OperationalError) and _sqlite_unavailable(exc)):
        return DatabaseUnavailable(type(exc).__name__)
    return exc


def _sqlite_unavailable(exc: sqlite3.OperationalError) -> bool:
    """Busy, locked, I/O, full, read-only, cannot open: the database, not the statement, is the trouble."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:  # raised without a result code: nothing says our SQL is wrong
        return True
    return (code & 0xFF) in _SQLITE_UNAVAILABLE


class Database:
    """The process' database: `transaction()` for writes, `read()` for reads."""

    def __init__(self, url: str, *, pool_size: int = 10, checkpoints: bool = True) -> None:
        self.url = url
        self.checkpoints = checkpoints  # SQLite: run the Checkpointer (False only for tests that drive one themselves)
        self.dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
        options: dict[str, Any] = {}
        if self.dialect == "postgresql":
            options = {"min_size": 1, "max_size": pool_size, "command_timeout": 30}
        self._db = databases.Database(url, **options)
        self._held: list[databases.core.Connection] = []
        self._writer: Tx | None = None
        self._reader: Tx | None = None
        self._write_lock = asyncio.Lock()
        self._read_lock = asyncio.Lock()
        self._checkpointer: Checkpointer | None = None
        self._housekeeping: asyncio.Task[None] | None = None

    @property
    def sqlite_path(self) -> str:
        return self.url.split(":///", 1)[1]

    async def connect(self) -> None:
        if self.dialect == "sqlite":
            prepare_sqlite_file(self.sqlite_path)
        try:
            await self._db.connect()
            if self.dialect == "sqlite":
                # SQLite is one writer at a time anyway: keep one writer and one reader
                # connection open instead of `databases`' new connection per statement.
                self._writer = Tx("sqlite", await self._hold_connection())
                self._reader = Tx("sqlite", await self._hold_connection())
                if self.checkpoints:
                    self._checkpointer = Checkpointer(self.sqlite_path)
                    await self._checkpointer.start()
                self._housekeeping = asyncio.create_task(self._optimize_hourly(), name="sqlite-optimize")
        except Exception as exc:
            raise translate(exc) from exc

    async def _hold_connection(self) -> Any:
        async def open_one() -> databases.core.Connection:
            connection = self._db.connection()
            await connection.__aenter__()
            return connection

        # `databases` keys connections by task: open each in its own task to get distinct ones.
        connection = await asyncio.create_task(open_one())
        self._held.append(connection)
        raw = connection.raw_connection
        raw.row_factory = sqlite3.Row
        for pragma in (
            "PRAGMA journal_mode=WAL",
            "PRAGMA synchronous=FULL",
            "PRAGMA busy_timeout=15000",
            "PRAGMA foreign_keys=ON",
            "PRAGMA wal_autocheckpoint=0",  # the Checkpointer's job, off the commit path
        ):
            await (await raw.execute(pragma)).close()
        return raw

    async def optimize(self, *, full: bool = False) -> None:
        """Refresh SQLite's planner statistics where they went stale; `full`: every table (after a migration)."""
        # PostgreSQL needs nothing here: autovacuum runs ANALYZE on its own as tables grow.
        if self.dialect != "sqlite" or self._writer is None:
            return
        async with self._write_lock:
            raw = self._writer.raw
            # ANALYZE samples about this many rows per index: a few ms, however large the tables grow.
            await _sqlite_exec(raw, "PRAGMA analysis_limit=400")
            await _sqlite_exec(raw, "ANALYZE" if full else "PRAGMA optimize")

    async def _optimize_hourly(self) -> None:
        while True:
            await asyncio.sleep(OPTIMIZE_EVERY)
            try:
                await self.optimize()
            except Exception as exc:  # statistics can wait for the next hour
                log.warning("SQLite optimize failed", extra={"event": "sqlite_optimize_failed", "error": type(exc).__name__})

    async def disconnect(self) -> None:
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping
            self._housekeeping = None
        if self._checkpointer is not None:
            await self._checkpointer.stop()
            self._checkpointer = None
        for connection in self._held:
            try:
                await connection.__aexit__(None, None, None)
            except Exception:  # closing a broken connection must not hide the real error
                pass
        self._held.clear()
        await self._db.disconnect()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """A write transaction; committed when the block ends, rolled back on error."""
        if self.dialect == "sqlite":
            assert self._writer is not None, "database not connected"
            async with self._write_lock:
                tx = self._writer
                await _sqlite_exec(tx.raw, "BEGIN IMMEDIATE")
                try:
                    yield tx
                except BaseException:
                    await _to_the_end(_sqlite_exec(tx.raw, "ROLLBACK"))
                    raise
                else:
                    await _sqlite_commit(tx.raw)
            return
        async with self._pg_connection() as raw:
            transaction = raw.transaction()
            try:
                await transaction.start()
            except Exception as exc:
                raise translate(exc) from exc
            try:
                yield Tx("postgresql", raw)
            except BaseException:
                try:
                    await _to_the_end(transaction.rollback())
                except Exception:
                    pass
                raise
            else:
                try:
                    # A cancelled request must not leave the outcome of a commit unknown, nor hand
                    # the connection back to the pool while its COMMIT is still running.
                    await _to_the_end(transaction.commit())
                except Exception as exc:
                    raise translate(exc) from exc

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Tx]:
        """Reads from one consistent snapshot."""
        if self.dialect == "sqlite":
            assert self._reader is not None, "database not connected"
            async with self._read_lock:
                tx = self._reader
                await _sqlite_exec(tx.raw, "BEGIN")
                try:
                    yield tx
                finally:
                    await _sqlite_commit(tx.raw)
            return
        async with self._pg_connection() as raw:
            transaction = raw.transaction(readonly=True, isolation="repeatable_read")
            try:
                await transaction.start()
            except Exception as exc:
                raise translate(exc) from exc
            try:
                yield Tx("postgresql", raw)
            finally:
                try:
                    await _to_the_end(transaction.rollback())
                except Exception:
                    pass

    @asynccontextmanager
    async def _pg_connection(self) -> AsyncIterator[Any]:
        connection = self._db.connection()
        try:
            await connection.__aenter__()
        except Exception as exc:
            # Whatever stops us from getting a connection (refused, "not accepting connections",
            # too many clients, authentication mid-restart) means: not reachable right now.
            raise DatabaseUnavailable(type(exc).__name__) from exc
        try:
            yield connection.raw_connection
        finally:
            try:
                await connection.__aexit__(None, None, None)
            except Exception:
                # A failed release (the server dropped the connection while the pool reset it)
                # leaves `databases` holding it for this task: forget it, or a long-lived task
                # (the webhook writer) would be refused a connection for ever after.
                if self._db._connection is connection:
                    self._db._connection = None

    def postgres_dsn(self) -> str:
        return self.url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _to_the_end(awaitable: Any) -> Any:
    """Await `awaitable` to its end even when the caller is cancelled meanwhile; then re-raise the cancellation.

    `asyncio.shield` alone lets the caller go on (and release the connection) while the shielded
    statement still runs on it.
    """
    task = asyncio.ensure_future(awaitable)
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        if not task.cancelled():
            task.exception()  # retrieved: the cancellation is what the caller gets
        raise asyncio.CancelledError
    return task.result()


async def _sqlite_commit(raw: Any) -> None:
    """COMMIT; when it fails (busy, I/O error, disk full, a deferred constraint) roll back.

    A failed COMMIT can leave the transaction open, and this connection serves every later
    transaction of the process: left inside one, each of them would fail until a restart.
    """
    try:
        await _to_the_end(_sqlite_exec(raw, "COMMIT"))
    except BaseException:
        if raw.in_transaction:
            with contextlib.suppress(Exception):
                await _to_the_end(_sqlite_exec(raw, "ROLLBACK"))
        raise


async def _sqlite_exec(raw: Any, statement: str) -> None:
    try:
        await raw.execute(statement)
    except Exception as exc:
        raise translate(exc) from exc
