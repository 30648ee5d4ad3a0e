"""Database errors and transaction edges: what is "unavailable" (503) and what is a bug (500), a
failed SQLite COMMIT that must not wedge the writer, a cancelled PostgreSQL commit that must keep
its connection until the commit is over."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from service.errors import DatabaseUnavailable
from service.settings import Settings
from service.store.connector import Database, sql, translate
from service.web.app import create_app

from .conftest import MatchedTransport, _plain
from .helpers import AUTH, FakeClock, create_account

INSERT_POLLER = sql(
    "INSERT INTO pollers (id, hostname, pid, started_at, heartbeat_at) VALUES (:id, 'h', 1, '2026-12-01T09:00:00Z', '2026-12-01T09:00:00Z')"
)
POLLERS = sql("SELECT id FROM pollers ORDER BY id")


def _sqlite_error(tmp_path: Path, make: str) -> sqlite3.OperationalError:
    """A real OperationalError from the sqlite3 driver, of the kind `make` names."""
    path = tmp_path / "errors.sqlite3"
    setup = sqlite3.connect(path)
    setup.execute("CREATE TABLE t (x INTEGER)")
    setup.commit()
    setup.close()
    try:
        if make == "busy":
            holder = sqlite3.connect(path, isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")
            other = sqlite3.connect(path, isolation_level=None, timeout=0)
            other.execute("BEGIN IMMEDIATE")
        elif make == "readonly":
            sqlite3.connect(f"file:{path}?mode=ro", uri=True).execute("INSERT INTO t VALUES (1)")
        elif make == "cannot_open":
            sqlite3.connect(tmp_path / "no" / "such" / "dir" / "x.sqlite3")
        elif make == "syntax":
            sqlite3.connect(path).execute("SELEC x FROM t")
        elif make == "no_such_table":
            sqlite3.connect(path).execute("SELECT x FROM missing")
        elif make == "no_such_column":
            sqlite3.connect(path).execute("SELECT y FROM t")
    except sqlite3.OperationalError as exc:
        return exc
    raise AssertionError(f"no error for {make}")


@pytest.mark.parametrize("make", ["busy", "readonly", "cannot_open"])
def test_sqlite_busy_readonly_or_unopenable_database_is_unavailable(tmp_path: Path, make: str) -> None:
    assert isinstance(translate(_sqlite_error(tmp_path, make)), DatabaseUnavailable)


@pytest.mark.parametrize("make", ["syntax", "no_such_table", "no_such_column"])
def test_sqlite_statement_bugs_are_not_reported_as_an_unavailable_database(tmp_path: Path, make: str) -> None:
    error = _sqlite_error(tmp_path, make)
    assert translate(error) is error


@contextlib.asynccontextmanager
async def web(settings: Settings, clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    """The web app with its errors answered as HTTP (a 500 is a response here, not a raised exception)."""
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        transport = MatchedTransport(app=app, raise_app_exceptions=False)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://verifier.test") as http:
            yield http


async def test_a_sql_bug_answers_500_not_503(settings: Settings, clock: FakeClock, db: Database) -> None:
    async with web(settings, clock) as http:
        await create_account(http)
        async with db.transaction() as tx:  # the schema no longer fits the code: a bug, not an outage
            await tx.execute(sql("ALTER TABLE accounts RENAME TO accounts_elsewhere"))
        response = await http.get("/api/accounts/salon-1", headers=AUTH)
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"


async def test_a_failed_sqlite_commit_leaves_the_writer_usable(db: Database) -> None:
    if db.dialect != "sqlite":
        pytest.skip("the single SQLite writer connection")
    with pytest.raises(sqlite3.IntegrityError):
        async with db.transaction() as tx:
            # Foreign keys checked only at COMMIT: the COMMIT fails and leaves the transaction open.
            await tx.raw.execute("PRAGMA defer_foreign_keys = ON")
            await tx.execute(
                sql(
                    "INSERT INTO booking_claims (account, booking_uid, verification_seq, phase_key, claimed_at) "
                    "VALUES ('a', 'u', 999, 'A', '2026-12-01T09:00:00Z')"
                )
            )
    async with db.transaction() as tx:
        await tx.execute(INSERT_POLLER, id="after")
    async with db.read() as tx:
        assert [r["id"] for r in await tx.fetch_all(POLLERS)] == ["after"]
        claims = await tx.fetch_val(sql("SELECT COUNT(*) AS n FROM booking_claims"))
    assert claims == 0


async def test_a_cancelled_postgresql_commit_keeps_its_connection_until_the_commit_is_over(db: Database, database_url: str) -> None:
    if db.dialect != "postgresql":
        pytest.skip("the PostgreSQL connection pool")
    outside = await asyncpg.connect(_plain(database_url))
    try:
        # A commit we can hold: a deferred trigger that waits for a lock another session holds.
        await outside.execute(
            """
            CREATE FUNCTION wait_for_gate() RETURNS trigger LANGUAGE plpgsql AS
            $$ BEGIN PERFORM pg_advisory_xact_lock(4242); RETURN NULL; END $$;
            CREATE CONSTRAINT TRIGGER gate AFTER INSERT ON pollers DEFERRABLE INITIALLY DEFERRED
            FOR EACH ROW EXECUTE FUNCTION wait_for_gate();
            """
        )
        gate = outside.transaction()
        await gate.start()
        await outside.execute("SELECT pg_advisory_xact_lock(4242)")
        ended_before_the_commit: list[bool] = []
        gate_open = False

        async def write() -> None:
            async with db.transaction() as tx:
                await tx.execute(INSERT_POLLER, id="held")

        task = asyncio.create_task(write())
        task.add_done_callback(lambda _: ended_before_the_commit.append(not gate_open))
        watcher = await asyncpg.connect(_plain(database_url))
        try:
            while not await watcher.fetchval(
                "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())"
            ):
                await asyncio.sleep(0.01)  # waiting for the COMMIT to reach the gate, not for a race
            task.cancel()
            for _ in range(20):  # round trips: ample time for a task that does not wait for its commit to end
                await watcher.fetchval("SELECT 1")
        finally:
            await watcher.close()
        gate_open = True
        await gate.rollback()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert ended_before_the_commit == [False]
        async with db.read() as tx:  # the commit went through, and the pool hands out healthy connections
            assert [r["id"] for r in await tx.fetch_all(POLLERS)] == ["held"]
    finally:
        await outside.close()


async def test_a_failed_connection_release_does_not_wedge_a_long_lived_task(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    if db.dialect != "postgresql":
        pytest.skip("the PostgreSQL connection pool")
    # asyncpg's pool raises from release() when the server dropped the connection while the pool
    # reset it (a database restart); here the release itself goes through and then raises once.
    original = asyncpg.pool.Pool.release
    failures = [asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")]

    async def release(self: asyncpg.pool.Pool, connection: Any, *, timeout: float | None = None) -> None:
        await original(self, connection, timeout=timeout)
        if failures:
            raise failures.pop()

    monkeypatch.setattr(asyncpg.pool.Pool, "release", release)

    async def writer() -> None:  # one long-lived task for every transaction, as the webhook writer is
        async with db.transaction() as tx:
            await tx.execute(INSERT_POLLER, id="first")
        async with db.transaction() as tx:
            await tx.execute(INSERT_POLLER, id="second")

    await asyncio.create_task(writer())
    assert not failures
    async with db.read() as tx:
        assert [r["id"] for r in await tx.fetch_all(POLLERS)] == ["first", "second"]
