"""What the rest of the service sees of a database: statements, units of work, and one connector per database.

SQL is written once with `:name` parameters (`sql()`), optionally spelled differently for
PostgreSQL, and compiled per dialect on first use: SQLAlchemy's per-statement compilation cost
more than the statement itself on the webhook path. A connector owns its driver connections and
hands out `Tx` units of work: `service/store/sqlite.py` (aiosqlite) and `service/store/postgres.py`
(asyncpg through `databases`). `Database(url)` opens the connector the URL names. This module
imports no driver; SQL text lives in `service/store/queries/`.
"""

from __future__ import annotations

import abc
import asyncio
import re
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from service.errors import DatabaseUnavailable, UniqueViolation

_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_][A-Za-z0-9_]*)")
# `AS "oldest_at [UTCTIME]"`: a computed column naming the SQLite converter for its value; elsewhere `AS oldest_at`.
_TYPED_ALIAS = re.compile(r'"([A-Za-z_][A-Za-z0-9_]*) \[[A-Za-z_]+\]"')
DIALECTS = ("sqlite", "postgresql")


@dataclass
class Query:
    """One SQL statement with `:name` parameters, optionally spelled differently per dialect.

    A computed column that must come back typed names its type in its alias for SQLite, which
    knows no type of an expression: `MIN(created_at) AS "oldest_at [UTCTIME]"`. Other dialects
    read that alias as plain `oldest_at`.
    """

    text: str
    postgresql: str | None = None
    _compiled: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict, repr=False)

    def compiled(self, dialect: str) -> tuple[str, tuple[str, ...]]:
        """The statement in the driver's parameter style, and the parameter names in binding order."""
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

            if dialect != "sqlite":
                source = _TYPED_ALIAS.sub(r"\1", source)
            hit = (_PARAM.sub(replace, source), tuple(names))
            self._compiled[dialect] = hit
        return hit


def sql(text: str, *, postgresql: str | None = None) -> Query:
    """A statement; `postgresql` where PostgreSQL needs another spelling."""
    return Query(text, postgresql)


class Tx(abc.ABC):
    """Statements inside one unit of work on one driver connection (`raw`).

    The statement methods are written once here (bind, run, translate errors); a connector
    supplies the driver calls (`_fetch`, `_run`, `_run_many`) and its parameter conversion.
    """

    dialect: str
    raw: Any

    def _bind(self, query: Query, params: Mapping[str, Any]) -> tuple[str, list[Any]]:
        """The compiled text and its arguments in order; a missing parameter is a TypeError."""
        text, names = query.compiled(self.dialect)
        try:
            return text, [params[name] for name in names]
        except KeyError as exc:
            raise TypeError(f"missing SQL parameter {exc.args[0]!r}") from None

    async def fetch_all(self, query: Query, **params: Any) -> list[dict[str, Any]]:
        """Every row, as dicts of typed values (datetimes aware, booleans bool)."""
        text, args = self._bind(query, params)
        try:
            return await self._fetch(text, args)
        except Exception as exc:
            raise self.translate(exc) from exc

    async def fetch_one(self, query: Query, **params: Any) -> dict[str, Any] | None:
        """The first row, or None."""
        rows = await self.fetch_all(query, **params)
        return rows[0] if rows else None

    async def fetch_val(self, query: Query, **params: Any) -> Any:
        """The first column of the first row, or None."""
        row = await self.fetch_one(query, **params)
        return next(iter(row.values())) if row else None

    async def execute(self, query: Query, **params: Any) -> int:
        """Run a statement; answer the number of rows it changed."""
        text, args = self._bind(query, params)
        try:
            return await self._run(text, args)
        except Exception as exc:
            raise self.translate(exc) from exc

    async def execute_many(self, query: Query, rows: Iterable[Mapping[str, Any]]) -> None:
        """Run a statement once per parameter set."""
        args = [self._bind(query, row)[1] for row in rows]
        if not args:
            return
        try:
            await self._run_many(query.compiled(self.dialect)[0], args)
        except Exception as exc:
            raise self.translate(exc) from exc

    @abc.abstractmethod
    async def _fetch(self, text: str, args: list[Any]) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    async def _run(self, text: str, args: list[Any]) -> int: ...

    @abc.abstractmethod
    async def _run_many(self, text: str, args: list[list[Any]]) -> None: ...

    @staticmethod
    @abc.abstractmethod
    def translate(exc: BaseException) -> BaseException:
        """The driver's errors as ours (the connector's `Database.translate`)."""

    @abc.abstractmethod
    async def lock_account(self, account: str) -> None:
        """Serialise writers of one account until the end of the transaction."""

    @abc.abstractmethod
    async def lock_accounts(self, accounts: Iterable[str], *, commit_waits: bool = True) -> None:
        """Lock several accounts in a fixed order (so two batches cannot deadlock).

        `commit_waits=False`: this transaction's COMMIT need not wait for the disk, because all it
        writes can be derived again from what is already durable (matching stored events, whose
        markers are lost along with it). Said here, with the lock, to save the database a round trip.
        """

    @abc.abstractmethod
    async def notify(self, channel: str, payload: str) -> None:
        """Tell other processes' `Database.listen`, once this transaction commits."""

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


_SAVEPOINT = sql("SAVEPOINT nested_unit")
_ROLLBACK_TO_SAVEPOINT = sql("ROLLBACK TO SAVEPOINT nested_unit")
_RELEASE_SAVEPOINT = sql("RELEASE SAVEPOINT nested_unit")


def open_database(url: str, **options: Any) -> Database:
    """The connector for the URL's database (SQLite or PostgreSQL), not connected yet."""
    return Database(url, **options)  # type: ignore[abstract]


class Database(abc.ABC):
    """The process' database: `transaction()` for writes, `read()` for reads.

    `Database(url)` answers the connector for the URL's database (like `pathlib.Path` answers a
    `PosixPath`), so callers never name a connector class.
    """

    dialect: str
    url: str

    def __new__(cls, url: str, **options: Any) -> Database:
        if cls is Database:
            cls = connector_class(dialect_of(url))
        return super().__new__(cls)

    @abc.abstractmethod
    async def connect(self) -> None:
        """Open the connections; DatabaseUnavailable when the database cannot be reached."""

    @abc.abstractmethod
    async def disconnect(self) -> None:
        """Stop background work and close every connection."""

    @abc.abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        """A write transaction; committed when the block ends, rolled back on error."""

    @abc.abstractmethod
    def read(self) -> AbstractAsyncContextManager[Tx]:
        """Reads from one consistent snapshot."""

    def autocommit(self) -> AbstractAsyncContextManager[Tx]:
        """Statements that each commit on their own, durably, in one trip to the driver (no BEGIN/COMMIT).

        For a write that is one statement (the webhook writer's batch insert); several statements
        here are NOT atomic together. The default falls back to a transaction (SQLite keeps
        BEGIN IMMEDIATE … COMMIT: its trips are thread hops, and a quick A/B at 100 webhooks/s did not
        show the autocommit statement faster).
        """
        return self.transaction()

    def schema_transaction(self) -> AbstractAsyncContextManager[Tx]:
        """A write transaction for a migration (SQLite rebuilds tables that others reference in one)."""
        return self.transaction()

    @abc.abstractmethod
    def session_lock(self, key: int) -> AbstractAsyncContextManager[None]:
        """Hold a lock shared by every process of this database (concurrent migrations take turns)."""

    @abc.abstractmethod
    async def listen(self, channel: str, on_notify: Callable[[str], None], *, on_listening: Callable[[], None] | None = None) -> None:
        """Call `on_notify(payload)` for other processes' `Tx.notify` on `channel` until cancelled.

        `on_listening` is called each time listening (re)starts: notifications sent while not
        listening are lost, so a caller that cares looks again then.
        """

    @abc.abstractmethod
    async def optimize(self, *, full: bool = False) -> None:
        """Refresh the planner's statistics where they went stale; `full`: every table (after a migration)."""

    @staticmethod
    @abc.abstractmethod
    def translate(exc: BaseException) -> BaseException:
        """This driver's errors as ours (UniqueViolation, DatabaseUnavailable); anything else unchanged."""


def dialect_of(url: str) -> str:
    """'sqlite' or 'postgresql', from a database URL."""
    return "sqlite" if url.startswith("sqlite") else "postgresql"


def connector_class(dialect: str) -> type[Database]:
    """The connector for a dialect (imported on first use, so neither driver loads for the other)."""
    if dialect == "sqlite":
        from service.store.sqlite import SqliteDatabase

        return SqliteDatabase
    from service.store.postgres import PostgresDatabase

    return PostgresDatabase


def translate(exc: BaseException) -> BaseException:
    """Map driver errors to ours: a unique violation, or 'the database is not there right now'."""
    if isinstance(exc, (UniqueViolation, DatabaseUnavailable)):
        return exc
    for dialect in DIALECTS:
        found = connector_class(dialect).translate(exc)
        if found is not exc:
            return found
    return exc


async def to_the_end(awaitable: Any) -> Any:
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
