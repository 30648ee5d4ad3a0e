"""What webhooks mean for verifications: the seed's test plan and the event semantics of SPEC §4/§5."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from service.store.connector import Database, sql

from .helpers import AUTH, OTHER_WEBHOOK_SECRET, FakeClock, booking_event, create_account, failure, phase, post_webhook, record

T = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)  # 10:00 in Berlin


def at(minutes: float) -> datetime:
    return T + timedelta(minutes=minutes)


def created(minute: float) -> datetime:
    """Webhook `createdAt` values, ordered."""
    return datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc) + timedelta(seconds=minute)


DAUERWELLE = [("A", 0, 30), ("B", 30, 45), ("C", 75, 30), ("D", 105, 30)]


def dauerwelle(host: str = "anna@salon.example") -> list[dict]:
    return [phase(key, at(start), minutes, host_email=host) for key, start, minutes in DAUERWELLE]


@pytest.fixture
async def account(client: httpx.AsyncClient) -> None:
    await create_account(client)


async def get(client: httpx.AsyncClient, verification_id: str, wait: float | None = None) -> dict:
    params = {"wait": str(wait)} if wait is not None else None
    response = await client.get(f"/api/verifications/{verification_id}", headers=AUTH, params=params)
    assert response.status_code == 200
    return response.json()


async def test_dauerwelle_webhooks_first_verifies_inside_the_intake_call(client: httpx.AsyncClient, account: None) -> None:
    for n, (key, start, minutes) in enumerate(DAUERWELLE):
        response = await post_webhook(client, booking_event(uid=f"dw-{key}", booking_id=13068988 + n, start=at(start), minutes=minutes))
        assert response.status_code == 200
    response = await record(client, failure(phases=dauerwelle(), service="Dauerwelle"))
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "verified"
    assert body["resolved_via"] == "webhook"
    assert body["resolved_at"] is not None and body["next_check_at"] is None
    assert {p["key"]: p["booking"]["uid"] for p in body["phases"]} == {k: f"dw-{k}" for k, _, _ in DAUERWELLE}
    assert body["phases"][0]["booking"] == {
        "id": 13068988,
        "uid": "dw-A",
        "start": "2026-12-01T09:00:00Z",
        "source": "webhook",
        "identity": "person",
    }
    assert all(p["status"] == "matched" for p in body["phases"])


async def test_herrenhaarschnitt_intake_first_then_webhook_verifies(client: httpx.AsyncClient, account: None) -> None:
    pending = (await record(client, failure())).json()
    assert pending["status"] == "pending"
    assert (await post_webhook(client, booking_event(uid="hh-1", start=at(0)))).status_code == 200
    body = await get(client, pending["id"])
    assert body["status"] == "verified" and body["resolved_via"] == "webhook"
    assert body["phases"][0]["booking"]["uid"] == "hh-1"


async def waiting(app, verification_id: str | None = None) -> str:
    """Yield to the loop until a long-poll is registered (event-driven, no timing)."""
    notifier = app.state.services.notifier
    while not (notifier._waiters if verification_id is None else notifier._waiters.get(verification_id)):
        await asyncio.sleep(0)
    return next(iter(notifier._waiters))


async def test_long_poll_returns_as_soon_as_the_webhook_lands(app, client: httpx.AsyncClient, account: None) -> None:
    pending = (await record(client, failure())).json()
    waiter = asyncio.create_task(get(client, pending["id"], wait=20))
    await asyncio.wait_for(waiting(app, pending["id"]), 10)
    await post_webhook(client, booking_event(uid="hh-1", start=at(0)))
    body = await asyncio.wait_for(waiter, timeout=10)
    assert body["status"] == "verified"


async def test_post_with_wait_returns_the_verdict_of_a_webhook_that_arrives_meanwhile(
    app, client: httpx.AsyncClient, account: None
) -> None:
    call = asyncio.create_task(record(client, failure(), wait=20))
    await asyncio.wait_for(waiting(app), 10)
    await post_webhook(client, booking_event(uid="hh-1", start=at(0)))
    response = await asyncio.wait_for(call, timeout=10)
    assert response.status_code == 201 and response.json()["status"] == "verified"


async def test_partial_composite_stays_pending_and_shows_its_evidence(client: httpx.AsyncClient, account: None) -> None:
    for key, start, minutes in DAUERWELLE[:3]:
        await post_webhook(client, booking_event(uid=f"dw-{key}", start=at(start), minutes=minutes))
    body = (await record(client, failure(phases=dauerwelle()))).json()
    assert body["status"] == "pending"
    assert [p["status"] for p in body["phases"]] == ["matched", "matched", "matched", "pending"]
    await post_webhook(client, booking_event(uid="dw-D", start=at(105)))
    assert (await get(client, body["id"]))["status"] == "verified"


async def test_requested_booking_counts_as_existing(client: httpx.AsyncClient, account: None) -> None:
    await post_webhook(client, booking_event("BOOKING_REQUESTED", uid="req-1", start=at(0)))
    assert (await record(client, failure())).json()["status"] == "verified"


async def test_cancelled_booking_never_verifies(client: httpx.AsyncClient, account: None) -> None:
    await post_webhook(client, booking_event(uid="c-1", start=at(0), created_at=created(1)))
    await post_webhook(client, booking_event("BOOKING_CANCELLED", uid="c-1", start=at(0), created_at=created(2)))
    assert (await record(client, failure())).json()["status"] == "pending"


async def test_rejected_booking_never_verifies(client: httpx.AsyncClient, account: None) -> None:
    await post_webhook(client, booking_event("BOOKING_REQUESTED", uid="r-1", start=at(0), created_at=created(1)))
    await post_webhook(client, booking_event("BOOKING_REJECTED", uid="r-1", start=at(0), created_at=created(2)))
    assert (await record(client, failure())).json()["status"] == "pending"


async def test_rescheduled_away_booking_never_verifies_and_the_new_one_does(client: httpx.AsyncClient, account: None) -> None:
    await post_webhook(client, booking_event(uid="old", start=at(0), created_at=created(1)))
    moved = booking_event(
        "BOOKING_RESCHEDULED",
        uid="new",
        start=at(180),
        created_at=created(2),
        extra={"rescheduleUid": "old", "rescheduleStartTime": "2026-12-01T09:00:00Z", "rescheduleEndTime": "2026-12-01T09:30:00Z"},
    )
    await post_webhook(client, moved)
    original = (await record(client, failure(appointment_id="1"))).json()
    assert original["status"] == "pending"
    later = (await record(client, failure(appointment_id="2", phases=[phase("A", at(180))]))).json()
    assert later["status"] == "verified" and later["phases"][0]["booking"]["uid"] == "new"


async def test_older_event_arriving_late_never_overrides_a_newer_one(client: httpx.AsyncClient, account: None) -> None:
    await post_webhook(client, booking_event("BOOKING_CANCELLED", uid="late", start=at(0), created_at=created(5)))
    await post_webhook(client, booking_event(uid="late", start=at(0), created_at=created(1)))
    assert (await record(client, failure())).json()["status"] == "pending"


async def test_newer_event_overrides_an_older_one(client: httpx.AsyncClient, account: None) -> None:
    await post_webhook(client, booking_event("BOOKING_REQUESTED", uid="b", start=at(0), created_at=created(1)))
    await post_webhook(client, booking_event(uid="b", start=at(0), created_at=created(3), event_type_id=202))  # confirmed
    await post_webhook(client, booking_event("BOOKING_REQUESTED", uid="b", start=at(0), created_at=created(2)))  # late
    body = (await record(client, failure(phases=[phase("A", at(0), event_type_id=202)]))).json()
    assert body["status"] == "verified"


async def test_a_cancelled_booking_is_never_revived_by_a_later_event(client: httpx.AsyncClient, account: None) -> None:
    # Cal.com never brings a cancelled booking uid back: whatever claims so is stale or misordered.
    await post_webhook(client, booking_event("BOOKING_REQUESTED", uid="b", start=at(0), created_at=created(1)))
    await post_webhook(client, booking_event("BOOKING_CANCELLED", uid="b", start=at(0), created_at=created(2)))
    await post_webhook(client, booking_event(uid="b", start=at(0), created_at=created(3)))
    assert (await record(client, failure())).json()["status"] == "pending"


async def test_seats_verify_each_appointment_against_its_own_seat(client: httpx.AsyncClient, account: None) -> None:
    for seat, email in (("seat-1", "eva@example.com"), ("seat-2", "tom@example.com")):
        await post_webhook(client, booking_event(uid="slot", start=at(0), attendees=(email,), extra={"attendeeSeatId": seat}))
    tom = (await record(client, failure(appointment_id="t", phases=[phase("A", at(0), attendee_email="Tom@Example.com")]))).json()
    eva = (await record(client, failure(appointment_id="e", phases=[phase("A", at(0), attendee_email="eva@example.com")]))).json()
    assert tom["status"] == eva["status"] == "verified"
    assert tom["phases"][0]["booking"]["seat_uid"] == "seat-2"
    assert eva["phases"][0]["booking"]["seat_uid"] == "seat-1"


async def test_cancelled_seat_leaves_the_other_seats(client: httpx.AsyncClient, account: None) -> None:
    for seat, email in (("seat-1", "eva@example.com"), ("seat-2", "tom@example.com")):
        await post_webhook(
            client, booking_event(uid="slot", start=at(0), attendees=(email,), extra={"attendeeSeatId": seat}, created_at=created(1))
        )
    await post_webhook(
        client, booking_event("BOOKING_CANCELLED", uid="slot", start=at(0), attendees=("tom@example.com",), created_at=created(2))
    )
    tom = (await record(client, failure(appointment_id="t", phases=[phase("A", at(0), attendee_email="tom@example.com")]))).json()
    eva = (await record(client, failure(appointment_id="e", phases=[phase("A", at(0), attendee_email="eva@example.com")]))).json()
    assert tom["status"] == "pending" and eva["status"] == "verified"


async def test_recurring_occurrences_each_verify_their_own_appointment(client: httpx.AsyncClient, account: None) -> None:
    for week in range(3):
        await post_webhook(
            client,
            booking_event(
                uid=f"rec-{week}", start=at(week * 7 * 24 * 60), extra={"recurringEvent": {"freq": 2, "count": 3, "interval": 1}}
            ),
        )
    results = [
        (await record(client, failure(appointment_id=f"w{week}", phases=[phase("A", at(week * 7 * 24 * 60))]))).json() for week in range(3)
    ]
    assert [r["phases"][0]["booking"]["uid"] for r in results] == ["rec-0", "rec-1", "rec-2"]


async def test_two_bookings_nothing_tells_apart_are_not_guessed(client: httpx.AsyncClient, account: None) -> None:
    await post_webhook(client, booking_event(uid="x", start=at(0), organizer="anna@salon.example"))
    await post_webhook(client, booking_event(uid="y", start=at(0), organizer="bob@salon.example"))
    body = (await record(client, failure())).json()
    assert body["status"] == "pending"
    assert body["phases"][0]["booking"] is None
    # The host tells them apart for another appointment that names Bob ...
    told = (await record(client, failure(appointment_id="763", phases=[phase("A", at(0), host_email="bob@salon.example")]))).json()
    assert told["phases"][0]["booking"]["uid"] == "y"
    # ... but 762 could take y as well, so y is contested: decided at the scheduled check, not now.
    assert told["status"] == "pending"


async def test_metadata_match_beats_a_closer_heuristic_candidate(client: httpx.AsyncClient, account: None) -> None:
    await post_webhook(client, booking_event(uid="close", start=at(0)))
    await post_webhook(client, booking_event(uid="tagged", start=at(45), metadata={"appointment_id": 762}))
    body = (await record(client, failure(appointment_id="762"))).json()
    assert body["status"] == "verified" and body["phases"][0]["booking"]["uid"] == "tagged"


async def test_foreign_metadata_never_matches(client: httpx.AsyncClient, account: None) -> None:
    await post_webhook(client, booking_event(uid="theirs", start=at(0), metadata={"appointment_id": "999"}))
    assert (await record(client, failure(appointment_id="762"))).json()["status"] == "pending"


async def test_metadata_phase_names_the_phase(client: httpx.AsyncClient, account: None) -> None:
    for key, start, minutes in DAUERWELLE:
        other = {"A": "B", "B": "A"}.get(key, key)  # bookings swapped in time, but tagged with their phase
        await post_webhook(
            client, booking_event(uid=f"t-{other}", start=at(start), minutes=minutes, metadata={"appointment_id": "762", "phase": other})
        )
    body = (await record(client, failure(phases=dauerwelle()))).json()
    assert body["status"] == "verified"
    assert {p["key"]: p["booking"]["uid"] for p in body["phases"]} == {k: f"t-{k}" for k, _, _ in DAUERWELLE}


async def test_account_isolation(client: httpx.AsyncClient, account: None) -> None:
    await create_account(client, "salon-2", webhook_secret=OTHER_WEBHOOK_SECRET)
    await post_webhook(client, booking_event(uid="b2", start=at(0)), account="salon-2", secret=OTHER_WEBHOOK_SECRET)
    assert (await record(client, failure())).json()["status"] == "pending"
    pending = (await record(client, failure(appointment_id="9"))).json()
    await post_webhook(client, booking_event(uid="b3", start=at(0)), account="salon-2", secret=OTHER_WEBHOOK_SECRET)
    assert (await get(client, pending["id"]))["status"] == "pending"


async def test_a_claimed_booking_is_not_claimed_again(client: httpx.AsyncClient, account: None) -> None:
    await post_webhook(client, booking_event(uid="only", start=at(0)))
    first = (await record(client, failure(appointment_id="1"))).json()
    second = (await record(client, failure(appointment_id="2", phases=[phase("A", at(1))]))).json()
    assert first["status"] == "verified" and second["status"] == "pending"


async def test_webhook_verdict_log_lines_carry_ids_not_personal_data(
    client: httpx.AsyncClient, account: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    pending = (await record(client, failure(phases=[phase("A", at(0), attendee_email="kunde@example.com")]))).json()
    await post_webhook(client, booking_event(uid="hh-1", booking_id=13068988, start=at(0), attendees=("kunde@example.com",)))
    events = {r.__dict__.get("event"): r for r in caplog.records}
    assert events["verification_verified"].getMessage() == "post-sync verification: bookings found, marking as synced"
    assert events["verification_verified"].verification_id == pending["id"]
    assert events["phase_verified"].booking_id == 13068988
    for r in caplog.records:
        assert "kunde@example.com" not in r.getMessage() + str(r.__dict__)


async def test_tolerance_is_the_accounts(client: httpx.AsyncClient, db: Database) -> None:
    await create_account(client, match_tolerance_seconds=60)
    await post_webhook(client, booking_event(uid="two-min", start=at(2)))
    first = (await record(client, failure(appointment_id="1"))).json()
    assert first["status"] == "pending"
    await client.post(f"/api/verifications/{first['id']}/resolve", json={"outcome": "failed"}, headers=AUTH)
    await create_account(client, match_tolerance_seconds=300)
    assert (await record(client, failure(appointment_id="2", phases=[phase("A", at(0.5))]))).json()["status"] == "verified"


async def test_webhook_stored_durably_before_200(client: httpx.AsyncClient, account: None, db: Database) -> None:
    response = await post_webhook(client, booking_event(uid="durable", start=at(0)))
    assert response.status_code == 200
    async with db.read() as tx:  # another connection sees it: committed
        row = await tx.fetch_one(sql("SELECT state, source FROM booking_observations WHERE uid = 'durable'"))
    assert row == {"state": "exists", "source": "webhook"}


async def test_kill_switch_sends_failures_straight_to_review(database_url: str, clock: FakeClock) -> None:
    from service.settings import Settings
    from service.web.app import create_app

    from .helpers import API_TOKEN

    app = create_app(Settings(_env_file=None, database_url=database_url, api_token=API_TOKEN, post_sync_verification=False), clock=clock)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            await create_account(http)
            await post_webhook(http, booking_event(uid="b", start=at(0)))
            body = (await record(http, failure())).json()
    assert body["status"] == "manual_review"
    assert body["review_reason"] == "verification_disabled" and body["resolved_via"] == "system"


async def test_disabled_account_sends_failures_straight_to_review(client: httpx.AsyncClient) -> None:
    await create_account(client, enabled=False)
    body = (await record(client, failure())).json()
    assert (body["status"], body["review_reason"]) == ("manual_review", "verification_disabled")
