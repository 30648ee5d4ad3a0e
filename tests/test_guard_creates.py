"""Creates through the booking guard against the fake Cal.com: what the platform hears, what is stored."""

from __future__ import annotations

import httpx
import pytest

from service.store.connector import Database, sql
from service.testing.fakecalcom import FakeCalcom

from .guard_kit import (  # noqa: F401 (fixtures)
    CREATE,
    book,
    bookings_in,
    calcom_transport,
    fake,
    guard_timeout,
    hooks,
    salon,
    settings,
    unsubscribed,
    verification,
)
from .helpers import AUTH


async def test_a_create_that_succeeds_is_answered_as_cal_com_answered_it_tagged(client, fake: FakeCalcom, salon) -> None:
    response = await book(client)

    assert response.status_code == 201
    data = response.json()["data"]
    (held,) = bookings_in(fake)
    assert data["uid"] == held["uid"] and data["id"] == held["id"]
    assert data["metadata"]["appointment_id"] == "762" and data["metadata"]["phase"] == "A"
    assert data["metadata"]["verifier_ref"].startswith("vr_") and len(data["metadata"]["verifier_ref"]) <= 40
    assert "x-verifier-recovered" not in response.headers
    assert response.headers["x-ratelimit-remaining-default"]  # Cal.com's own headers come back


@pytest.mark.parametrize("mode, label", [("error_after_write_500", "500"), ("error_after_write_400", "400")])
async def test_an_error_after_the_row_is_written_is_answered_201_with_the_booking_cal_com_holds(
    client, fake: FakeCalcom, salon, mode: str, label: str
) -> None:
    fake.fail_next_create(mode)

    response = await book(client)

    assert response.status_code == 201 and response.headers["x-verifier-recovered"] == label
    (held,) = bookings_in(fake)
    body = response.json()
    assert body["status"] == "success" and body["data"]["uid"] == held["uid"] and body["data"]["id"] == held["id"]
    view = await verification(client, response.headers["x-verification-id"])
    assert (view["status"], view["resolved_via"]) == ("verified", "guard")
    assert view["appointment_id"] == "762" and view["phases"][0]["booking"]["uid"] == held["uid"]
    status = (await client.get("/status", headers=AUTH)).json()
    assert status["false_negatives_caught"] == 1 and status["resolved_via"]["guard"] == 1
    assert status["traffic"]["guard_requests"] == {"recovered": 1}


async def test_without_webhooks_the_guard_finds_the_booking_by_asking_cal_com(client, fake: FakeCalcom, unsubscribed) -> None:
    fake.fail_next_create("error_after_write_500")

    response = await book(client)

    assert response.status_code == 201 and response.headers["x-verifier-recovered"] == "500"
    (held,) = bookings_in(fake)
    assert response.json()["data"]["uid"] == held["uid"]
    view = await verification(client, response.headers["x-verification-id"])
    assert (view["status"], view["resolved_via"]) == ("verified", "guard")


async def test_an_answer_after_the_timeout_is_recovered_from_the_webhook_that_came_first(client, fake: FakeCalcom, salon) -> None:
    fake.fail_next_create("slow_answer")

    response = await book(client)

    assert response.status_code == 201 and response.headers["x-verifier-recovered"] == "timeout"
    (held,) = bookings_in(fake)
    assert response.json()["data"]["uid"] == held["uid"]
    fake.release_answers()


async def test_a_slot_really_taken_passes_cal_coms_400_through_and_records_nothing(client, fake: FakeCalcom, salon, db: Database) -> None:
    fake.fail_next_create("conflict")

    response = await book(client)

    assert response.status_code == 400
    assert response.json()["error"]["message"] == "User either already has booking at this time or is not available"
    assert bookings_in(fake) == []
    async with db.read() as tx:
        assert await tx.fetch_all(sql("SELECT id FROM verifications")) == []


async def test_a_second_create_for_the_same_host_and_slot_gets_cal_coms_400(client, fake: FakeCalcom, salon) -> None:
    first = await book(client)
    second = await book(client, attendee={"name": "Eva", "email": "eva@kunde.example", "timeZone": "Europe/Berlin"})

    assert first.status_code == 201
    assert second.status_code == 400 and "already has booking" in second.json()["error"]["message"]
    assert len(bookings_in(fake)) == 1


@pytest.mark.parametrize("mode", ["webhook_failing", "webhook_skipped"])
async def test_a_create_whose_webhook_is_lost_is_still_answered_201(client, fake: FakeCalcom, salon, mode: str) -> None:
    fake.fail_next_create(mode)

    response = await book(client)

    assert response.status_code == 201 and "x-verifier-recovered" not in response.headers
    assert response.json()["data"]["uid"] == bookings_in(fake)[0]["uid"]


@pytest.mark.parametrize("mode, status", [("rate_limited_429", 429), ("unavailable_5xx", 503)])
async def test_a_refusal_before_anything_is_written_is_passed_through(
    client, fake: FakeCalcom, salon, db: Database, mode: str, status: int
) -> None:
    fake.fail_next_create(mode)

    response = await book(client)

    assert response.status_code == status and "x-verifier-recovered" not in response.headers
    assert bookings_in(fake) == []
    async with db.read() as tx:
        assert await tx.fetch_all(sql("SELECT id FROM verifications")) == []


async def test_a_429_pauses_the_key_for_the_poller_too(client, fake: FakeCalcom, salon, db: Database, app) -> None:
    fake.fail_next_create("rate_limited_429")

    await book(client)
    await _settle_background(app)

    async with db.read() as tx:
        paces = await tx.fetch_all(sql("SELECT paused_until_at FROM calcom_keys"))
    assert paces and paces[0]["paused_until_at"] is not None


async def test_when_nobody_can_tell_the_answer_is_502_with_a_pending_verification_that_settles_later(
    client, fake: FakeCalcom, unsubscribed, db: Database, settings, clock
) -> None:
    from service.clients.calcom import CalcomClient
    from service.workers.poller import Poller

    fake.fail_next_create("error_after_write_500")
    fake.fail_next(1, 503)  # the guard's one read fails too

    response = await book(client)

    assert response.status_code == 502 and response.json()["error"]["code"] == "calcom_outcome_unknown"
    verification_id = response.headers["x-verification-id"]
    assert response.json()["verification_id"] == verification_id
    assert (await verification(client, verification_id))["status"] == "pending"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app)) as http:
        poller = Poller(db, settings, CalcomClient(http, clock=clock), clock=clock, owner="p1")
        await poller.tick(clock.advance(3))
    view = await verification(client, verification_id)
    assert view["status"] == "verified" and view["phases"][0]["booking"]["uid"] == bookings_in(fake)[0]["uid"]


async def test_cal_com_down_is_a_502_never_a_guess(client, fake: FakeCalcom, salon) -> None:
    fake.set_down(True)

    response = await book(client)

    assert response.status_code == 502 and response.headers["x-verification-id"]
    fake.set_down(False)
    assert bookings_in(fake) == []


async def test_a_body_that_is_not_json_is_forwarded_untagged(client, fake: FakeCalcom, salon) -> None:
    response = await client.post(
        "/calcom/salon-1/v2/bookings", content=b"start=tomorrow", headers={**_platform(), "Content-Type": "text/plain"}
    )

    assert response.headers["x-verifier-untagged"] == "not-json" and response.status_code == 400
    assert fake.creates == 1


async def test_a_body_with_fifty_metadata_keys_is_forwarded_untagged(client, fake: FakeCalcom, salon) -> None:
    response = await book(client, metadata={f"k{n}": "v" for n in range(50)})

    assert response.status_code == 201 and response.headers["x-verifier-untagged"] == "metadata-full"
    assert "verifier_ref" not in response.json()["data"]["metadata"]


async def test_a_recurring_create_recovers_every_occurrence(client, fake: FakeCalcom, salon) -> None:
    fake.set_event_type(2002, recurring=3)
    fake.fail_next_create("error_after_write_500")

    response = await book(client, eventTypeId=2002, recurrenceCount=3)

    assert response.status_code == 201
    data = response.json()["data"]
    assert isinstance(data, list) and sorted(d["uid"] for d in data) == sorted(b["uid"] for b in bookings_in(fake))


async def test_a_seated_create_recovers_the_callers_seat(client, fake: FakeCalcom, salon) -> None:
    fake.set_event_type(3003, seats=4)
    await book(client, eventTypeId=3003, attendee={"name": "Eva", "email": "eva@kunde.example", "timeZone": "Europe/Berlin"})
    fake.fail_next_create("error_after_write_500")

    response = await book(client, eventTypeId=3003)

    assert response.status_code == 201
    data = response.json()["data"]
    seat = next(a for a in bookings_in(fake)[0]["attendees"] if a["email"] == "max@kunde.example")
    assert data["seatUid"] == seat["seatUid"]


def _platform() -> dict[str, str]:
    from .guard_kit import PLATFORM

    return dict(PLATFORM)


async def _settle_background(app) -> None:
    """Wait for the guard's background pace writes (they run after the answer)."""
    import asyncio

    tasks = list(app.state.services.bookings._tasks)
    if tasks:
        await asyncio.gather(*tasks)


assert CREATE  # the create every test starts from
