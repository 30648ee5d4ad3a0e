"""Booking webhooks as Cal.com sends them from inside a create: body, signature, delivery.

Cal.com posts `{"triggerEvent", "createdAt", "payload"}` (`JSON.stringify`, so compact), signs the
exact body with HMAC-SHA256 under the subscriber's secret (lower-case hex in `X-Cal-Signature-256`,
the literal `no-secret-provided` without a secret), adds `X-Cal-Webhook-Version: 2021-10-20`, follows
no redirects, makes one attempt per subscriber and only logs a failure (sendPayload.ts,
handleWebhookTrigger.ts).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from service.testing.fakecalcom.eventtypes import EventType
from service.testing.fakecalcom.shapes import iso, parse_time

if TYPE_CHECKING:
    import httpx

WEBHOOK_VERSION = "2021-10-20"
DELIVERY_TIMEOUT = 30.0  # Cal.com sets none; the fake gives up so a dead subscriber cannot hang a test


@dataclass(frozen=True)
class Subscriber:
    url: str
    secret: str | None = None


@dataclass(frozen=True)
class Webhook:
    """One booking event for every subscriber of an API key."""

    trigger: str
    payload: dict[str, Any]

    def body(self, created_at: datetime) -> bytes:
        """The exact bytes Cal.com posts (and signs)."""
        envelope = {"triggerEvent": self.trigger, "createdAt": iso(created_at), "payload": self.payload}
        return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()


def signature(body: bytes, secret: str | None) -> str:
    """`X-Cal-Signature-256` for a body."""
    if not secret:
        return "no-secret-provided"
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def booking_created(
    item: dict[str, Any],
    event_type: EventType,
    *,
    people: Sequence[dict[str, Any]],
    booker: dict[str, Any],
    metadata: dict[str, Any],
    seat_uid: str | None = None,
    recurrence: int | None = None,
) -> Webhook:
    """BOOKING_CREATED (BOOKING_REQUESTED while the event type needs confirmation) for a written booking."""
    pending = item["status"] == "pending"
    organizer = item["hosts"][0]
    start, end = parse_time(item["start"]) or datetime.min, parse_time(item["end"]) or datetime.min
    payload: dict[str, Any] = {
        "bookerUrl": "https://cal.com",
        "type": event_type.slug,
        "title": item["title"],
        "description": "",
        "additionalNotes": "",
        "customInputs": {},
        "startTime": _calendar_time(start),
        "endTime": _calendar_time(end),
        "organizer": {
            "id": organizer["id"],
            "name": organizer["name"],
            "email": organizer["email"],
            "username": organizer["username"],
            "timeZone": organizer["timeZone"],
            "language": {"locale": "en"},
            "timeFormat": "h:mma",
            "utcOffset": _utc_offset(organizer["timeZone"], start),
        },
        "attendees": [_person(p, start) for p in people],
        "responses": _responses(booker, item.get("guests", [])),
        "userFieldsResponses": {},
        "location": item["location"],
        "destinationCalendar": None,
        "hideCalendarNotes": False,
        "hideCalendarEventDetails": False,
        "seatsPerTimeSlot": event_type.seats,
        "seatsShowAttendees": True if event_type.seats else None,
        "iCalUID": f"{item['uid']}@Cal.com",
        "iCalSequence": 0,
        "requiresConfirmation": event_type.requires_confirmation,
        "uid": item["uid"],
        "bookingId": item["id"],
        "eventTypeId": item["eventTypeId"],
        "eventTitle": event_type.title,
        "eventDescription": "",
        "price": 0,
        "currency": "usd",
        "length": item["duration"],
        "metadata": metadata,
        "status": "PENDING" if pending else "ACCEPTED",
        "smsReminderNumber": booker.get("phoneNumber"),
    }
    if seat_uid:
        payload["attendeeSeatId"] = seat_uid
    if recurrence:
        payload["recurringEvent"] = {"freq": 2, "count": recurrence, "interval": 1}
    return Webhook("BOOKING_REQUESTED" if pending else "BOOKING_CREATED", payload)


async def deliver(
    client: httpx.AsyncClient | None, subscribers: Sequence[Subscriber], webhook: Webhook, now: datetime, *, fail: bool = False
) -> list[dict[str, Any]]:
    """Send one webhook to every subscriber at once and wait for all; a record per delivery, never raises.

    With `fail` nothing reaches the subscribers: each delivery is recorded as failed, as when
    Cal.com's fetch to the subscriber throws (connection refused, reset).
    """
    body = webhook.body(now)
    if fail:
        return [_record(s, webhook, "failed", error="connection refused (fault webhook_failing)") for s in subscribers]
    if client is None:
        import httpx

        async with httpx.AsyncClient(timeout=DELIVERY_TIMEOUT, follow_redirects=False) as own:
            return await deliver(own, subscribers, webhook, now)
    return list(await asyncio.gather(*(_post(client, s, webhook, body) for s in subscribers)))


def skipped(subscribers: Sequence[Subscriber], webhook: Webhook) -> list[dict[str, Any]]:
    """Records for deliveries the fake did not attempt."""
    return [_record(s, webhook, "skipped") for s in subscribers]


async def _post(client: httpx.AsyncClient, subscriber: Subscriber, webhook: Webhook, body: bytes) -> dict[str, Any]:
    headers = {
        "Content-Type": "application/json",
        "X-Cal-Signature-256": signature(body, subscriber.secret),
        "X-Cal-Webhook-Version": WEBHOOK_VERSION,
    }
    try:
        response = await client.post(subscriber.url, content=body, headers=headers, follow_redirects=False)
    except Exception as exc:  # Cal.com catches and logs every delivery error
        return _record(subscriber, webhook, "failed", error=type(exc).__name__)
    outcome = "delivered" if 200 <= response.status_code < 300 else "rejected"
    return _record(subscriber, webhook, outcome, status=response.status_code)


def _record(
    subscriber: Subscriber, webhook: Webhook, outcome: str, *, status: int | None = None, error: str | None = None
) -> dict[str, Any]:
    return {
        "url": subscriber.url,
        "trigger": webhook.trigger,
        "uid": webhook.payload["uid"],
        "seat": webhook.payload.get("attendeeSeatId"),
        "outcome": outcome,
        "status": status,
        "error": error,
    }


def _person(person: dict[str, Any], start: datetime) -> dict[str, Any]:
    first, _, last = person["name"].partition(" ")
    out = {
        "email": person["email"],
        "name": person["name"],
        "firstName": first,
        "lastName": last,
        "timeZone": person["timeZone"],
        "language": {"locale": person.get("language") or "en"},
        "utcOffset": _utc_offset(person["timeZone"], start),
    }
    if person.get("phoneNumber"):
        out["phoneNumber"] = person["phoneNumber"]
    if person.get("seatUid"):
        out["bookingSeat"] = {"referenceUid": person["seatUid"]}
    return out


def _responses(booker: dict[str, Any], guests: list[str]) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "name": {"label": "your_name", "value": booker["name"], "isHidden": False},
        "email": {"label": "email_address", "value": booker["email"], "isHidden": False},
        "attendeePhoneNumber": {"label": "phone_number", "isHidden": True},
        "guests": {"label": "additional_guests", "value": list(guests), "isHidden": False},
    }
    if booker.get("phoneNumber"):
        responses["attendeePhoneNumber"] = {"label": "phone_number", "value": booker["phoneNumber"], "isHidden": False}
    return responses


def _calendar_time(moment: datetime) -> str:
    """Cal.com's CalendarEvent times: `dayjs(...).utc().format()`, seconds and `Z`."""
    return iso(moment)[:19] + "Z"


def _utc_offset(zone: str, moment: datetime) -> int:
    try:
        offset = moment.astimezone(ZoneInfo(zone)).utcoffset()
    except (ValueError, LookupError):
        return 0
    return int(offset.total_seconds() // 60) if offset else 0
