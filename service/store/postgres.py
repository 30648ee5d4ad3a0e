"""The PostgreSQL connector: a pool through `databases`, advisory locks, NOTIFY, and LISTEN.

Statements run on the asyncpg connection `databases` hands out (`raw_connection`), with the SQL
compiled once per statement (`service/store/connector.py`). LISTEN needs a connection of its own
for as long as the process listens, outside the pool; it reconnects when that connection is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import databases

from service.errors import DatabaseUnavailable, UniqueViolation
from service.store.connector import Database, Tx, sql, to_the_end

log = logging.getLogger("service.store.postgres")

LISTENER_NAME = "verifier-listen"  # application_name of the LISTEN connection, for operators' pg_stat_activity
RECONNECT_FIRST = 0.5  # seconds before the first reconnection attempt; doubled per failure
RECONNECT_MAX = 10.0
PING_EVERY = 30.0  # a quiet LISTEN connection is asked for a round trip this often: a half-open socket raises no event
PING_TIMEOUT = 10.0

_UNAVAILABLE = (
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

_ACCOUNT_LOCK = sql("SELECT pg_advisory_xact_lock(hashtextextended(:account, 7))")
_ACCOUNT_LOCKS = sql(
    "SELECT pg_advisory_xact_lock(hashtextextended(a, 7)) FROM (SELECT a FROM unnest(CAST(:accounts AS text[])) a ORDER BY a) s"
)
# The same, with the transaction's commit no longer waiting for the disk (set_config(..., true) is SET LOCAL).
_ACCOUNT_LOCKS_COMMIT_NOWAIT = sql(
    "SELECT set_config('synchronous_commit', 'off', true), pg_advisory_xact_lock(hashtextextended(a, 7)) "
    "FROM (SELECT a FROM unnest(CAST(:accounts AS text[])) a ORDER BY a) s"
)
_NOTIFY = sql("SELECT pg_notify(:channel, :payload)")


class PostgresTx(Tx):
    """Statements on one asyncpg connection, inside a transaction."""

    dialect = "postgresql"

    def __init__(self, raw: asyncpg.Connection) -> None:
        self.raw = raw

    async def _fetch(self, text: str, args: list[Any]) -> list[dict[str, Any]]:
        return [dict(r) for r in await self.raw.fetch(text, *args)]

    async def _run(self, text: str, args: list[Any]) -> int:
        status = await self.raw.execute(text, *args)
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def _run_many(self, text: str, args: list[list[Any]]) -> None:
        await self.raw.executemany(text, args)

    @staticmethod
    def translate(exc: BaseException) -> BaseException:
        return PostgresDatabase.translate(exc)

    async def lock_account(self, account: str) -> None:
        await self.execute(_ACCOUNT_LOCK, account=account)

    async def lock_accounts(self, accounts: Iterable[str], *, commit_waits: bool = True) -> None:
        # Without waiting, the commit is lost only if the server itself crashes before its WAL writer
        # flushes it (within ~3 × wal_writer_delay); any later durable commit flushes it too, in order.
        await self.execute(_ACCOUNT_LOCKS if commit_waits else _ACCOUNT_LOCKS_COMMIT_NOWAIT, accounts=sorted(set(accounts)))

    async def notify(self, channel: str, payload: str) -> None:
        await self.execute(_NOTIFY, channel=channel, payload=payload)  # NOTIFY is transactional: sent at COMMIT


class PostgresDatabase(Database):
    """A PostgreSQL database through a pool of asyncpg connections."""

    dialect = "postgresql"

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self._db = databases.Database(url, min_size=1, max_size=pool_size, command_timeout=30)

    @property
    def dsn(self) -> str:
        """The URL as asyncpg spells it."""
        return self.url.replace("postgresql+asyncpg://", "postgresql://", 1)

    async def connect(self) -> None:
        try:
            await self._db.connect()
        except Exception as exc:
            raise self.translate(exc) from exc

    async def disconnect(self) -> None:
        await self._db.disconnect()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self._connection() as raw:
            transaction = raw.transaction()
            try:
                await transaction.start()
            except Exception as exc:
                raise self.translate(exc) from exc
            try:
                yield PostgresTx(raw)
            except BaseException:
                with contextlib.suppress(Exception):
                    await to_the_end(transaction.rollback())
                raise
            else:
                try:
                    # A cancelled request must not leave the outcome of a commit unknown, nor hand
                    # the connection back to the pool while its COMMIT is still running.
                    await to_the_end(transaction.commit())
                except Exception as exc:
                    raise self.translate(exc) from exc

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[Tx]:
        """A pooled connection outside a transaction block: each statement commits alone, in one round trip."""
        async with self._connection() as raw:
            yield PostgresTx(raw)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Tx]:
        async with self._connection() as raw:
            transaction = raw.transaction(readonly=True, isolation="repeatable_read")
            try:
                await transaction.start()
            except Exception as exc:
                raise self.translate(exc) from exc
            try:
                yield PostgresTx(raw)
            finally:
                with contextlib.suppress(Exception):
                    await to_the_end(transaction.rollback())

    @asynccontextmanager
    async def session_lock(self, key: int) -> AsyncIterator[None]:
        """A session advisory lock on a pooled connection, held until the block ends."""
        async with self._connection() as raw:
            try:
                await raw.execute("SELECT pg_advisory_lock($1)", key)
            except Exception as exc:
                raise self.translate(exc) from exc
            try:
                yield
            finally:
                with contextlib.suppress(Exception):  # a lost connection released the lock with it
                    await raw.execute("SELECT pg_advisory_unlock($1)", key)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
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

    async def listen(self, channel: str, on_notify: Callable[[str], None], *, on_listening: Callable[[], None] | None = None) -> None:
        delay = RECONNECT_FIRST
        while True:
            try:
                connection = await asyncpg.connect(self.dsn, timeout=PING_TIMEOUT, server_settings={"application_name": LISTENER_NAME})
            except Exception as exc:
                log.warning(
                    "notification listener cannot connect",
                    extra={"event": "notify_listen_failed", "channel": channel, "error": type(exc).__name__},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX)
                continue
            delay = RECONNECT_FIRST
            try:
                lost = asyncio.Event()
                connection.add_termination_listener(lambda _c, lost=lost: lost.set())
                await connection.add_listener(channel, lambda _c, _pid, _channel, payload: on_notify(payload))
                if on_listening is not None:
                    on_listening()
                await _until_lost(connection, lost)
                log.warning("notification listener lost its connection", extra={"event": "notify_listen_lost", "channel": channel})
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "notification listener lost", extra={"event": "notify_listen_lost", "channel": channel, "error": type(exc).__name__}
                )
            finally:
                with contextlib.suppress(Exception):
                    await connection.close(timeout=2)

    async def optimize(self, *, full: bool = False) -> None:
        """Nothing to do: autovacuum runs ANALYZE on its own as tables grow."""

    @staticmethod
    def translate(exc: BaseException) -> BaseException:
        if isinstance(exc, asyncpg.UniqueViolationError):
            return UniqueViolation(str(exc.constraint_name or "unique"))
        if isinstance(exc, _UNAVAILABLE):
            return DatabaseUnavailable(type(exc).__name__)
        return exc


async def _until_lost(connection: asyncpg.Connection, lost: asyncio.Event) -> None:
    """Return when the server closed the connection, or when a round trip on it failed."""
    while not lost.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(lost.wait(), PING_EVERY)
        if not lost.is_set():
            await connection.execute("SELECT 1", timeout=PING_TIMEOUT)
