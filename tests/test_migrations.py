from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from service.store import migrations
from service.store.connector import Database, sql

from .conftest import PG_SKIP_REASON, PG_URL, _admin_execute, _with_database

ROOT = Path(__file__).resolve().parents[1]


def test_both_dialects_have_the_same_migrations() -> None:
    lite = [version for version, _ in migrations.available("sqlite")]
    pg = [version for version, _ in migrations.available("postgresql")]
    assert lite == pg and lite, "every migration needs a SQLite and a PostgreSQL file"


def test_statement_splitter_ignores_comments() -> None:
    script = "-- a comment; with a semicolon\nCREATE TABLE a (x INT); -- tail\n\nCREATE INDEX i ON a (x);\n"
    assert migrations.statements(script) == ["CREATE TABLE a (x INT)", "CREATE INDEX i ON a (x)"]


async def test_migrate_is_idempotent(db: Database) -> None:
    # The fixture already migrated this database: a second run applies nothing and changes nothing.
    assert await migrations.migrate(db) == []
    assert await migrations.pending(db) == []
    async with db.read() as tx:
        applied = await migrations.applied(tx)
    assert applied == [version for version, _ in migrations.available(db.dialect)]


async def test_fresh_sqlite_database_is_created_under_its_directory(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'nested' / 'dir' / 'v.sqlite3'}")
    await db.connect()
    try:
        assert await migrations.pending(db) == [v for v, _ in migrations.available("sqlite")]
        applied = await migrations.migrate(db)
        assert applied and await migrations.pending(db) == []
        async with db.read() as tx:
            journal = await tx.fetch_val(sql("PRAGMA journal_mode"))
        assert journal == "wal"
    finally:
        await db.disconnect()


def _release(url: str, cwd: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, DATABASE_URL=url, LOG_LEVEL="WARNING")
    return subprocess.Popen(
        [sys.executable, "-m", "service", "migrate"], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.slow
async def test_concurrent_release_processes_on_postgresql(tmp_path: Path) -> None:
    if not PG_URL:
        pytest.skip(PG_SKIP_REASON)
    name = f"verifier_rel_{uuid.uuid4().hex[:8]}"
    await _admin_execute(f"CREATE DATABASE {name}")
    url = _with_database(PG_URL, name)
    try:
        processes = [_release(url, tmp_path) for _ in range(4)]
        results = await asyncio.to_thread(lambda: [p.communicate(timeout=120) + (p.returncode,) for p in processes])
        assert [code for _, _, code in results] == [0, 0, 0, 0], results
        outputs = [out for out, _, _ in results]
        # Exactly one process applied the migrations; the others found them current.
        assert sum("0001_initial" in out for out in outputs) == 1, outputs
        db = Database(url.replace("postgresql://", "postgresql+asyncpg://", 1))
        await db.connect()
        try:
            async with db.read() as tx:
                rows = await tx.fetch_all(sql("SELECT version FROM schema_migrations"))
            assert [r["version"] for r in rows] == [v for v, _ in migrations.available("postgresql")]
        finally:
            await db.disconnect()
    finally:
        await _admin_execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.mark.slow
def test_concurrent_release_processes_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'v.sqlite3'}"
    processes = [_release(url, tmp_path) for _ in range(3)]
    results = [p.communicate(timeout=120) + (p.returncode,) for p in processes]
    assert [code for _, _, code in results] == [0, 0, 0], results
    assert sum("0001_initial" in out for out, _, _ in results) == 1


async def test_web_started_without_release_migrates_itself(tmp_path: Path) -> None:
    import httpx

    from service.settings import Settings
    from service.web.app import create_app

    from .helpers import API_TOKEN

    url = f"sqlite+aiosqlite:///{tmp_path / 'never-released.sqlite3'}"
    app = create_app(Settings(_env_file=None, database_url=url, api_token=API_TOKEN))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            ready = await http.get("/readyz")
            assert ready.status_code == 200 and ready.json()["migrations"] == "current"
