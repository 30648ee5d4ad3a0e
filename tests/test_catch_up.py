"""An intake waits for the webhooks already answered to be matched — for a bounded time, never for ever.

Matching follows the webhook's answer. A failure recorded just after its booking's webhook waits
for that match so it verifies inside its call; but a matcher that is slow (or stuck) must not hold
the platform's request: past the bound the intake answers pending, and the match, when it comes,
still settles the verification.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from service.app import ingest

from .helpers import AUTH, booking_event, create_account, failure, phase, post_webhook, record

START = datetime(2026, 12, 1, 10, 0, tzinfo=timezone(timedelta(hours=1)))


async def test_a_stuck_matcher_delays_an_intake_by_the_bound_only_and_the_late_match_still_verifies(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest, "CATCH_UP_SECONDS", 0.05)
    ingestor = app.state.services.ingestor
    gate = asyncio.Event()
    entered = asyncio.Event()
    match = ingestor.matcher.match

    async def held(batch: list[Any]) -> None:
        entered.set()
        await gate.wait()
        await match(batch)

    monkeypatch.setattr(ingestor.matcher, "match", held)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://verifier.test") as client:
        await create_account(client)
        answered = await post_webhook(client, booking_event(uid="bk-late", start=START))
        assert answered.status_code == 200  # stored and answered; its match is held
        await entered.wait()

        recorded = await record(client, failure(phases=[phase("A", START)]))
        assert recorded.status_code == 201
        view = recorded.json()
        assert view["status"] == "pending"  # the intake did not wait for the stuck match

        gate.set()
        settled = await client.get(f"/api/verifications/{view['id']}", params={"wait": "10"}, headers=AUTH)
        assert settled.json()["status"] == "verified"
        assert settled.json()["resolved_via"] == "webhook"


async def test_an_intake_right_after_its_webhook_verifies_inside_the_call(app: Any) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://verifier.test") as client:
        await create_account(client)
        assert (await post_webhook(client, booking_event(uid="bk-1", start=START))).status_code == 200
        recorded = await record(client, failure(phases=[phase("A", START)]))
        assert recorded.status_code == 201 and recorded.json()["status"] == "verified"
