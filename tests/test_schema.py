"""The two schemas after migrating are one schema, and migrating an existing SQLite file keeps its rows.

SQLite gets its types from the declarations (UTCTIME TEXT, BOOL INTEGER), so a column declared
differently from its PostgreSQL twin would come back as another Python type on one database only.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from service.settings import normalize_database_url
from service.store import migrations
from service.store.connector import Database, Tx, sql

from .conftest import PG_SKIP_REASON, PG_URL, _admin_execute, _with_database

# Declared types, as each database reports them, onto the one type they hold.
_KINDS = {
    "UTCTIME TEXT": "utctime", "timestamp with time zone": "utctime",
    "BOOL INTEGER": "bool", "boolean": "bool",
    "INTEGER": "integer", "integer": "integer", "bigint": "integer",
    "TEXT": "text", "text": "text",
}  # fmt: skip


@pytest.fixture(params=["sqlite", "postgresql"])
async def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh database with nothing in it, not even the migrations; its URL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.sqlite3'}"
        return
    async with _fresh_postgresql() as url:
        yield url


@pytest.fixture
async def empty_postgresql_url() -> AsyncIterator[str]:
    async with _fresh_postgresql() as url:
        yield url


@contextlib.asynccontextmanager
async def _fresh_postgresql() -> AsyncIterator[str]:
    if not PG_URL:
        pytest.skip(PG_SKIP_REASON)
    name = f"verifier_s_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    await _admin_execute(f"CREATE DATABASE {name}")
    try:
        yield normalize_database_url(_with_database(PG_URL, name))
    finally:
        await _admin_execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def _migrated_schema(url: str) -> dict[str, Any]:
    db = Database(url)
    await db.connect()
    try:
        await migrations.migrate(db)
        async with db.read() as tx:
            return await (_sqlite_schema(tx) if db.dialect == "sqlite" else _pg_schema(tx))
    finally:
        await db.disconnect()


async def _sqlite_schema(tx: Tx) -> dict[str, Any]:
    schema: dict[str, Any] = {"columns": {}, "primary_keys": {}, "unique": set(), "indexes": set()}
    tables = await tx.fetch_all(sql("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"))
    for table in (t["name"] for t in tables):
        columns = await tx.fetch_all(sql('SELECT name, type, "notnull", pk FROM pragma_table_info(:t) ORDER BY cid'), t=table)
        schema["columns"][table] = [(c["name"], _KINDS.get(c["type"], c["type"]), bool(c["notnull"]) or c["pk"] > 0) for c in columns]
        schema["primary_keys"][table] = tuple(c["name"] for c in sorted(columns, key=lambda c: c["pk"]) if c["pk"])
        for index in await tx.fetch_all(sql('SELECT name, "unique", origin, partial FROM pragma_index_list(:t)'), t=table):
            names = tuple(
                r["name"] for r in await tx.fetch_all(sql("SELECT name FROM pragma_index_info(:i) ORDER BY seqno"), i=index["name"])
            )
            if index["origin"] == "u":
                schema["unique"].add((table, names))
            elif index["origin"] == "c":
                schema["indexes"].add((index["name"], table, bool(index["unique"]), bool(index["partial"]), names))
    return schema


_PG_COLUMNS = sql(
    "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns "
    "WHERE table_schema = 'public' ORDER BY table_name, ordinal_position"
)
_PG_CONSTRAINTS = sql(
    """
    SELECT t.relname AS table_name, CAST(c.contype AS text) AS kind,
        ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(attnum, n)
              LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum ORDER BY k.n) AS columns
    FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace s ON s.oid = t.relnamespace
    WHERE s.nspname = 'public' AND c.contype IN ('p', 'u')
    """
)
_PG_INDEXES = sql(
    """
    SELECT i.relname AS name, t.relname AS table_name, x.indisunique AS is_unique, x.indpred IS NOT NULL AS partial,
        -- an expression (attnum 0) is a NULL column, as SQLite reports it
        ARRAY(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY k(attnum, n)
              LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum ORDER BY k.n) AS columns
    FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
    JOIN pg_namespace s ON s.oid = t.relnamespace
    WHERE s.nspname = 'public'
      AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid AND c.contype IN ('p', 'u'))
    """
)


async def _pg_schema(tx: Tx) -> dict[str, Any]:
    schema: dict[str, Any] = {"columns": {}, "primary_keys": {}, "unique": set(), "indexes": set()}
    for c in await tx.fetch_all(_PG_COLUMNS):
        column = (c["column_name"], _KINDS.get(c["data_type"], c["data_type"]), c["is_nullable"] == "NO")
        schema["columns"].setdefault(c["table_name"], []).append(column)
    for c in await tx.fetch_all(_PG_CONSTRAINTS):
        if c["kind"] == "p":
            schema["primary_keys"][c["table_name"]] = tuple(c["columns"])
        else:
            schema["unique"].add((c["table_name"], tuple(c["columns"])))
    for i in await tx.fetch_all(_PG_INDEXES):
        schema["indexes"].add((i["name"], i["table_name"], i["is_unique"], i["partial"], tuple(i["columns"])))
    return schema


async def test_sqlite_declares_only_types_it_has_converters_for(tmp_path: Path) -> None:
    schema = await _migrated_schema(f"sqlite+aiosqlite:///{tmp_path / 'v.sqlite3'}")
    declared = {kind for columns in schema["columns"].values() for _, kind, _ in columns}
    assert declared <= {"utctime", "bool", "integer", "text"}, declared
    assert {"utctime", "bool"} <= declared


async def test_sqlite_and_postgresql_schemas_match_column_by_column(tmp_path: Path, empty_postgresql_url: str) -> None:
    lite = await _migrated_schema(f"sqlite+aiosqlite:///{tmp_path / 'v.sqlite3'}")
    pg = await _migrated_schema(empty_postgresql_url)
    assert sorted(lite["columns"]) == sorted(pg["columns"])
    for table, columns in pg["columns"].items():
        # Same names in the same order, the same kind of value, the same NOT NULL (a key column is never NULL).
        assert lite["columns"][table] == columns, table
    assert lite["primary_keys"] == pg["primary_keys"]
    assert lite["unique"] == pg["unique"]
    assert sorted(lite["indexes"]) == sorted(pg["indexes"])


T0 = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
T1 = T0 + timedelta(minutes=30, microseconds=123456)

# One row for every table (two for the AUTOINCREMENT ones, of which the newer is deleted again).
_ROWS: list[tuple[str, dict[str, Any]]] = [
    (
        "accounts",
        dict(
            id="salon-1",
            calcom_api_key="k",
            webhook_secret="s",
            match_tolerance_seconds=300,
            enabled=False,
            credentials="ok",
            credentials_changed_at=T1,
            created_at=T0,
            updated_at=T1,
            time_only_matching=True,
        ),
    ),
    ("calcom_keys", dict(key_hash="h", paused_until_at=T1, remaining=7, reset_at=None, updated_at=T0)),
    (
        "verifications",
        dict(
            seq=1,
            id="v-1",
            account="salon-1",
            appointment_id="762",
            fingerprint="f",
            status="pending",
            window_start_at=T0,
            window_end_at=T1,
            created_at=T0,
            updated_at=T0,
            next_check_at=T1,
            deadline_at=T1,
            checks=0,
            complete_checks=0,
            failures=0,
        ),
    ),
    (
        "verifications",
        dict(
            seq=2,
            id="v-2",
            account="salon-1",
            appointment_id="763",
            fingerprint="f",
            status="verified",
            window_start_at=T0,
            window_end_at=T1,
            created_at=T0,
            updated_at=T1,
            resolved_at=T1,
            deadline_at=T1,
            checks=1,
            complete_checks=1,
            failures=0,
        ),
    ),
    (
        "phases",
        dict(
            verification_seq=1,
            key="A",
            position=0,
            account="salon-1",
            start_at=T0,
            end_at=T1,
            staff_required=True,
            active=False,
            status="pending",
            attendee_phone="4930",
        ),
    ),
    (
        "booking_observations",
        dict(
            account="salon-1",
            uid="u-1",
            seat="",
            start_at=T0,
            end_at=T1,
            state="exists",
            hosts="[]",
            attendees="[]",
            source="webhook",
            event_at=T0,
            first_seen_at=T0,
            updated_at=T1,
            phones="[]",
            webhook_event_at=T0,
            observed_at=T1,
        ),
    ),
    ("booking_claims", dict(account="salon-1", booking_uid="u-1", booking_seat="", verification_seq=2, phase_key="A", claimed_at=T1)),
    (
        "webhook_events",
        dict(
            seq=1, account="salon-1", body_sha256="a" * 64, trigger_event="BOOKING_CREATED", event_created_at=T0, received_at=T1, body="{}"
        ),
    ),
    (
        "outbox",
        dict(
            seq=1,
            id="o-1",
            verification_seq=2,
            account="salon-1",
            event_type="verified",
            payload="{}",
            state="pending",
            attempts=0,
            created_at=T1,
            next_attempt_at=T1,
        ),
    ),
    ("pollers", dict(id="p-1", hostname="h", pid=1, started_at=T0, heartbeat_at=T1, stopped_at=None, ticks=3)),
    ("counters", dict(name="webhooks", label="", value=5)),
]
_DELETED = [("verifications", dict(seq=3, id="v-3", account="salon-1", appointment_id="764", fingerprint="f", status="pending",
                                   window_start_at=T0, window_end_at=T1, created_at=T0, updated_at=T0, deadline_at=T1)),
            ("webhook_events", dict(seq=2, account="salon-1", body_sha256="b" * 64, trigger_event="BOOKING_CREATED", received_at=T1, body="{}")),
            ("outbox", dict(seq=2, id="o-2", verification_seq=2, account="salon-1", event_type="verified", payload="{}",
                            state="pending", created_at=T1))]  # fmt: skip


def _insert(table: str, row: dict[str, Any]) -> Any:
    # Without `seq`: each database numbers the row itself, as it does in service.
    values = {k: v for k, v in row.items() if k != "seq"}
    return sql(f"INSERT INTO {table} ({', '.join(values)}) VALUES ({', '.join(':' + k for k in values)})"), values


async def test_migrating_to_declared_types_keeps_every_row(empty_url: str) -> None:
    db = Database(empty_url)
    await db.connect()
    try:
        assert (await migrations.migrate(db, until="0004"))[-1] == "0004_history_indexes"
        async with db.transaction() as tx:
            for table, row in _ROWS + _DELETED:
                query, values = _insert(table, row)
                await tx.execute(query, **values)
            for table, row in _DELETED:
                await tx.execute(sql(f"DELETE FROM {table} WHERE seq = :seq"), seq=row["seq"])
            indexes_before = await _index_names(tx)

        assert await migrations.migrate(db, until="0005") == ["0005_declared_types"]

        async with db.read() as tx:
            for table, row in _ROWS:
                keys = {k: v for k, v in row.items() if k in ("seq", "id", "key_hash", "uid", "booking_uid", "name", "verification_seq")}
                where = " AND ".join(f"{k} = :{k}" for k in keys)
                found = await tx.fetch_all(sql(f"SELECT {', '.join(row)} FROM {table} WHERE {where}"), **keys)
                assert [_typed(r) for r in found] == [_typed(row)], table  # as written: aware datetimes, bools
            assert await _index_names(tx) == indexes_before
        async with db.transaction() as tx:
            # A deleted row's number is never handed out again: AUTOINCREMENT's promise survives the rebuild.
            for table, row in _DELETED:
                query, values = _insert(table, {**row, **{k: f"{row[k]}-again" for k in ("id", "body_sha256") if k in row}})
                await tx.execute(query, **values)
                newest = await tx.fetch_val(sql(f"SELECT MAX(seq) AS seq FROM {table}"))
                assert newest == row["seq"] + 1, table
    finally:
        await db.disconnect()


def _typed(row: dict[str, Any]) -> dict[str, Any]:
    """Values with their types: False == 0 in Python, but a flag must come back as a bool."""
    return {k: (type(v).__name__, v, getattr(v, "utcoffset", lambda: None)()) for k, v in row.items()}


async def _index_names(tx: Tx) -> set[str]:
    if tx.dialect == "sqlite":
        query = sql("SELECT name FROM sqlite_master WHERE type = 'index'")
    else:
        query = sql("SELECT indexname AS name FROM pg_indexes WHERE schemaname = 'public'")
    return {r["name"] for r in await tx.fetch_all(query)}
