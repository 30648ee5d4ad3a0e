"""Several web processes on one database: verdicts exactly once, long-polls woken across processes."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from service.settings import Settings
from service.store.connector import Database, sql
from service.web.app import create_app

from .helpers import AUTH, CALLBACK_SECRET, FakeClock, booking_event, create_account, failure, phase, post_webhook, record

T = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


@contextlib.asynccontextmanager
async def web_process(settings: Settings, clock: FakeClock) -> AsyncIterator[tuple[object, httpx.AsyncClient]]:
    """One more `web` process: its own app, connection pool, ingest writer and notifier."""
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://web") as http:
            yield app, http


async def test_racing_webhooks_and_intakes_resolve_each_verification_exactly_once(
    settings: Settings, clock: FakeClock, db: Database
) -> None:
    n = 40
    rng = random.Random(7)
    async with web_process(settings, clock) as (_, a), web_process(settings, clock) as (_, b):
        await create_account(a, callback_url="https://platform.example/hooks", callback_secret=CALLBACK_SECRET)
        jobs = []
        for i in range(n):
            start = T + timedelta(hours=i)  # far apart: each booking belongs to exactly one appointment
            intake_via, hook_via = rng.sample([a, b], 2)
            jobs.append(record(intake_via, failure(appointment_id=str(i), phases=[phase("A", start)])))
            jobs.append(post_webhook(hook_via, booking_event(uid=f"b{i}", start=start)))
            jobs.append(post_webhook(intake_via, booking_event(uid=f"b{i}", start=start)))  # a duplicate delivery
        rng.shuffle(jobs)
        responses = await asyncio.gather(*jobs)
        assert all(r.status_code in (200, 201) for r in responses), [r.text for r in responses if r.status_code >= 300]
        listing = (await a.get("/api/verifications", params={"limit": "200"}, headers=AUTH)).json()["items"]
    assert len(listing) == n
    assert {v["status"] for v in listing} == {"verified"}
    assert {v["appointment_id"]: v["phases"][0]["booking"]["uid"] for v in listing} == {str(i): f"b{i}" for i in range(n)}
    async with db.read() as tx:
        claims = await tx.fetch_val(sql("SELECT COUNT(*) AS n FROM booking_claims"))
        events = await tx.fetch_all(sql("SELECT verification_seq, COUNT(*) AS n FROM outbox GROUP BY verification_seq"))
        stored = await tx.fetch_val(sql("SELECT COUNT(*) AS n FROM webhook_events"))
    assert claims == n
    assert len(events) == n and {e["n"] for e in events} == {1}  # one verdict event each
    assert stored == n  # duplicates stored once


async def test_contended_booking_goes_to_one_verification_only(settings: Settings, clock: FakeClock, db: Database) -> None:
    async with web_process(settings, clock) as (_, a), web_process(settings, clock) as (_, b):
        await create_account(a)
        # Ten appointments at increasing distance from one booking: only the nearest may have it.
        jobs = [
            record(a if i % 2 else b, failure(appointment_id=str(i), phases=[phase("A", T + timedelta(seconds=10 * i))])) for i in range(10)
        ]
        jobs.append(post_webhook(b, booking_event(uid="only", start=T)))
        await asyncio.gather(*jobs)
        items = (await a.get("/api/verifications", params={"limit": "50"}, headers=AUTH)).json()["items"]
    verified = [v for v in items if v["status"] == "verified"]
    assert len(verified) <= 1
    async with db.read() as tx:
        assert await tx.fetch_val(sql("SELECT COUNT(*) AS n FROM booking_claims")) == len(verified)


async def test_long_poll_wakes_when_another_web_process_receives_the_webhook(settings: Settings, clock: FakeClock) -> None:
    async with web_process(settings, clock) as (app_a, a), web_process(settings, clock) as (_, b):
        await create_account(a)
        pending = (await record(a, failure())).json()
        waiter = asyncio.create_task(a.get(f"/api/verifications/{pending['id']}", params={"wait": "20"}, headers=AUTH))
        notifier = app_a.state.services.notifier  # type: ignore[attr-defined]
        while not notifier._waiters.get(pending["id"]):
            await asyncio.sleep(0)
        assert (await post_webhook(b, booking_event(uid="hh-1", start=T))).status_code == 200
        response = await asyncio.wait_for(waiter, timeout=15)
    assert response.json()["status"] == "verified"


@pytest.mark.parametrize("rounds", [3])
async def test_replayed_intake_under_concurrency_creates_one_verification(
    settings: Settings, clock: FakeClock, db: Database, rounds: int
) -> None:
    async with web_process(settings, clock) as (_, a), web_process(settings, clock) as (_, b):
        await create_account(a)
        for r in range(rounds):
            body = failure(appointment_id=f"dup-{r}")
            responses = await asyncio.gather(*[record(a if i % 2 else b, body) for i in range(8)])
            assert sorted(x.status_code for x in responses) == [200] * 7 + [201]
            assert len({x.json()["id"] for x in responses}) == 1
    async with db.read() as tx:
        assert await tx.fetch_val(sql("SELECT COUNT(*) AS n FROM verifications")) == rounds
