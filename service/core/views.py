"""How a verification and an account read over the API and in callbacks. Pure.

Each view is validated against its response type (`responses.py`) as it is built, so no answer
can leave the service in a shape its OpenAPI description does not promise.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from service.core.responses import (
    ACCOUNT,
    VERIFICATION,
    AccountOut,
    BookingOut,
    CallbackOut,
    DuplicateOut,
    DuplicateRef,
    PhaseOut,
    VerificationOut,
)
from service.core.times import iso


def render(
    row: dict[str, Any], phases: list[dict[str, Any]], callback: dict[str, Any] | None, duplicates: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The verification as GET returns it (`duplicates`: its duplicate bookings, listed when given)."""
    rendered = [_phase(p) for p in phases]
    missing = [p["key"] for p in rendered if p["status"] in ("missing", "ambiguous")]
    view: VerificationOut = {
        "id": row["id"],
        "account": row["account"],
        "appointment_id": row["appointment_id"],
        "service": row["service"],
        "status": row["status"],
        "review_reason": row["review_reason"],
        "resolution": row["resolution"],
        "resolved_via": row["resolved_via"],
        "resolved_by": row.get("resolved_by"),
        "note": row["note"],
        "created_at": _at(row["created_at"]),
        "resolved_at": iso(row["resolved_at"]),
        "next_check_at": iso(row["next_check_at"]) if row["status"] == "pending" else None,
        "deadline_at": iso(row["deadline_at"]) if row["status"] == "pending" else None,
        # checks: Cal.com checks that got a complete answer; attempts: every check made, failed ones too.
        "checks": row["complete_checks"],
        "attempts": row["checks"],
        "sync_error": row["sync_error"],
        "missing_phases": missing,
        "phases": rendered,
        "callback": _callback(callback),
    }
    if duplicates is not None:
        view["duplicates"] = [_duplicate(d) for d in duplicates]
    return cast(dict[str, Any], VERIFICATION.validate_python(view))


def _duplicate(row: dict[str, Any]) -> DuplicateRef:
    found: DuplicateRef = {"uid": row["uid"], "start": _at(row["start_at"]), "dismissed": row["dismissed_at"] is not None}
    if row["seat"]:
        found["seat_uid"] = row["seat"]
    return found


def duplicate_view(row: dict[str, Any]) -> DuplicateOut:
    """One open duplicate booking as GET /api/duplicates lists it."""
    found: DuplicateOut = {
        "account": row["account"],
        "uid": row["uid"],
        "start": _at(row["start_at"]),
        "duplicate_of": row["of_uid"],
        "verification_id": row["verification_id"],
        "found_at": _at(row["found_at"]),
    }
    if row["seat"]:
        found["seat_uid"] = row["seat"]
    return found


def _phase(row: dict[str, Any]) -> PhaseOut:
    booking: BookingOut | None = None
    if row["booking_uid"] is not None:
        booking = {
            "id": row["booking_id"],
            "uid": row["booking_uid"],
            "start": iso(row["booking_start_at"]),
            "source": row["booking_source"],
            # What tied the booking to the phase: tag, person (a named host or attendee), time, operator.
            "identity": row.get("booking_identity"),
        }
        if row["booking_seat"]:
            booking["seat_uid"] = row["booking_seat"]
    phase: PhaseOut = {
        "key": row["key"],
        "start": _at(row["start_at"]),
        "end": iso(row["end_at"]),
        "staff_required": row["staff_required"],
        "status": row["status"],
        "booking": booking,
    }
    # The constraints appear only when the phase has them.
    if row.get("event_type_id") is not None:
        phase["event_type_id"] = row["event_type_id"]
    if row.get("host_email") is not None:
        phase["host_email"] = row["host_email"]
    if row.get("attendee_email") is not None:
        phase["attendee_email"] = row["attendee_email"]
    if row.get("attendee_phone") is not None:
        phase["attendee_phone"] = row["attendee_phone"]
    return phase


def _at(value: datetime) -> str:
    # iso() of an instant that is always there; "" would fail the view's validation, never pass.
    return iso(value) or ""


def _callback(row: dict[str, Any] | None) -> CallbackOut:
    if row is None:
        return {"state": "none", "attempts": 0, "last_error": None}
    return {"state": row["state"], "attempts": row["attempts"], "last_error": row["last_error"]}


def account_view(account: Any) -> dict[str, Any]:
    """An account as the API shows it: which secrets are set, never their values."""
    view: AccountOut = {
        "id": account.id,
        "account": account.id,
        "calcom_api_key": "set",
        "webhook_secret": "set",
        "calcom_api_base": account.calcom_api_base,
        "callback_url": account.callback_url,
        "callback_secret": "set" if account.callback_secret else None,
        "match_tolerance_seconds": account.match_tolerance_seconds,
        "enabled": account.enabled,
        "time_only_matching": account.time_only_matching,
        "guard": account.guard,
        "time_zone": account.time_zone,
        "credentials": account.credentials,
        "webhook_path": f"/webhooks/calcom/{account.id}",
        "created_at": _at(account.created_at),
        "updated_at": _at(account.updated_at),
        "webhook_secret_previous_until": _rotation_end(account.webhook_secret_previous, account.webhook_secret_previous_until_at),
        "callback_secret_previous_until": _rotation_end(account.callback_secret_previous, account.callback_secret_previous_until_at),
    }
    return cast(dict[str, Any], ACCOUNT.validate_python(view))


def _rotation_end(previous: str | None, until: Any) -> str | None:
    return _at(until) if previous and until is not None else None
