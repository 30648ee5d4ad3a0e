"""The guard's verifications: keyed by verifier_ref, tagged bookings, claims shared within an appointment, duplicates."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx

from service.core.models import VerificationIn
from service.store.connector import Database, sql

from .helpers import AUTH, FakeClock, booking_event, create_account, failure, phase, post_webhook, record

T = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


def at(minutes: float) -> datetime:
    return T + timedelta(minutes=minutes)


def guard_request(appointment: str, start: datetime, key: str = "A") -> VerificationIn:
    return VerificationIn.model_validate_json(
        json.dumps(
            {"account": "salon-1", "appointment_id": appointment, "sync_error": "guard: Cal.com HTTP 500", "phases": [phase(key, start)]}
        )
    )


async def record_guard(app: Any, request: VerificationIn, ref: str, clock: FakeClock) -> dict[str, Any]:
    return (await app.state.services.intake.record_for_guard(request, ref, clock())).view


async def show(client: httpx.AsyncClient, verification_id: str) -> dict[str, Any]:
    return (await client.get(f"/api/verifications/{verification_id}", headers=AUTH)).json()


async def test_a_booking_tagged_with_a_verifier_ref_verifies_its_create_whatever_its_time(app, client, clock: FakeClock) -> None:
    await create_account(client)
    await post_webhook(client, booking_event(uid="far", start=at(45), metadata={"verifier_ref": "vr_1"}))
    view = await record_guard(app, guard_request("guard:vr_1", at(0)), "vr_1", clock)
    assert view["status"] == "verified" and view["resolved_via"] == "guard"
    assert view["phases"][0]["booking"]["uid"] == "far" and view["phases"][0]["booking"]["identity"] == "tag"


async def test_two_creates_of_one_appointment_each_keep_their_own_booking(app, client, clock: FakeClock) -> None:
    await create_account(client)
    first = await record_guard(app, guard_request("762", at(0)), "vr_a", clock)
    second = await record_guard(app, guard_request("762", at(0)), "vr_b", clock)
    assert first["status"] == second["status"] == "pending"  # two creates, not one pending per appointment
    await post_webhook(client, booking_event(uid="bk-a", start=at(0), metadata={"appointment_id": "762", "verifier_ref": "vr_a"}))
    assert (await show(client, first["id"]))["status"] == "verified"
    assert (await show(client, second["id"]))["status"] == "pending"  # vr_a's booking is not vr_b's


async def test_the_platforms_own_record_of_the_appointment_shares_the_guards_claim(app, client, clock: FakeClock) -> None:
    await create_account(client)
    await post_webhook(client, booking_event(uid="bk", start=at(0), metadata={"appointment_id": "762", "verifier_ref": "vr_1"}))
    guard = await record_guard(app, guard_request("762", at(0)), "vr_1", clock)
    assert guard["status"] == "verified"
    own = (await record(client, failure("762", [phase("A", at(0))]))).json()
    assert own["status"] == "verified" and own["phases"][0]["booking"]["uid"] == "bk"


async def test_a_booking_created_for_a_guard_create_never_verifies_another_appointment_by_time(app, client, clock: FakeClock) -> None:
    await create_account(client)
    await post_webhook(client, booking_event(uid="theirs", start=at(0), metadata={"verifier_ref": "vr_other"}))
    pending = (await record(client, failure("900", [phase("A", at(0))]))).json()
    assert pending["status"] == "pending" and pending["phases"][0]["booking"] is None


async def test_a_second_booking_with_the_same_verifier_ref_is_a_duplicate_and_changes_nothing(
    app, client, db: Database, clock: FakeClock
) -> None:
    await create_account(client)
    await post_webhook(client, booking_event(uid="bk-1", start=at(0), metadata={"verifier_ref": "vr_1"}))
    verified = await record_guard(app, guard_request("guard:vr_1", at(0)), "vr_1", clock)
    await post_webhook(client, booking_event(uid="bk-2", start=at(30), organizer="bob@salon.example", metadata={"verifier_ref": "vr_1"}))
    async with db.read() as tx:
        rows = await tx.fetch_all(sql("SELECT uid, of_uid, dismissed_at FROM booking_duplicates"))
    assert rows == [{"uid": "bk-2", "of_uid": "bk-1", "dismissed_at": None}]
    assert (await show(client, verified["id"]))["phases"][0]["booking"]["uid"] == "bk-1"


async def test_same_appointment_and_phase_is_a_duplicate_only_when_the_phase_is_tagged(app, client, db: Database, clock: FakeClock) -> None:
    await create_account(client)
    own = (await record(client, failure("762", [phase("A", at(0)), phase("B", at(60))]))).json()
    for uid, start, tag in (("a1", 0, "A"), ("b1", 60, "B"), ("a2", 1, "A"), ("untagged", 2, None)):
        metadata = {"appointment_id": "762", **({"phase": tag} if tag else {})}
        await post_webhook(client, booking_event(uid=uid, start=at(start), metadata=metadata))
    assert (await show(client, own["id"]))["status"] == "verified"
    async with db.read() as tx:
        rows = await tx.fetch_all(sql("SELECT uid, of_uid FROM booking_duplicates ORDER BY uid"))
    assert rows == [{"uid": "a2", "of_uid": "a1"}]
