"""Times and people as Cal.com's API v2 (2024-08-13) writes them in booking items."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

DEFAULT_TIME_ZONE = "Europe/Berlin"


def iso(moment: datetime) -> str:
    """UTC ISO 8601 with milliseconds and `Z`, as Cal.com's `toISOString()`."""
    utc = moment.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_time(value: Any) -> datetime | None:
    """An aware UTC datetime from an ISO 8601 string (a bare time counts as UTC), else None."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value.strip():
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    else:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def name_of(email: str) -> str:
    """A display name made up from an e-mail address."""
    return email.split("@")[0].replace(".", " ").title()


def host(n: int, email: str) -> dict[str, Any]:
    """A `BookingHost` item."""
    return {"id": n, "name": name_of(email), "email": email, "username": email.split("@")[0], "timeZone": DEFAULT_TIME_ZONE}


def attendee(person: str | dict[str, Any]) -> dict[str, Any]:
    """A `BookingAttendee` item from an e-mail or `{email, name?, timeZone?, language?, phoneNumber?}`."""
    spec = {"email": person} if isinstance(person, str) else person
    email = spec.get("email") if isinstance(spec, dict) else None
    if not isinstance(email, str) or not email:
        raise ValueError("each attendee needs an email")
    item = {
        "name": spec.get("name") or name_of(email),
        "email": email,
        "timeZone": spec.get("timeZone") or DEFAULT_TIME_ZONE,
        "language": spec.get("language") or "de",
        "absent": False,
    }
    if spec.get("phoneNumber"):
        item["phoneNumber"] = spec["phoneNumber"]
    return item


def field_responses(person: dict[str, Any]) -> dict[str, Any]:
    """`bookingFieldsResponses` for an attendee item (name, email, and the phone when given)."""
    responses = {"name": person["name"], "email": person["email"]}
    if person.get("phoneNumber"):
        responses["attendeePhoneNumber"] = person["phoneNumber"]
    return responses


def seat(spec: str | dict[str, Any]) -> dict[str, Any]:
    """A `SeatedAttendee` item: an attendee with its own seatUid, responses and metadata."""
    spec = {"email": spec} if isinstance(spec, str) else spec
    person = attendee(spec)
    return {
        **person,
        "seatUid": spec.get("seatUid") or spec.get("seat_uid") or str(uuid.uuid4()),
        "bookingFieldsResponses": field_responses(person),
        "metadata": dict(spec.get("metadata") or {}),
    }
