"""Which observation of a booking is newer, when webhooks carry Cal.com's clock and polls carry ours.

Webhooks are ordered among themselves by `createdAt`, polls by fetch time; across sources "gone"
wins (Cal.com never revives a cancelled booking), otherwise the later receipt or fetch refreshes.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from service.core.observations import Observation
from service.settings import Settings
from service.store.connector import Database, sql
from service.store.queries import observations as observation_store
from service.testing.fakecalcom import FakeCalcom
from service.workers.poller import Poller

from .helpers import API_KEY, AUTH, FakeClock, booking_event, create_account, failure, phase, post_webhook, record
from .test_leases import calcom_client

CALCOM = "http://calcom.test"
T = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)  # the booking's start
NOW = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)  # our clock
ROW = sql("SELECT state, calcom_status, event_type_id FROM booking_observations WHERE uid = 'bk'")


def seen(source: str, at: datetime, *, state: str = "exists", status: str = "accepted", event_type_id: int = 101) -> Observation:
    """An observation of booking `bk`: `at` is the webhook's createdAt or the poll's fetch time."""
    return Observation(
        uid="bk",
        start=T,
        state=state,
        event_at=at,
        source=source,  # type: ignore[arg-type]
        calcom_status=status,
        event_type_id=event_type_id,
    )


async def store(db: Database, observation: Observation, received: datetime) -> None:
    """Store one observation as the service does at `received` (our clock)."""
    async with db.transaction() as tx:
        await observation_store.upsert(tx, "salon-1", [observation], received)


async def stored(db: Database) -> dict[str, Any]:
    async with db.read() as tx:
        row = await tx.fetch_one(ROW)
    assert row is not None
    return row


@pytest.mark.parametrize("gone_via", ["webhook", "poll"])
@pytest.mark.parametrize("revived_via", ["webhook", "poll"])
async def test_a_gone_booking_stays_gone_whatever_comes_later(db: Database, gone_via: str, revived_via: str) -> None:
    await store(db, seen(gone_via, NOW, state="gone", status="cancelled"), NOW)
    later = NOW + timedelta(hours=1)
    await store(db, seen(revived_via, later), later)
    assert (await stored(db))["state"] == "gone"


async def test_a_poll_seeing_a_cancellation_wins_over_a_webhook_stamped_by_a_clock_ahead(db: Database) -> None:
    # Cal.com's clock runs 10 minutes ahead of ours: its BOOKING_CREATED says 09:10, received at 09:00.
    await store(db, seen("webhook", NOW + timedelta(minutes=10)), NOW)
    await store(db, seen("poll", NOW + timedelta(minutes=1), state="gone", status="cancelled"), NOW + timedelta(minutes=1))
    assert (await stored(db))["state"] == "gone"


async def test_webhooks_are_ordered_by_created_at_even_when_they_arrive_out_of_order(db: Database) -> None:
    await store(db, seen("webhook", NOW + timedelta(seconds=2), status="accepted"), NOW)
    await store(db, seen("webhook", NOW + timedelta(seconds=1), status="pending"), NOW + timedelta(seconds=5))
    assert (await stored(db))["calcom_status"] == "accepted"


async def test_polls_are_ordered_by_fetch_time(db: Database) -> None:
    await store(db, seen("poll", NOW + timedelta(seconds=10), status="accepted"), NOW + timedelta(seconds=11))
    await store(db, seen("poll", NOW, status="pending"), NOW + timedelta(seconds=12))  # fetched first, stored last
    assert (await stored(db))["calcom_status"] == "accepted"


async def test_a_later_fetch_refreshes_details_whatever_a_webhooks_created_at_says(db: Database) -> None:
    # BOOKING_REQUESTED stamped 09:05 by a clock ahead, received 09:00; our poll at 09:01 finds it accepted.
    await store(db, seen("webhook", NOW + timedelta(minutes=5), status="pending"), NOW)
    await store(db, seen("poll", NOW + timedelta(minutes=1), status="accepted"), NOW + timedelta(minutes=1))
    assert (await stored(db))["calcom_status"] == "accepted"


async def test_a_later_webhook_refreshes_details_whatever_its_created_at_says(db: Database) -> None:
    # Our poll at 09:01 saw event type 101; a webhook stamped 09:00 by a clock behind ours arrives at 09:02.
    await store(db, seen("poll", NOW + timedelta(minutes=1)), NOW + timedelta(minutes=1))
    await store(db, seen("webhook", NOW, event_type_id=202), NOW + timedelta(minutes=2))
    assert (await stored(db))["event_type_id"] == 202


async def test_an_older_webhook_never_overrides_a_newer_one_after_a_poll(db: Database) -> None:
    await store(db, seen("webhook", NOW + timedelta(seconds=2), event_type_id=202), NOW)
    await store(db, seen("poll", NOW + timedelta(seconds=10), event_type_id=202), NOW + timedelta(seconds=10))
    await store(db, replace(seen("webhook", NOW + timedelta(seconds=1)), event_type_id=303), NOW + timedelta(seconds=20))
    assert (await stored(db))["event_type_id"] == 202


# --- end to end: a poll and a webhook racing ----------------------------------------------------


@pytest.fixture
def fake(clock: FakeClock) -> FakeCalcom:
    calcom = FakeCalcom(clock=clock)
    calcom.add_api_key(API_KEY)
    return calcom


async def test_a_poll_answer_from_before_a_cancellation_does_not_revive_the_booking(
    client: httpx.AsyncClient, db: Database, settings: Settings, fake: FakeCalcom, clock: FakeClock
) -> None:
    await create_account(client, calcom_api_base=CALCOM)
    fake.add_booking(API_KEY, uid="bk", start=T, end=T + timedelta(minutes=30), hosts=["anna@salon.example"])
    pending = (await record(client, failure(phases=[phase("A", T)]))).json()
    clock.advance(2)

    async def cancelled_meanwhile(request: httpx.Request, n: int) -> None:
        # Cal.com's answer (the booking, accepted) is on its way when the booking is cancelled; the
        # BOOKING_CANCELLED it sends is stamped by a clock 30 s behind ours and lands first.
        cancel = booking_event("BOOKING_CANCELLED", uid="bk", start=T, created_at=clock() - timedelta(seconds=30))
        assert (await post_webhook(client, cancel)).status_code == 200

    poller = Poller(db, settings, calcom_client(fake, clock, cancelled_meanwhile), clock=clock, owner="p1")
    await poller.tick(clock())
    assert (await stored(db))["state"] == "gone"
    body = (await client.get(f"/api/verifications/{pending['id']}", headers=AUTH)).json()
    assert body["status"] == "pending"


async def test_a_poll_that_finds_the_booking_cancelled_wins_over_a_webhook_from_a_clock_ahead(
    client: httpx.AsyncClient, db: Database, settings: Settings, fake: FakeCalcom, clock: FakeClock
) -> None:
    await create_account(client, calcom_api_base=CALCOM)
    # BOOKING_CREATED from a Cal.com whose clock is 10 minutes ahead of ours.
    created = booking_event(uid="bk", start=T, organizer="other@salon.example", created_at=clock() + timedelta(minutes=10))
    assert (await post_webhook(client, created)).status_code == 200
    fake.add_booking(API_KEY, uid="bk", start=T, end=T + timedelta(minutes=30), hosts=["other@salon.example"])
    fake.cancel_booking("bk")
    # Another appointment's window covers the booking, so the poll sees it (cancelled).
    await record(client, failure(appointment_id="1", phases=[phase("A", T, host_email="anna@salon.example")]))
    clock.advance(2)
    await Poller(db, settings, calcom_client(fake, clock), clock=clock, owner="p1").tick(clock())
    assert (await stored(db))["state"] == "gone"
    later = (await record(client, failure(appointment_id="2", phases=[phase("A", T)]))).json()
    assert later["status"] == "pending"
