"""How a verification reads over the API and in callbacks. Pure."""

from __future__ import annotations

from typing import Any

from service.core.times import iso


def render(row: dict[str, Any], phases: list[dict[str, Any]], callback: dict[str, Any] | None) -> dict[str, Any]:
    """The verification as GET returns it."""
    rendered = [_phase(p) for p in phases]
    missing = [p["key"] for p in rendered if p["status"] in ("missing", "ambiguous")]
    return {
        "id": row["id"],
        "account": row["account"],
        "appointment_id": row["appointment_id"],
        "service": row["service"],
        "status": row["status"],
        "review_reason": row["review_reason"],
        "resolution": row["resolution"],
        "resolved_via": row["resolved_via"],
        "note": row["note"],
        "created_at": iso(row["created_at"]),
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


def _phase(row: dict[str, Any]) -> dict[str, Any]:
    booking = None
    if row["booking_uid"] is not None:
        booking = {
            "id": row["booking_id"],
            "uid": row["booking_uid"],
            "start": iso(row["booking_start_at"]),
            "source": row["booking_source"],
        }
        if row["booking_seat"]:
            booking["seat_uid"] = row["booking_seat"]
        # What tied the booking to the phase: tag, person (a named host or attendee), time, operator.
        booking["identity"] = row.get("booking_identity")
    phase = {
        "key": row["key"],
        "start": iso(row["start_at"]),
        "end": iso(row["end_at"]),
        "staff_required": row["staff_required"],
        "status": row["status"],
        "booking": booking,
    }
    for name in ("event_type_id", "host_email", "attendee_email", "attendee_phone"):
        if row.get(name) is not None:
            phase[name] = row[name]
    return phase


def _callback(row: dict[str, Any] | None) -> dict[str, Any]:
    if row is None:
        return {"state": "none", "attempts": 0, "last_error": None}
    return {"state": row["state"], "attempts": row["attempts"], "last_error": row["last_error"]}


def account_view(account: Any) -> dict[str, Any]:
    """An account as the API shows it: which secrets are set, never their values."""
    return {
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
        "credentials": account.credentials,
        "webhook_path": f"/webhooks/calcom/{account.id}",
        "created_at": iso(account.created_at),
        "updated_at": iso(account.updated_at),
    }
