"""The evidence behind a verdict: each reason a booking did or did not match, from a fixture that causes it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from service.core.evidence import REASONS, evidence, phase_evidence

from .helpers import AUTH, booking_event, create_account, failure, phase, post_webhook, record

START = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
VERIFICATION = {"id": "v-1", "account": "salon-1", "appointment_id": "762", "status": "manual_review", "review_reason": "no_booking_found"}


def _phase(**extra: Any) -> dict[str, Any]:
    row = {"key": "A", "start_at": START, "staff_required": True, "status": "missing", "booking_uid": None, "booking_seat": None,
           "event_type_id": None, "host_email": None, "attendee_email": "kunde@example.com", "attendee_phone": None}  # fmt: skip
    return {**row, **extra}


def _obs(uid: str = "b-1", minutes: float = 0, **extra: Any) -> dict[str, Any]:
    row = {"uid": uid, "seat": "", "booking_id": 7, "start_at": START + timedelta(minutes=minutes), "state": "exists",
           "calcom_status": "accepted", "event_type_id": 101, "hosts": ("anna@salon.example",), "attendees": ("kunde@example.com",),
           "phones": (), "appointment_tag": None, "phase_tag": None, "source": "webhook", "claimed_by": None, "claimed_phase": None}  # fmt: skip
    return {**row, **extra}


def _reasons(phase: dict[str, Any], observations: list[dict[str, Any]], tolerance: int = 300) -> dict[str, tuple[str, str]]:
    found = phase_evidence(VERIFICATION, phase, observations, tolerance)
    return {c["unit"]: (c["reason"], c["explanation"]) for c in found["candidates"]}


def test_the_booking_a_phase_holds_is_matched() -> None:
    assert _reasons(_phase(status="matched", booking_uid="b-1"), [_obs()])["b-1"][0] == "matched"


def test_a_cancelled_booking_is_cancelled() -> None:
    assert _reasons(_phase(), [_obs(state="gone", calcom_status="cancelled")])["b-1"] == ("cancelled", "Cal.com says cancelled")


def test_a_booking_another_verification_holds_is_claimed_by_it() -> None:
    reason, why = _reasons(_phase(), [_obs(claimed_by="v-9", claimed_phase="A")])["b-1"]
    assert reason == "claimed" and "v-9" in why


def test_a_booking_tagged_for_another_appointment_is_tagged_elsewhere() -> None:
    reason, why = _reasons(_phase(), [_obs(appointment_tag="999")])["b-1"]
    assert reason == "tagged_elsewhere" and "999" in why


def test_a_booking_beyond_the_tolerance_is_outside_it() -> None:
    reason, why = _reasons(_phase(), [_obs(minutes=10)], tolerance=300)["b-1"]
    assert reason == "outside_tolerance" and "600 s" in why


def test_a_booking_beyond_three_tolerances_is_not_shown() -> None:
    assert _reasons(_phase(), [_obs(minutes=16)], tolerance=300) == {}


def test_a_booking_with_another_attendee_is_a_constraint_mismatch() -> None:
    reason, why = _reasons(_phase(), [_obs(attendees=("someone@else.example",))])["b-1"]
    assert reason == "constraint_mismatch" and "attendee e-mail" in why


def test_a_booking_of_another_event_type_is_a_constraint_mismatch() -> None:
    reason, why = _reasons(_phase(event_type_id=202), [_obs()])["b-1"]
    assert reason == "constraint_mismatch" and "event type 101 is not 202" in why


def test_bookings_that_fit_an_ambiguous_phase_name_each_other() -> None:
    found = _reasons(_phase(status="ambiguous"), [_obs("b-1"), _obs("b-2", minutes=1)])
    assert found["b-1"][0] == found["b-2"][0] == "ambiguous"
    assert "ambiguous with b-2" in found["b-1"][1] and "ambiguous with b-1" in found["b-2"][1]


def test_a_booking_fitting_a_phase_that_names_no_one_is_time_only() -> None:
    assert _reasons(_phase(attendee_email=None), [_obs()])["b-1"][0] == "time_only"


def test_a_fitting_booking_nothing_holds_is_eligible() -> None:
    assert _reasons(_phase(), [_obs()])["b-1"][0] == "eligible"


def test_every_reason_is_covered_by_a_test_above() -> None:
    source = open(__file__, encoding="utf-8").read()
    assert all(f'"{reason}"' in source.split("def test_every_reason")[0] for reason in REASONS)


def test_phases_without_staff_are_left_out() -> None:
    found = evidence(VERIFICATION, [_phase(), _phase(key="B", staff_required=False)], [_obs()], 300)
    assert [p["key"] for p in found["phases"]] == ["A"]


# The endpoint, on both databases: the same reasons from what webhooks stored, and reading changes nothing.


async def test_the_evidence_endpoint_explains_stored_bookings_and_changes_nothing(client: httpx.AsyncClient) -> None:
    await create_account(client)
    await post_webhook(client, booking_event(uid="near", start=START + timedelta(minutes=1), attendees=("other@example.com",)))
    await post_webhook(client, booking_event(uid="late", start=START + timedelta(minutes=9)))
    await post_webhook(client, booking_event(uid="gone", start=START + timedelta(minutes=2)))
    await post_webhook(client, booking_event("BOOKING_CANCELLED", uid="gone", start=START + timedelta(minutes=2)))
    await client.patch("/api/accounts/salon-1", json={"enabled": False}, headers=AUTH)
    created = (await record(client, failure(phases=[phase("A", START)]))).json()
    before = (await client.get(f"/api/verifications/{created['id']}", headers=AUTH)).json()

    response = await client.get(f"/api/verifications/{created['id']}/evidence", headers=AUTH)
    assert response.status_code == 200
    reasons = {c["uid"]: c["reason"] for c in response.json()["phases"][0]["candidates"]}
    assert reasons == {"near": "constraint_mismatch", "late": "outside_tolerance", "gone": "cancelled"}
    assert (await client.get(f"/api/verifications/{created['id']}", headers=AUTH)).json() == before


@pytest.mark.parametrize("verification_id", ["nope", "x" * 300])
async def test_the_evidence_of_an_unknown_verification_is_404(client: httpx.AsyncClient, verification_id: str) -> None:
    response = await client.get(f"/api/verifications/{verification_id}/evidence", headers=AUTH)
    assert response.status_code == 404


async def test_the_evidence_needs_the_api_token(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/verifications/nope/evidence")).status_code == 401
