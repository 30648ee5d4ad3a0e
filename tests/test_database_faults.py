"""The database going away under a running web process: 503 and nothing half-written, then recovery."""

from __future__ import annotations

from datetime import datetime, timezone

import httpx
import pytest

from service.store.connector import Database, sql

from .conftest import _admin_execute
from .helpers import AUTH, booking_event, create_account, failure, post_webhook, record

T = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def pg_name(database_url: str) -> str:
    if database_url.startswith("sqlite"):
        pytest.skip("an embedded SQLite file cannot be taken away from a running process")
    return database_url.rsplit("/", 1)[1]


async def take_down(name: str) -> None:
    await _admin_execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
    await _admin_execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")


async def bring_back(name: str) -> None:
    await _admin_execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")


async def test_webhook_gets_503_while_the_database_is_down_and_200_after(client: httpx.AsyncClient, db: Database, pg_name: str) -> None:
    await create_account(client)
    assert (await post_webhook(client, booking_event(uid="before", start=T))).status_code == 200
    await take_down(pg_name)
    try:
        down = await post_webhook(client, booking_event(uid="during", start=T))
        assert down.status_code == 503
        assert down.json()["error"]["code"] == "database_unavailable"
        intake = await record(client, failure())
        assert intake.status_code == 503
        assert (await client.get("/readyz")).status_code == 503
        assert (await client.get("/healthz")).status_code == 200
    finally:
        await bring_back(pg_name)
    after = await post_webhook(client, booking_event(uid="after", start=T.replace(hour=12)))
    assert after.status_code == 200
    await db.disconnect()
    await db.connect()
    async with db.read() as tx:
        uids = [r["uid"] for r in await tx.fetch_all(sql("SELECT uid FROM booking_observations ORDER BY uid"))]
        verifications = await tx.fetch_val(sql("SELECT COUNT(*) AS n FROM verifications"))
    assert uids == ["after", "before"]  # the 503 one left nothing behind
    assert verifications == 0
    assert (await client.get("/readyz")).status_code == 200
    assert (await record(client, failure())).status_code == 201
    assert (await client.get("/api/verifications", headers=AUTH)).status_code == 200
