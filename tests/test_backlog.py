"""Whoever decides takes the webhooks already answered but not yet matched: nobody waits for the matcher.

A webhook is answered once stored and matched just after. A failure recorded (or a guarded create)
in between must still see that webhook's booking, so the intake matches the account's backlog in its
own transaction, and the matcher, when it comes, finds those events claimed and skips them: each
event is matched exactly once, and a slow or stuck matcher delays nobody.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from service.app import matcher as matching
from service.store.connector import sql

from .helpers import AUTH, booking_event, create_account, failure, phase, post_webhook, record

START = datetime(2026, 12, 1, 10, 0, tzinfo=timezone(timedelta(hours=1)))


def hold_matcher(app: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[asyncio.Event, asyncio.Event, asyncio.Event]:
    """The matcher takes its batch, then waits for `gate` before matching it; `done` once it has."""
    matcher = app.state.services.ingestor.matcher
    gate, entered, done = asyncio.Event(), asyncio.Event(), asyncio.Event()
    match = matcher.match

    async def held(batch: list[Any]) -> None:
        entered.set()
        await gate.wait()
        await match(batch)
        done.set()

    monkeypatch.setattr(matcher, "match", held)
    return gate, entered, done


async def unmatched(app: Any) -> list[int]:
    async with app.state.services.db.read() as tx:
        return [int(r["unmatched"]) for r in await tx.fetch_all(sql("SELECT unmatched FROM webhook_events ORDER BY seq"))]


async def test_an_intake_matches_the_backlog_itself_and_the_stuck_matcher_later_skips_it(app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    gate, entered, done = hold_matcher(app, monkeypatch)
    matcher = app.state.services.ingestor.matcher
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://verifier.test") as client:
        await create_account(client)
        answered = await post_webhook(client, booking_event(uid="bk-late", start=START))
        assert answered.status_code == 200  # stored and answered; the matcher holds its batch
        await entered.wait()
        assert await unmatched(app) == [1]

        recorded = await record(client, failure(phases=[phase("A", START)]))
        assert recorded.status_code == 201
        assert recorded.json()["status"] == "verified"  # inside the call, without the matcher
        assert await unmatched(app) == [0]

        gate.set()
        await done.wait()
        assert matcher.matched == 0  # the event was claimed by the intake: matched once, not twice
        view = (await client.get(f"/api/verifications/{recorded.json()['id']}", headers=AUTH)).json()
        assert view["status"] == "verified"


async def test_an_intake_right_after_its_webhook_verifies_inside_the_call(app: Any) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://verifier.test") as client:
        await create_account(client)
        assert (await post_webhook(client, booking_event(uid="bk-1", start=START))).status_code == 200
        recorded = await record(client, failure(phases=[phase("A", START)]))
        assert recorded.status_code == 201 and recorded.json()["status"] == "verified"


async def test_a_backlog_of_another_account_is_left_to_the_matcher(app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    gate, entered, done = hold_matcher(app, monkeypatch)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://verifier.test") as client:
        await create_account(client)
        await create_account(client, "salon-2")
        assert (await post_webhook(client, booking_event(uid="bk-2", start=START), account="salon-2")).status_code == 200
        await entered.wait()
        recorded = await record(client, failure(phases=[phase("A", START)]))
        assert recorded.json()["status"] == "pending"  # salon-1 has no booking; salon-2's event is not its business
        assert await unmatched(app) == [1]
        gate.set()
        await done.wait()
        assert await unmatched(app) == [0]


async def test_a_backlog_that_cannot_be_matched_does_not_fail_the_intake(app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    gate, entered, _ = hold_matcher(app, monkeypatch)

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("matching broke")

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://verifier.test") as client:
        await create_account(client)
        assert (await post_webhook(client, booking_event(uid="bk-3", start=START))).status_code == 200
        await entered.wait()
        monkeypatch.setattr(matching, "store_stored", broken)
        recorded = await record(client, failure(phases=[phase("A", START)]))
        assert recorded.status_code == 201 and recorded.json()["status"] == "pending"  # recorded all the same
        assert await unmatched(app) == [1]  # still marked: the matcher (one by one) or the sweep takes it


async def test_the_backlog_is_decided_with_the_failure_being_recorded(app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A booking in the backlog that the new failure competes for is contested: nobody gets it inside the call.

    An older pending verification and the new one both name the customer of one untagged booking that
    arrived just before; handing it to the older one because its decision ran first would be a guess.
    """
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://verifier.test") as client:
        await create_account(client)
        older = await record(client, failure("701", phases=[phase("A", START)]))
        assert older.json()["status"] == "pending"
        gate, entered, done = hold_matcher(app, monkeypatch)
        assert (await post_webhook(client, booking_event(uid="bk-both", start=START))).status_code == 200
        await entered.wait()

        newer = await record(client, failure("702", phases=[phase("A", START)]))
        assert newer.status_code == 201 and newer.json()["status"] == "pending"
        assert await unmatched(app) == [0]  # the backlog was taken by this call
        view = (await client.get(f"/api/verifications/{older.json()['id']}", headers=AUTH)).json()
        assert view["status"] == "pending"  # contested: left to the scheduled check, over the whole group
        gate.set()
        await done.wait()
        view = (await client.get(f"/api/verifications/{older.json()['id']}", headers=AUTH)).json()
        assert view["status"] == "pending"


async def test_an_intake_with_a_backlog_decides_once(app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The backlog's bookings and the new failure go through one decision, not one each."""
    from service.app import settle as settle_module

    decisions: list[str] = []
    settle = settle_module.settle

    async def counted(*args: Any, **kwargs: Any) -> Any:
        decisions.append(kwargs["trigger"])
        return await settle(*args, **kwargs)

    gate, entered, _ = hold_matcher(app, monkeypatch)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://verifier.test") as client:
        await create_account(client)
        tagged = booking_event(uid="bk-tag", start=START, metadata={"appointment_id": "703"})
        assert (await post_webhook(client, tagged)).status_code == 200
        await entered.wait()
        monkeypatch.setattr(settle_module, "settle", counted)
        recorded = await record(client, failure("703", phases=[phase("A", START)]))
        assert recorded.json()["status"] == "verified"
        assert decisions == ["intake"]
        gate.set()
