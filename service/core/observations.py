"""What we learn about Cal.com bookings, from webhooks and from the bookings API. Pure data."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from service.core.times import EARLIEST_YEAR, LATEST_YEAR  # noqa: F401 (re-exported for the parsers)

State = Literal["exists", "gone"]
Source = Literal["webhook", "poll"]


@dataclass(frozen=True)
class Observation:
    """The state of one claimable booking unit (a booking, or one seat of a seated booking).

    `event_at` orders observations of one unit from the same source: webhooks by the envelope's
    `createdAt` (Cal.com's clock), polls by when we fetched the page (ours). A "gone" unit stays gone.
    """

    uid: str
    start: datetime
    state: State
    event_at: datetime
    source: Source
    seat: str = ""
    end: datetime | None = None
    booking_id: int | None = None
    calcom_status: str | None = None
    event_type_id: int | None = None
    hosts: tuple[str, ...] = ()
    attendees: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()  # the attendees' phone numbers, digits only
    appointment_tag: str | None = None
    phase_tag: str | None = None
    verifier_ref: str | None = None  # `metadata.verifier_ref`: created through the booking guard


def metadata_tags(metadata: Any) -> tuple[str | None, str | None]:
    """`metadata.appointment_id` and `metadata.phase` as strings (Cal.com allows numbers there)."""
    if not isinstance(metadata, dict):
        return None, None
    return _tag(metadata.get("appointment_id")), _tag(metadata.get("phase"))


def verifier_ref(metadata: Any) -> str | None:
    """`metadata.verifier_ref`, the tag the booking guard puts on every create it forwards."""
    return _tag(metadata.get("verifier_ref")) if isinstance(metadata, dict) else None


def _tag(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float, str)):
        text = str(value).strip()
        return text or None
    return None


def emails(items: Any) -> tuple[str, ...]:
    """Lower-cased e-mails from a list of Cal.com person objects (unknown shapes are skipped)."""
    found: list[str] = []
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("email"), str) and item["email"].strip():
                found.append(item["email"].strip().lower())
    return tuple(dict.fromkeys(found))


def phones(items: Any) -> tuple[str, ...]:
    """The digits of each `phoneNumber` in a list of Cal.com person objects."""
    found: list[str] = []
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("phoneNumber"), str):
                digits = re.sub(r"[^0-9]", "", item["phoneNumber"])
                if digits:
                    found.append(digits)
    return tuple(dict.fromkeys(found))


_INT_TEXT = re.compile(r"-?[0-9]{1,19}")
_INT64 = (-(2**63), 2**63 - 1)


def as_int(value: Any) -> int | None:
    """An id that fits a 64-bit column, from a number or a string of ASCII digits; else None."""
    number: int | None = None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
        number = int(value.strip())
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    if number is None or not _INT64[0] <= number <= _INT64[1]:
        return None
    return number
