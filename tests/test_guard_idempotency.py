"""Idempotency-Key on creates through the guard: replay, reuse with another body, in flight, retry after unknown."""

from __future__ import annotations

import asyncio

import pytest

from service.store.connector import Database, sql
from service.testing.fakecalcom import FakeCalcom

from .guard_kit import (  # noqa: F401 (fixtures)
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
from .helpers import FakeClock


async def test_the_same_key_and_body_replays_the_answer_without_calling_cal_com_again(client, fake: FakeCalcom, salon) -> None:
    first = await book(client, key="appt-762-A")
    again = await book(client, key="appt-762-A")

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert fake.creates == 1 and len(bookings_in(fake)) == 1


async def test_a_refusal_that_created_nothing_is_replayed_too(client, fake: FakeCalcom, salon) -> None:
    fake.fail_next_create("conflict")
    first = await book(client, key="k-1")
    again = await book(client, key="k-1")

    assert first.status_code == again.status_code == 400 and again.headers["idempotent-replayed"] == "true"
    assert fake.creates == 1


async def test_the_same_key_with_another_body_is_422(client, fake: FakeCalcom, salon) -> None:
    await book(client, key="k-1")
    other = await book(client, key="k-1", start="2026-12-01T11:00:00Z")

    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert fake.creates == 1


async def test_a_recovered_create_is_replayed_as_recovered(client, fake: FakeCalcom, salon) -> None:
    fake.fail_next_create("error_after_write_500")
    first = await book(client, key="k-1")
    again = await book(client, key="k-1")

    assert first.status_code == again.status_code == 201 and again.json() == first.json()
    assert fake.creates == 1 and len(bookings_in(fake)) == 1


async def test_a_retry_after_an_unknown_outcome_finds_the_earlier_booking_and_creates_no_second(
    client, fake: FakeCalcom, unsubscribed
) -> None:
    fake.fail_next_create("slow_answer")
    fake.fail_next(1, 503)  # the guard's read after the timeout fails: nobody can tell yet

    first = await book(client, key="appt-762-A")
    retry = await book(client, key="appt-762-A")

    assert first.status_code == 502
    assert retry.status_code == 201 and retry.headers["x-verifier-recovered"] == "earlier-attempt"
    (held,) = bookings_in(fake)
    assert retry.json()["data"]["uid"] == held["uid"]
    assert fake.creates == 1
    assert first.headers["x-verification-id"] == retry.headers["x-verification-id"]  # one create, one verification
    view = await verification(client, retry.headers["x-verification-id"])
    assert (view["status"], view["resolved_via"]) == ("verified", "guard")
    fake.release_answers()


async def test_a_retry_after_a_5xx_that_wrote_nothing_forwards_again(client, fake: FakeCalcom, salon) -> None:
    fake.fail_next_create("unavailable_5xx")

    first = await book(client, key="k-1")
    retry = await book(client, key="k-1")

    assert first.status_code == 503 and retry.status_code == 201
    assert fake.creates == 2 and len(bookings_in(fake)) == 1


@pytest.mark.parametrize("guard_timeout", [60.0])
async def test_concurrent_requests_with_one_key_forward_one_request(client, fake: FakeCalcom, salon, guard_timeout: float) -> None:
    fake.fail_next_create("slow_answer")
    first = asyncio.create_task(book(client, key="k-1"))
    await fake.wait_until_held()

    second = await book(client, key="k-1")
    fake.release_answers()
    answered = await first

    assert second.status_code == 409 and second.json()["error"]["code"] == "idempotency_key_in_flight"
    assert answered.status_code == 201 and fake.creates == 1


async def test_a_key_is_forgotten_after_24_hours(client, fake: FakeCalcom, salon, clock: FakeClock, db: Database) -> None:
    await book(client, key="k-1")
    clock.advance(24 * 3600 + 1)

    again = await book(client, key="k-1", start="2026-12-02T11:00:00Z")

    assert again.status_code == 201 and "idempotent-replayed" not in again.headers
    async with db.read() as tx:
        assert len(await tx.fetch_all(sql("SELECT verifier_ref FROM guard_requests"))) == 1


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there", "ümlaut"])
async def test_an_unusable_key_is_400(client, fake: FakeCalcom, salon, key: str) -> None:
    response = await client.post(
        "/calcom/salon-1/v2/bookings",
        json={"start": "2026-12-01T10:00:00Z"},
        headers={"Authorization": "Bearer cal_live_test_key_0a1b2c3d4e5f", "Idempotency-Key": key.encode()},
    )
    assert response.status_code == 400 and fake.creates == 0


@pytest.mark.parametrize("guard_timeout", [60.0])
async def test_two_requests_with_one_key_sent_together_forward_once(client, fake: FakeCalcom, salon, guard_timeout: float) -> None:
    fake.fail_next_create("slow_answer")
    both = [asyncio.create_task(book(client, key="k-1")) for _ in range(2)]
    await fake.wait_until_held()
    fake.release_answers()

    answers = sorted([(await task).status_code for task in both])

    assert answers == [201, 409] and fake.creates == 1 and len(bookings_in(fake)) == 1
