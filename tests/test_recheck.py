"""After a Cal.com outage: rechecking unknown outcomes, what `checks` and `attempts` count, how the outage reads."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from service.app.intake import Intake
from service.app.notify import Notifier
from service.clients.calcom import CalcomClient
from service.core.models import VerificationIn, parse
from service.core.ratelimit import key_name
from service.settings import Settings
from service.store.connector import Database, sql
from service.store.queries import accounts as account_store
from service.store.queries import verifications as verification_store
from service.testing.fakecalcom import FakeCalcom
from service.workers.poller import Poller

from .helpers import API_KEY, AUTH, CUSTOMER, WEBHOOK_SECRET, FakeClock, booking_event, create_account, failure, post_webhook, record

CALCOM = "http://calcom.test"
T = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)  # the appointment (10:00+01:00)
ALL_CHECKS = 762  # seconds from recording to the deadline with the default schedule


@pytest.fixture
def fake(clock: FakeClock) -> FakeCalcom:
    calcom = FakeCalcom(clock=clock)
    calcom.add_api_key(API_KEY)
    return calcom


@pytest.fixture
async def poller(db: Database, settings: Settings, fake: FakeCalcom, clock: FakeClock) -> AsyncIterator[Poller]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app)) as http:
        yield Poller(db, settings, CalcomClient(http, clock=clock), clock=clock, owner="p1")


@pytest.fixture
async def account(client: httpx.AsyncClient) -> None:
    await create_account(client, calcom_api_base=CALCOM)


async def show(client: httpx.AsyncClient, verification_id: str) -> dict:
    return (await client.get(f"/api/verifications/{verification_id}", headers=AUTH)).json()


async def ticks(poller: Poller, clock: FakeClock, seconds: int) -> None:
    """One tick a second for `seconds` seconds of the injected clock."""
    for _ in range(seconds):
        clock.advance(1)
        await poller.tick(clock())


async def unknown_outcome(client: httpx.AsyncClient, poller: Poller, fake: FakeCalcom, clock: FakeClock) -> str:
    """A verification whose every check failed: in review as calcom_unavailable."""
    fake.set_down(True)
    verification_id = (await record(client, failure())).json()["id"]
    await ticks(poller, clock, ALL_CHECKS + 1)
    body = await show(client, verification_id)
    assert (body["status"], body["review_reason"]) == ("manual_review", "calcom_unavailable")
    fake.set_down(False)
    return str(verification_id)


def recheck(client: httpx.AsyncClient, verification_id: str, **kwargs: object):  # type: ignore[no-untyped-def]
    return client.post(f"/api/verifications/{verification_id}/recheck", headers=AUTH, **kwargs)


async def test_recheck_after_an_outage_verifies_a_booking_that_exists(client, account, poller, fake: FakeCalcom, clock: FakeClock) -> None:
    verification_id = await unknown_outcome(client, poller, fake, clock)
    fake.add_booking(API_KEY, uid="bk-1", start=T, end=T + timedelta(minutes=30), attendees=[CUSTOMER])
    response = await recheck(client, verification_id)
    assert response.status_code == 202
    body = response.json()
    assert (body["status"], body["review_reason"], body["resolved_via"]) == ("pending", None, None)
    assert body["next_check_at"] == clock().isoformat().replace("+00:00", "Z")
    assert [p["status"] for p in body["phases"]] == ["pending"]
    # Checked at the next tick, or (were the key in Cal.com's 60 s block) as soon as the block ends.
    for _ in range(66):
        clock.advance(1)
        await poller.tick(clock())
        body = await show(client, verification_id)
        if body["status"] != "pending":
            break
    assert (body["status"], body["resolved_via"]) == ("verified", "poll")
    assert body["phases"][0]["booking"]["uid"] == "bk-1"


async def set_pause(db: Database, until: datetime, now: datetime) -> None:
    """Replace whatever pause the outage left on the key (the store keeps the later of two pauses)."""
    async with db.transaction() as tx:
        await account_store.set_pace(tx, key_name(API_KEY), paused_until=None, remaining=None, reset_at=None, now=now)
        await tx.execute(sql("UPDATE calcom_keys SET paused_until_at = :until"), until=until)


@pytest.mark.parametrize(("paused_for", "first_call_after"), [(200, 1), (30, 30)])
async def test_a_recheck_lifts_our_backoff_but_not_calcoms_block(
    client, account, poller, fake: FakeCalcom, clock: FakeClock, db: Database, paused_for: int, first_call_after: int
) -> None:
    verification_id = await unknown_outcome(client, poller, fake, clock)
    # 200 s can only be our backoff; 30 s may be what is left of Cal.com's 60 s block after a 429.
    await set_pause(db, clock() + timedelta(seconds=paused_for), clock())
    calls = fake.calls
    assert (await recheck(client, verification_id)).status_code == 202
    await ticks(poller, clock, first_call_after - 1)
    assert fake.calls == calls
    await ticks(poller, clock, 1)
    assert fake.calls == calls + 1


async def test_a_recheck_without_a_booking_is_decided_by_its_first_complete_answer(client, account, poller, fake, clock, db) -> None:
    verification_id = await unknown_outcome(client, poller, fake, clock)
    await set_pause(db, clock(), clock())  # whatever pause the outage left has run out
    assert (await recheck(client, verification_id)).status_code == 202
    clock.advance(1)
    await poller.tick(clock())
    body = await show(client, verification_id)
    # Now Cal.com answered: no booking is a fact, not an unknown.
    assert (body["status"], body["review_reason"]) == ("manual_review", "no_booking_found")
    assert [p["status"] for p in body["phases"]] == ["missing"] and body["checks"] == 1


async def test_a_recheck_while_calcom_is_still_down_returns_to_unknown_at_its_deadline(client, account, poller, fake, clock) -> None:
    verification_id = await unknown_outcome(client, poller, fake, clock)
    fake.set_down(True)
    assert (await recheck(client, verification_id)).status_code == 202
    await ticks(poller, clock, ALL_CHECKS)
    body = await show(client, verification_id)
    assert (body["status"], body["review_reason"], body["checks"]) == ("manual_review", "calcom_unavailable", 0)
    assert [p["status"] for p in body["phases"]] == ["unknown"]


async def test_a_webhook_after_the_recheck_verifies_it(client, account, poller, fake, clock) -> None:
    verification_id = await unknown_outcome(client, poller, fake, clock)
    assert (await recheck(client, verification_id)).status_code == 202
    assert (await post_webhook(client, booking_event(uid="bk-late", start=T))).status_code == 200
    body = await show(client, verification_id)
    assert (body["status"], body["resolved_via"]) == ("verified", "webhook")


async def test_recheck_of_a_pending_verification_makes_it_due_now(client, account, clock: FakeClock) -> None:
    body = (await record(client, failure())).json()
    assert body["next_check_at"] == (clock() + timedelta(seconds=2)).isoformat().replace("+00:00", "Z")
    response = await recheck(client, body["id"])
    assert response.status_code == 202 and response.json()["next_check_at"] == clock().isoformat().replace("+00:00", "Z")


async def test_recheck_refuses_what_is_known_and_what_does_not_exist(client, account, clock: FakeClock) -> None:
    verified = (await record(client, failure("1"))).json()
    await post_webhook(client, booking_event(uid="bk-1", start=T))
    assert (await show(client, verified["id"]))["status"] == "verified"
    response = await recheck(client, verified["id"])
    assert response.status_code == 409 and "is verified" in response.json()["error"]["message"]
    resolved = (await record(client, failure("2", phases=[{"key": "A", "start": "2026-12-03T10:00:00+01:00"}]))).json()
    await client.post(f"/api/verifications/{resolved['id']}/resolve", json={"outcome": "failed"}, headers=AUTH)
    assert (await recheck(client, resolved["id"])).status_code == 409
    assert (await recheck(client, "no-such-verification")).status_code == 404
    pending = (await record(client, failure("3", phases=[{"key": "A", "start": "2026-12-05T10:00:00+01:00"}]))).json()
    response = await recheck(client, pending["id"], json={"now": True})
    assert response.status_code == 422
    assert (await client.post(f"/api/verifications/{pending['id']}/recheck")).status_code == 401


async def test_checks_count_complete_answers_and_attempts_count_every_try(client, account, poller, fake, clock) -> None:
    fake.set_down(True)
    verification_id = (await record(client, failure())).json()["id"]
    await ticks(poller, clock, 60)
    failing = await show(client, verification_id)
    assert failing["checks"] == 0 and failing["attempts"] >= 2  # tried, never answered
    fake.set_down(False)
    await ticks(poller, clock, ALL_CHECKS)
    body = await show(client, verification_id)
    assert body["status"] == "manual_review" and body["review_reason"] == "no_booking_found"
    assert 1 <= body["checks"] < body["attempts"]
    assert body["attempts"] == failing["attempts"] + body["checks"]


async def test_an_outage_reads_as_unknown_in_the_log_never_as_no_booking(client, account, poller, fake, clock, caplog) -> None:
    caplog.set_level(logging.INFO)
    await unknown_outcome(client, poller, fake, clock)
    verdicts = [r for r in caplog.records if getattr(r, "event", "").startswith("verification_")]
    assert [r.event for r in verdicts if r.event != "verification_recorded"] == ["verification_outcome_unknown"]  # type: ignore[attr-defined]
    assert "outcome unknown" in verdicts[-1].getMessage()
    assert not any("no matching booking found" in r.getMessage() for r in caplog.records)


async def test_an_empty_check_schedule_makes_the_first_check_final(
    db: Database, settings: Settings, fake: FakeCalcom, clock: FakeClock
) -> None:
    # CHECK_SCHEDULE= (empty) is documented as: one check at SETTLE_SECONDS, and its answer is final.
    single = settings.model_copy(update={"check_schedule": ()})
    async with db.transaction() as tx:
        await account_store.upsert(
            tx,
            "salon-1",
            {
                "calcom_api_key": API_KEY,
                "webhook_secret": WEBHOOK_SECRET,
                "calcom_api_base": CALCOM,
                "callback_url": None,
                "callback_secret": None,
                "match_tolerance_seconds": 300,
                "enabled": True,
            },
            clock(),
        )
    recorded = await Intake(db, single, Notifier(db)).record(parse(VerificationIn, json.dumps(failure()).encode()), clock())
    assert recorded.view["deadline_at"] == recorded.view["next_check_at"]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app)) as http:
        poller = Poller(db, single, CalcomClient(http, clock=clock), clock=clock, owner="p1")
        clock.advance(2)
        await poller.tick(clock())
    async with db.read() as tx:
        row = await verification_store.by_id(tx, recorded.view["id"])
    assert row is not None and (row["status"], row["review_reason"], row["complete_checks"]) == ("manual_review", "no_booking_found", 1)
