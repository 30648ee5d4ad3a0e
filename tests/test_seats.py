"""Seated bookings: each seat is one claimable unit, whichever source reports it.

A webhook names a seat by `attendeeSeatId`, the bookings API by the attendee's `seatUid` (the same
id); a webhook without a seat id stores the booking as a unit without one (""). One physical seat
must never become two or three units an appointment can verify against.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from service.settings import Settings
from service.store.connector import Database, sql
from service.testing.fakecalcom import FakeCalcom
from service.workers.poller import Poller

from .helpers import API_KEY, AUTH, FakeClock, booking_event, create_account, failure, phase, post_webhook, record
from .test_leases import calcom_client

CALCOM = "http://calcom.test"
T = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
EVA, TOM = "eva@example.com", "tom@example.com"
CLAIMS = sql("SELECT booking_seat, verification_seq FROM booking_claims WHERE booking_uid = 'slot' ORDER BY booking_seat")


@pytest.fixture
def fake(clock: FakeClock) -> FakeCalcom:
    calcom = FakeCalcom(clock=clock)
    calcom.add_api_key(API_KEY)
    return calcom


@pytest.fixture
async def account(client: httpx.AsyncClient) -> None:
    await create_account(client, calcom_api_base=CALCOM)


def seated_slot(fake: FakeCalcom) -> None:
    """The slot as Cal.com's bookings API shows it: one booking uid, a seat per attendee."""
    fake.add_booking(
        API_KEY,
        uid="slot",
        start=T,
        end=T + timedelta(minutes=30),
        hosts=["anna@salon.example"],
        seats=[{"email": EVA, "seatUid": "s-eva"}, {"email": TOM, "seatUid": "s-tom"}],
    )


def for_attendee(appointment_id: str, email: str | None, start: datetime = T) -> dict[str, Any]:
    extra = {"attendee_email": email} if email else {}
    return failure(appointment_id=appointment_id, phases=[phase("A", start, **extra)])


async def poll(db: Database, settings: Settings, fake: FakeCalcom, clock: FakeClock) -> None:
    clock.advance(2)
    await Poller(db, settings, calcom_client(fake, clock), clock=clock, owner="p1").tick(clock())


async def view(client: httpx.AsyncClient, verification: dict[str, Any]) -> dict[str, Any]:
    return (await client.get(f"/api/verifications/{verification['id']}", headers=AUTH)).json()


async def test_a_seat_seen_first_without_its_id_then_by_the_poll_verifies_one_appointment(
    client: httpx.AsyncClient, account: None, db: Database, settings: Settings, fake: FakeCalcom, clock: FakeClock
) -> None:
    assert (await post_webhook(client, booking_event(uid="slot", start=T, attendees=(EVA,)))).status_code == 200
    first = (await record(client, for_attendee("1", EVA))).json()
    assert first["status"] == "verified"
    seated_slot(fake)
    second = (await record(client, for_attendee("2", EVA))).json()  # Eva's one seat is taken
    assert second["status"] == "pending"
    await poll(db, settings, fake, clock)
    assert (await view(client, second))["status"] == "pending"
    async with db.read() as tx:
        claims = [(r["booking_seat"], r["verification_seq"]) for r in await tx.fetch_all(CLAIMS)]
    assert [seat for seat, _ in claims] == ["", "s-eva"] and len({seq for _, seq in claims}) == 1
    tom = (await record(client, for_attendee("3", TOM))).json()
    assert tom["status"] == "verified" and tom["phases"][0]["booking"]["seat_uid"] == "s-tom"


async def test_a_seatless_webhook_after_the_poll_is_the_seat_the_poll_reported(
    client: httpx.AsyncClient, account: None, db: Database, settings: Settings, fake: FakeCalcom, clock: FakeClock
) -> None:
    seated_slot(fake)
    tom = (await record(client, for_attendee("0", TOM))).json()
    await poll(db, settings, fake, clock)
    assert (await view(client, tom))["status"] == "verified"
    assert (await post_webhook(client, booking_event(uid="slot", start=T, attendees=(EVA,)))).status_code == 200
    eva = (await record(client, for_attendee("1", EVA))).json()
    assert eva["status"] == "verified"
    assert eva["phases"][0]["booking"]["seat_uid"] == "s-eva"


@pytest.mark.parametrize("told_by", ["booking_seat", "responses"])
async def test_a_seat_webhook_listing_every_attendee_is_the_seat_of_its_own_attendee(
    client: httpx.AsyncClient, account: None, told_by: str
) -> None:
    await post_webhook(client, booking_event(uid="slot", start=T, attendees=(EVA,), extra={"attendeeSeatId": "s-eva"}))
    # A new seat's webhook may list every attendee of the slot; the new one is Tom.
    tom_seat = booking_event(uid="slot", start=T, attendees=(EVA, TOM), extra={"attendeeSeatId": "s-tom"})
    if told_by == "booking_seat":
        tom_seat["payload"]["attendees"][1]["bookingSeat"] = {"referenceUid": "s-tom"}
    else:
        tom_seat["payload"]["responses"]["email"]["value"] = TOM
    await post_webhook(client, tom_seat)
    eva = (await record(client, for_attendee("1", EVA))).json()
    assert eva["status"] == "verified" and eva["phases"][0]["booking"]["seat_uid"] == "s-eva"


async def seat_webhooks(client: httpx.AsyncClient) -> None:
    for seat, email in (("s-eva", EVA), ("s-tom", TOM)):
        await post_webhook(client, booking_event(uid="slot", start=T, attendees=(email,), extra={"attendeeSeatId": seat}))


async def resolve(client: httpx.AsyncClient, verification: dict[str, Any], booking: str) -> httpx.Response:
    body = {"outcome": "synced", "bookings": {"A": booking}}
    return await client.post(f"/api/verifications/{verification['id']}/resolve", json=body, headers=AUTH)


async def test_an_operator_naming_a_seated_booking_claims_the_seat_of_the_phases_attendee(client: httpx.AsyncClient, account: None) -> None:
    await seat_webhooks(client)
    elsewhere = (await record(client, for_attendee("1", EVA, start=T + timedelta(hours=3)))).json()
    assert elsewhere["status"] == "pending"
    resolved = await resolve(client, elsewhere, "slot")
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["phases"][0]["booking"]["seat_uid"] == "s-eva"
    again = (await record(client, for_attendee("2", EVA))).json()  # Eva's seat is claimed by the operator's choice
    assert again["status"] == "pending"
    tom = (await record(client, for_attendee("3", TOM))).json()
    assert tom["status"] == "verified" and tom["phases"][0]["booking"]["seat_uid"] == "s-tom"


async def test_an_operator_naming_a_seated_booking_without_a_matching_attendee_is_asked_for_the_seat(
    client: httpx.AsyncClient, account: None
) -> None:
    await seat_webhooks(client)
    anyone = (await record(client, for_attendee("1", None, start=T + timedelta(hours=3)))).json()
    refused = await resolve(client, anyone, "slot")
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["details"][0]["field"] == "bookings.A"
    assert "slot/s-eva" in error["message"] and "slot/s-tom" in error["message"]
    assert (await resolve(client, anyone, "slot/s-nobody")).status_code == 422
    chosen = await resolve(client, anyone, "slot/s-tom")
    assert chosen.status_code == 200 and chosen.json()["phases"][0]["booking"]["seat_uid"] == "s-tom"
    tom = (await record(client, for_attendee("2", TOM))).json()
    assert tom["status"] == "pending"
