"""Cal.com API v2 booking items → booking observations. Pure: dicts in, facts out."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from service.core import times
from service.core.observations import Observation, as_int, emails, metadata_tags, phones, verifier_ref

GONE_STATUSES = frozenset({"cancelled", "rejected"})


def observations_from_api(item: dict[str, Any], fetched_at: datetime) -> list[Observation]:
    """One API v2 booking item as observations: one per seat for a seated booking, else one."""
    if not isinstance(item, dict):
        return []
    uid = item.get("uid")
    start = _parse_time(item.get("start"))
    if not isinstance(uid, str) or not uid.strip() or start is None:
        return []
    status = item["status"].strip().lower() if isinstance(item.get("status"), str) else None
    event_type = item.get("eventType")
    event_type_id = as_int(event_type.get("id")) if isinstance(event_type, dict) else None
    common: dict[str, Any] = {
        "uid": uid.strip(),
        "start": start,
        "end": _parse_time(item.get("end")),
        "state": "gone" if status in GONE_STATUSES else "exists",
        "event_at": fetched_at,
        "source": "poll",
        "booking_id": as_int(item.get("id")),
        "calcom_status": status,
        "event_type_id": event_type_id if event_type_id is not None else as_int(item.get("eventTypeId")),
        "hosts": emails(item.get("hosts")),
    }
    metadata = item.get("metadata")
    listed = item.get("attendees")
    attendees = listed if isinstance(listed, list) else []
    seats = [
        attendee
        for attendee in attendees
        if isinstance(attendee, dict) and isinstance(attendee.get("seatUid"), str) and attendee["seatUid"].strip()
    ]
    if not seats:
        appointment_tag, phase_tag = metadata_tags(metadata)
        return [
            Observation(
                **common,
                attendees=emails(attendees),
                phones=phones(attendees),
                appointment_tag=appointment_tag,
                phase_tag=phase_tag,
                verifier_ref=verifier_ref(metadata),
            )
        ]
    observations: dict[str, Observation] = {}
    for seat in seats:
        # The seat's own metadata wins, as in the webhook Cal.com sends for a new seat
        # (`{...booking.metadata, ...reqBody.metadata}`, handleSeats/create/createNewSeat.ts).
        merged = {**_as_dict(metadata), **_as_dict(seat.get("metadata"))}
        appointment_tag, phase_tag = metadata_tags(merged)
        seat_uid = seat["seatUid"].strip()
        observations[seat_uid] = Observation(
            **common,
            seat=seat_uid,
            attendees=emails([seat]),
            phones=phones([seat]),
            appointment_tag=appointment_tag,
            verifier_ref=verifier_ref(merged),
            phase_tag=phase_tag,
        )
    return list(observations.values())


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _parse_time(value: Any) -> datetime | None:
    """Cal.com always sends UTC with `Z`; a bare time is UTC as well."""
    moment = times.parse(value, naive_is_utc=True)
    return moment.astimezone(timezone.utc) if moment else None
