"""The body of `POST /v2/bookings` (2024-08-13), checked the way Cal.com's input classes check it.

Cal.com validates `CreateBookingInput_2024_08_13` with class-validator (400 BadRequestException):
`start` an ISO 8601 string, `attendee` an object with a string `name` and an IANA `timeZone`, an
optional `email` and `phoneNumber`; `metadata` at most 50 keys, keys up to 40 characters, values
strings up to 500 characters, numbers or booleans (validate-metadata.ts). The fake books by
`eventTypeId` only (not by slug and username).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from service.testing.fakecalcom.shapes import parse_time

METADATA_MESSAGE = (
    "metadata must be an object with up to 50 keys, each key name up to 40 characters, and values with a maximum length of 500 characters."
)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+[1-9][0-9]{6,14}$")


class Rejected(Exception):
    """A create Cal.com refuses: the status, exception name and message of its error answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def bad_request(message: str) -> Rejected:
    """Cal.com's 400 for a body or a slot it will not book."""
    return Rejected(400, "BadRequestException", message)


@dataclass(frozen=True)
class CreateInput:
    """What a create asks for, after validation."""

    start: datetime
    event_type_id: int
    attendee: dict[str, Any]  # name, email, timeZone, language, phoneNumber?
    metadata: dict[str, Any] = field(default_factory=dict)
    length: int | None = None
    recurrence_count: int | None = None
    guests: tuple[str, ...] = ()
    responses: dict[str, Any] = field(default_factory=dict)


def read_create(body: Any) -> CreateInput:
    """Validate a decoded JSON body; `Rejected` (400) with Cal.com's wording when it is not bookable."""
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    start = parse_time(body.get("start")) if isinstance(body.get("start"), str) else None
    if start is None:
        raise bad_request("start must be a valid ISO 8601 date string")
    event_type_id: Any = body.get("eventTypeId")
    if not _whole(event_type_id):
        raise bad_request("eventTypeId must be a number conforming to the specified constraints (the fake books by eventTypeId only)")
    metadata = body.get("metadata", {})
    if not _valid_metadata(metadata):
        raise bad_request(METADATA_MESSAGE)
    length: Any = body.get("lengthInMinutes")
    if length is not None and not (_whole(length) and length > 0):
        raise bad_request("lengthInMinutes must be a number conforming to the specified constraints")
    count: Any = body.get("recurrenceCount")
    if count is not None and not (_whole(count) and count > 0):
        raise bad_request("recurrenceCount must be a number conforming to the specified constraints")
    guests = body.get("guests", [])
    if not isinstance(guests, list) or not all(isinstance(g, str) and _EMAIL.match(g) for g in guests):
        raise bad_request("each value in guests must be an email")
    responses = body.get("bookingFieldsResponses", {})
    if not isinstance(responses, dict):
        raise bad_request("bookingFieldsResponses must be an object")
    return CreateInput(
        start=start,
        event_type_id=int(event_type_id),
        attendee=_attendee(body.get("attendee")),
        metadata=dict(metadata),
        length=int(length) if length is not None else None,
        recurrence_count=int(count) if count is not None else None,
        guests=tuple(guests),
        responses=dict(responses),
    )


def _attendee(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad_request("attendee must be an object with name and timeZone")
    name, zone = value.get("name"), value.get("timeZone")
    if not isinstance(name, str) or not name.strip():
        raise bad_request("attendee.name must be a string")
    if not isinstance(zone, str) or not _known_zone(zone):
        raise bad_request("attendee.timeZone must be a valid IANA time zone")
    email: Any = value.get("email")
    phone: Any = value.get("phoneNumber")
    if email is not None and not (isinstance(email, str) and _EMAIL.match(email)):
        raise bad_request("attendee.email must be an email")
    if phone is not None and not (isinstance(phone, str) and _PHONE.match(re.sub(r"[\s()-]", "", phone))):
        raise bad_request("attendee.phoneNumber must be a valid phone number")
    if email is None and phone is None:
        raise bad_request('Missing attendee email - pass it as "attendee.email" string in the request.')
    language = value.get("language")
    person = {
        "name": name,
        # A phone-only attendee is stored under a made-up address (contructEmailFromPhoneNumber).
        "email": email if email is not None else re.sub(r"[^0-9]", "", str(phone)) + "@sms.cal.com",
        "timeZone": zone,
        "language": language if isinstance(language, str) and language else "en",
    }
    if phone is not None:
        person["phoneNumber"] = phone
    return person


def _valid_metadata(metadata: Any) -> bool:
    """Cal.com's metadata rule; lengths count UTF-16 code units, as JavaScript's `length` does."""
    if not isinstance(metadata, dict) or len(metadata) > 50:
        return False
    for key, value in metadata.items():
        if _js_length(key) > 40:
            return False
        if isinstance(value, str):
            if _js_length(value) > 500:
                return False
        elif not isinstance(value, (int, float, bool)):
            return False
    return True


def _js_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _whole(value: Any) -> bool:
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    return numeric and float(value).is_integer()


def _known_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ValueError, LookupError):
        return False
    return True
