"""A busy salon's bad Cal.com day: eight staff back to back, many creates failing although booked.

The service sees every booking of the account, but not which of them belong to the platform's
successful creates. Time alone therefore never identifies a booking: with phases known only by
their times nothing is verified (each goes to review with its candidates), while phases that name
their customer are each verified with their own booking and real failures are never verified.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import httpx

from service.testing.fakecalcom import FakeCalcom
from service.workers.poller import Poller

from .helpers import API_KEY, AUTH, FakeClock, booking_event, create_account, post_webhook
from .test_poller import CALCOM, CHECKS, calcom_http, fake, poller, run_schedule  # noqa: F401 (fixtures)

DAY = datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)
STAFF = [f"staff{n}@salon.example" for n in range(8)]
SLOTS = 16  # 30-minute appointments, 08:00-16:00


@dataclass(frozen=True)
class Appointment:
    id: str
    host: str
    customer: str
    start: datetime
    outcome: str  # ok (the create succeeded), false_negative (booked, but the call failed), taken (a real failure)


def the_day(seed: int) -> list[Appointment]:
    rnd = random.Random(seed)
    day = []
    for s, host in enumerate(STAFF):
        for slot in range(SLOTS):
            n = s * SLOTS + slot
            roll = rnd.random()
            outcome = "ok" if roll < 0.7 else ("false_negative" if roll < 0.95 else "taken")
            day.append(Appointment(str(1000 + n), host, f"customer{n}@example.com", DAY + timedelta(minutes=30 * slot), outcome))
    return day


async def live_through(
    client: httpx.AsyncClient, fake: FakeCalcom, poller: Poller, clock: FakeClock, day: list[Appointment], name_customer: bool
) -> dict[str, dict]:
    """Cal.com's webhooks for every booking of the day, the platform's failures, then the checks."""
    start = clock()
    rnd = random.Random(7)
    bookings = []
    for a in day:
        if a.outcome in ("ok", "false_negative"):
            bookings.append((f"bk-{a.id}", a.host, a.customer, a.start))
        else:  # the slot really was taken: another customer of the same staff member holds it
            bookings.append((f"walk-in-{a.id}", a.host, f"walk-in-{a.id}@example.com", a.start))
    rnd.shuffle(bookings)
    failures = [a for a in day if a.outcome != "ok"]
    ids = {}
    for a in failures:
        phase = {"key": "A", "start": a.start.isoformat(), "end": (a.start + timedelta(minutes=30)).isoformat()}
        if name_customer:
            phase["attendee_email"] = a.customer
        body = {"account": "salon-1", "appointment_id": a.id, "sync_error": "Cal.com HTTP 400", "phases": [phase]}
        ids[a.id] = (await client.post("/api/verifications", json=body, headers=AUTH)).json()["id"]
    for uid, host, customer, at in bookings:
        fake.add_booking(API_KEY, uid=uid, start=at, end=at + timedelta(minutes=30), hosts=[host], attendees=[customer])
        await post_webhook(client, booking_event(uid=uid, start=at, organizer=host, attendees=(customer,)))
    await run_schedule(poller, clock, start)
    return {a.id: (await client.get(f"/api/verifications/{ids[a.id]}", headers=AUTH)).json() for a in failures}


async def test_time_alone_never_verifies_a_booking_on_a_busy_day(client, fake: FakeCalcom, poller: Poller, clock: FakeClock) -> None:
    await create_account(client, calcom_api_base=CALCOM)
    day = the_day(seed=2026)
    verdicts = await live_through(client, fake, poller, clock, day, name_customer=False)
    assert verdicts and all(v["status"] == "manual_review" for v in verdicts.values())
    # Eight bookings start at every slot: the candidates are shown, but nothing is guessed.
    assert {v["review_reason"] for v in verdicts.values()} <= {"unconfirmed_match", "ambiguous_match"}


async def test_phases_that_name_the_customer_verify_exactly_their_own_bookings(
    client, fake: FakeCalcom, poller: Poller, clock: FakeClock
) -> None:
    await create_account(client, calcom_api_base=CALCOM)
    day = the_day(seed=2026)
    verdicts = await live_through(client, fake, poller, clock, day, name_customer=True)
    by_id = {a.id: a for a in day}
    false_negatives = [i for i, a in by_id.items() if a.outcome == "false_negative"]
    taken = [i for i, a in by_id.items() if a.outcome == "taken"]
    assert false_negatives and taken
    for appointment in false_negatives:
        view = verdicts[appointment]
        assert view["status"] == "verified" and view["phases"][0]["booking"]["uid"] == f"bk-{appointment}"
    for appointment in taken:
        assert (verdicts[appointment]["status"], verdicts[appointment]["review_reason"]) == ("manual_review", "no_booking_found")
