"""Two web processes creating the same account at once: exactly one answers 201, the other 200."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import httpx

from service.settings import Settings
from service.web.app import create_app

from .conftest import _plain
from .helpers import API_KEY, AUTH, WEBHOOK_SECRET, FakeClock

BODY = {"calcom_api_key": API_KEY, "webhook_secret": WEBHOOK_SECRET}


@contextlib.asynccontextmanager
async def web_process(settings: Settings, clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://web") as http:
            yield http


async def _waiting_on_locks(watcher: asyncpg.Connection, count: int) -> None:
    """Until `count` sessions of this database wait for a lock (an event in the database, polled)."""
    query = (
        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
    )
    while await watcher.fetchval(query) < count:
        await asyncio.sleep(0.01)


async def test_concurrent_puts_of_a_new_account_create_it_once(settings: Settings, clock: FakeClock, database_url: str) -> None:
    async with web_process(settings, clock) as a, web_process(settings, clock) as b:
        if settings.database_url.startswith("sqlite"):
            responses = await asyncio.gather(*(http.put("/api/accounts/salon-9", json=BODY, headers=AUTH) for http in (a, b)))
        else:
            # Hold both requests at their write: another session has the same new id in flight,
            # uncommitted. Both have looked and found no account by the time it goes away.
            gate = await asyncpg.connect(_plain(database_url))
            watcher = await asyncpg.connect(_plain(database_url))
            try:
                held = gate.transaction()
                await held.start()
                await gate.execute(
                    "INSERT INTO accounts (id, calcom_api_key, webhook_secret, created_at, updated_at) "
                    "VALUES ('salon-9', 'k', 's', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')"
                )
                puts = [asyncio.create_task(http.put("/api/accounts/salon-9", json=BODY, headers=AUTH)) for http in (a, b)]
                await _waiting_on_locks(watcher, 2)
                await held.rollback()
                responses = await asyncio.gather(*puts)
            finally:
                await gate.close()
                await watcher.close()
        assert sorted(r.status_code for r in responses) == [200, 201], [r.text for r in responses]
        assert (await a.get("/api/accounts/salon-9", headers=AUTH)).status_code == 200
