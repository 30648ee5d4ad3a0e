"""The connectors behind `Database`: typed values from the schema, readers that do not queue, a
migration transaction that checks foreign keys, and LISTEN that survives a lost connection."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import asyncpg
import pytest

from service.app.notify import CHANNEL, Notifier
from service.store.connector import Database, sql
from service.store.postgres import LISTENER_NAME, PostgresDatabase
from service.store.queries import status
from service.store.sqlite import SqliteDatabase

from .conftest import _plain

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
T1 = datetime(2026, 12, 1, 9, 30, 0, 250000, tzinfo=timezone.utc)

_ACCOUNT = sql(
    "INSERT INTO accounts (id, calcom_api_key, webhook_secret, enabled, time_only_matching, created_at, updated_at) "
    "VALUES ('salon-1', 'k', 's', :enabled, :time_only, :created, :created)"
)
_VERIFICATION = sql(
    "INSERT INTO verifications (id, account, appointment_id, fingerprint, status, window_start_at, window_end_at, "
    "created_at, updated_at, deadline_at) VALUES (:id, 'salon-1', :id, 'f', 'pending', :at, :at, :at, :at, :at)"
)
# No column name here says "timestamp" or "flag": the types come from the schema alone.
_ALIASED = sql("SELECT enabled AS e, time_only_matching AS t, created_at AS c, id AS id_at FROM accounts")
# A computed column has no declared type: its alias names one (for SQLite; PostgreSQL types it itself).
_COMPUTED = sql('SELECT MAX(created_at) AS "newest [UTCTIME]", COUNT(*) AS n FROM verifications')
# A FOREIGN KEY pointing nowhere: verification 999 does not exist.
_ORPHAN_CLAIM = sql(
    "INSERT INTO booking_claims (account, booking_uid, verification_seq, phase_key, claimed_at) VALUES ('a', 'u', 999, 'A', :at)"
)


def test_database_answers_the_connector_for_its_url() -> None:
    assert type(Database("sqlite+aiosqlite:///v.sqlite3")) is SqliteDatabase
    assert type(Database("postgresql+asyncpg://u@localhost/v")) is PostgresDatabase


async def test_values_come_back_typed_by_the_schema_not_by_column_names(db: Database) -> None:
    async with db.transaction() as tx:
        await tx.execute(_ACCOUNT, enabled=False, time_only=True, created=T0)
        await tx.execute(_VERIFICATION, id="v-1", at=T0)
        await tx.execute(_VERIFICATION, id="v-2", at=T1)
    async with db.read() as tx:
        row = await tx.fetch_one(_ALIASED)
        computed = await tx.fetch_one(_COMPUTED)
        pending = await status.pending(tx, overdue_before=T0)
    assert row == {"e": False, "t": True, "c": T0, "id_at": "salon-1"}
    assert type(row["e"]) is bool and type(row["t"]) is bool
    assert row["c"].utcoffset() is not None
    assert computed == {"newest": T1, "n": 2} and computed["newest"].utcoffset() is not None
    # An aggregate of a timestamp column, as /status reads it: an aware datetime, not text.
    assert isinstance(pending["oldest_at"], datetime) and pending["oldest_at"] == T0
    assert pending["oldest_at"].utcoffset() is not None


async def test_a_read_does_not_wait_for_another_read(db: Database) -> None:
    async with db.read() as first:
        assert await first.fetch_val(sql("SELECT COUNT(*) AS n FROM accounts")) == 0

        async def second() -> int:
            async with db.read() as tx:
                return int(await tx.fetch_val(sql("SELECT COUNT(*) AS n FROM verifications")))

        # With one reader behind a lock this would wait for `first`, which waits for it: no answer.
        assert await asyncio.wait_for(second(), 30) == 0


async def test_a_migration_that_breaks_a_foreign_key_is_rolled_back(db: Database) -> None:
    with pytest.raises(Exception) as raised:
        async with db.schema_transaction() as tx:
            await tx.execute(_ORPHAN_CLAIM, at=T0)
    if db.dialect == "sqlite":
        assert "foreign keys" in str(raised.value)
    async with db.read() as tx:
        assert await tx.fetch_val(sql("SELECT COUNT(*) AS n FROM booking_claims")) == 0
    # Enforcement is back on for ordinary transactions afterwards.
    with pytest.raises(Exception):  # noqa: B017 (each driver names a foreign-key violation its own way)
        async with db.transaction() as tx:
            await tx.execute(_ORPHAN_CLAIM, at=T0)


async def _cut_listener(database_url: str) -> int:
    """Terminate the LISTEN connection from outside, as a database restart or a network cut would."""
    admin = await asyncpg.connect(_plain(database_url))
    try:
        return int(
            await admin.fetchval(
                "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()",
                LISTENER_NAME,
            )
        )
    finally:
        await admin.close()


async def test_listen_delivers_notifications_and_listens_again_after_its_connection_is_cut(db: Database, database_url: str) -> None:
    if db.dialect != "postgresql":
        pytest.skip("NOTIFY is PostgreSQL's")
    received: asyncio.Queue[str] = asyncio.Queue()
    listening: asyncio.Queue[None] = asyncio.Queue()
    task = asyncio.create_task(db.listen(CHANNEL, received.put_nowait, on_listening=lambda: listening.put_nowait(None)))
    try:
        await asyncio.wait_for(listening.get(), 30)
        async with db.transaction() as tx:
            await tx.notify(CHANNEL, "v-1")
        assert await asyncio.wait_for(received.get(), 30) == "v-1"

        assert await _cut_listener(database_url) == 1
        await asyncio.wait_for(listening.get(), 30)  # connected and listening again, without anyone's help
        async with db.transaction() as tx:
            await tx.notify(CHANNEL, "v-2")
        assert await asyncio.wait_for(received.get(), 30) == "v-2"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_verdict_notified_by_another_process_wakes_the_waiter(db: Database, database_url: str) -> None:
    if db.dialect != "postgresql":
        pytest.skip("SQLite has one process; its waiters are woken directly")
    notifier = Notifier(db, recheck_seconds=3600)  # no status re-check: only the notification can wake it
    other = Database(database_url)  # another process: its own connections
    await notifier.start()
    await other.connect()
    try:
        await asyncio.wait_for(notifier.listening.wait(), 30)
        registered = asyncio.Event()

        async def decided() -> bool:
            registered.set()
            return False

        waiter = asyncio.create_task(notifier.wait("v-9", timeout=3600, decided=decided))
        await registered.wait()
        async with other.transaction() as tx:
            await tx.notify(CHANNEL, "v-9")
        await asyncio.wait_for(waiter, 30)
    finally:
        await other.disconnect()
        await notifier.stop()


async def test_a_statement_failing_inside_a_write_transaction_undoes_it_all_and_the_writer_goes_on(db: Database) -> None:
    """On SQLite the statements of a write transaction run on the loop's thread: their errors, rollback and
    typed rows must be those of any other statement."""
    from service.errors import UniqueViolation

    async with db.transaction() as tx:
        await tx.execute(_ACCOUNT, enabled=True, time_only=False, created=T0)
    with pytest.raises(UniqueViolation):
        async with db.transaction() as tx:
            await tx.execute(_VERIFICATION, id="v-1", at=T0)
            assert (await tx.fetch_one(sql("SELECT COUNT(*) AS n FROM verifications"))) == {"n": 1}  # its own write, seen
            await tx.execute(_ACCOUNT, enabled=True, time_only=False, created=T0)  # the same account again
    async with db.transaction() as tx:
        assert await tx.fetch_val(sql("SELECT COUNT(*) AS n FROM verifications")) == 0  # v-1 went with the failure
        await tx.execute_many(_VERIFICATION, [{"id": "v-2", "at": T0}, {"id": "v-3", "at": T1}])
        row = await tx.fetch_one(_COMPUTED)
    assert row == {"newest": T1, "n": 2} and row["newest"].utcoffset() is not None
    async with db.read() as tx:
        assert await tx.fetch_val(sql("SELECT COUNT(*) AS n FROM verifications")) == 2


async def test_a_commit_without_waiting_is_that_transaction_s_alone(db: Database) -> None:
    """Matching stored events commits without waiting for the disk on PostgreSQL; nothing else does."""
    if db.dialect != "postgresql":
        pytest.skip("SQLite's COMMIT waits for its fsync whatever the transaction (a fraction of a millisecond)")
    show = sql("SELECT current_setting('synchronous_commit') AS s")
    async with db.transaction() as tx:
        await tx.lock_accounts(["salon-1", "salon-2"], commit_waits=False)
        assert await tx.fetch_val(show) == "off"
    async with db.transaction() as tx:
        assert await tx.fetch_val(show) == "on"
        await tx.lock_accounts(["salon-1"])
        assert await tx.fetch_val(show) == "on"
