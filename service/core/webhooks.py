"""Cal.com webhook bodies → what they say about bookings. Pure: bytes in, facts out.

The signature is checked before anything here runs (`signatures.py`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from service.core import times
from service.core.observations import Observation, as_int, emails, metadata_tags, phones, verifier_ref
from service.errors import BadRequest

EXISTS = frozenset({"BOOKING_CREATED", "BOOKING_REQUESTED", "BOOKING_RESCHEDULED"})
GONE = frozenset({"BOOKING_CANCELLED", "BOOKING_REJECTED"})
BOOKING_TRIGGERS = EXISTS | GONE
_GONE_STATUSES = frozenset({"CANCELLED", "REJECTED"})


@dataclass(frozen=True)
class GoneUid:
    """Every unit of booking `uid` is gone — or, for a seated booking, the seats of `attendees`."""

    uid: str
    attendees: tuple[str, ...]
    template: Observation


@dataclass(frozen=True)
class WebhookEvent:
    trigger: str
    created_at: datetime | None
    booking_uid: str | None
    changes: tuple[Observation, ...] = ()
    gone: tuple[GoneUid, ...] = field(default_factory=tuple)

    @property
    def concerns_bookings(self) -> bool:
        return bool(self.changes or self.gone)


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time with an offset, within the supported years."""
    return times.parse(value)


def _loads(body: bytes) -> Any:
    """orjson, or the json module for what only it reads (UTF-16 or -32 bodies, integers beyond 64 bits, NaN)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


def parse(body: bytes, content_type: str, received_at: datetime) -> WebhookEvent:
    """Read a signed body; BadRequest when it is not a Cal.com event we can act on."""
    if b"\\u0000" in body:
        raise BadRequest("the body contains NUL characters (\\u0000), which no Cal.com payload has")
    try:
        envelope = _loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        if "x-www-form-urlencoded" in content_type or (b"=" in body and not body.lstrip().startswith((b"{", b"["))):
            raise BadRequest(
                "the body is form-encoded, which Cal.com sends when the webhook has a custom payload "
                "template that is not JSON; remove the payload template in Cal.com so it sends its "
                "default JSON body"
            ) from None
        raise BadRequest("the body is not JSON; expected Cal.com's {triggerEvent, createdAt, payload} envelope") from None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("triggerEvent"), str):
        raise BadRequest(
            "not a Cal.com webhook: expected a JSON object with a string triggerEvent "
            "(a custom payload template must keep Cal.com's default envelope)"
        )
    trigger = envelope["triggerEvent"]
    created_at = parse_time(envelope.get("createdAt"))
    if trigger not in BOOKING_TRIGGERS:
        return WebhookEvent(trigger, created_at, None)

    payload = envelope.get("payload")
    if not isinstance(payload, dict):
        raise BadRequest(f"{trigger} without a payload object")
    uid = payload.get("uid")
    if not isinstance(uid, str) or not uid.strip():
        raise BadRequest(f"{trigger} payload lacks the booking uid")
    start = parse_time(payload.get("startTime"))
    if start is None:
        raise BadRequest(f"{trigger} payload lacks a startTime with a UTC offset")

    event_at = created_at or received_at
    hosts = _hosts(payload)
    attendees = emails(payload.get("attendees"))
    appointment_tag, phase_tag = metadata_tags(payload.get("metadata"))
    status = payload.get("status") if isinstance(payload.get("status"), str) else None
    raw_seat = payload.get("attendeeSeatId")
    seat = raw_seat if isinstance(raw_seat, str) else ""
    if seat:
        attendees = _seat_attendees(payload, seat, attendees)
    observation = Observation(
        uid=uid,
        seat=seat,
        start=start,
        end=parse_time(payload.get("endTime")),
        state="exists",
        event_at=event_at,
        source="webhook",
        booking_id=as_int(payload.get("bookingId")),
        calcom_status=status.lower() if status else None,
        event_type_id=as_int(payload.get("eventTypeId")),
        hosts=hosts,
        attendees=attendees,
        phones=phones(payload.get("attendees")),
        appointment_tag=appointment_tag,
        verifier_ref=verifier_ref(payload.get("metadata")),
        phase_tag=phase_tag,
    )

    gone_state = trigger in GONE or (status or "").upper() in _GONE_STATUSES
    if gone_state:
        gone_observation = _gone(observation)
        if seat:
            return WebhookEvent(trigger, created_at, uid, changes=(gone_observation,))
        return WebhookEvent(trigger, created_at, uid, gone=(GoneUid(uid, attendees, gone_observation),))

    changes = (observation,)
    gone: tuple[GoneUid, ...] = ()
    old_uid = payload.get("rescheduleUid")
    if trigger == "BOOKING_RESCHEDULED" and isinstance(old_uid, str) and old_uid and old_uid != uid:
        old_start = parse_time(payload.get("rescheduleStartTime")) or start
        template = Observation(
            uid=old_uid,
            start=old_start,
            end=parse_time(payload.get("rescheduleEndTime")),
            state="gone",
            event_at=event_at,
            source="webhook",
            booking_id=as_int(payload.get("rescheduleId")),
            calcom_status="rescheduled",
        )
        gone = (GoneUid(old_uid, attendees if seat else (), template),)
    return WebhookEvent(trigger, created_at, uid, changes=changes, gone=gone)


def _gone(observation: Observation) -> Observation:
    return Observation(
        uid=observation.uid,
        seat=observation.seat,
        start=observation.start,
        end=observation.end,
        state="gone",
        event_at=observation.event_at,
        source=observation.source,
        booking_id=observation.booking_id,
        calcom_status=observation.calcom_status or "cancelled",
        event_type_id=observation.event_type_id,
        hosts=observation.hosts,
        attendees=observation.attendees,
    )


def _seat_attendees(payload: dict[str, Any], seat: str, attendees: tuple[str, ...]) -> tuple[str, ...]:
    """The attendee of one seat: Cal.com may list every attendee of the slot in a new seat's webhook.

    The seat's own attendee carries `bookingSeat.referenceUid` (the seat id, the API's `seatUid`);
    failing that, the booker's `responses.email`. So a seat is told apart by its attendee's e-mail
    whether a webhook or the bookings API reports it.
    """
    if len(attendees) <= 1:
        return attendees
    listed = payload.get("attendees")
    people = listed if isinstance(listed, list) else []
    own = [
        p for p in people if isinstance(p, dict) and isinstance(p.get("bookingSeat"), dict) and p["bookingSeat"].get("referenceUid") == seat
    ]
    if emails(own):
        return emails(own)
    responses = payload.get("responses")
    booker = responses.get("email") if isinstance(responses, dict) else None
    booker = booker.get("value") if isinstance(booker, dict) else booker
    if isinstance(booker, str) and booker.strip().lower() in attendees:
        return (booker.strip().lower(),)
    return attendees


def _hosts(payload: dict[str, Any]) -> tuple[str, ...]:
    people: list[Any] = []
    if isinstance(payload.get("organizer"), dict):
        people.append(payload["organizer"])
    team = payload.get("team")
    if isinstance(team, dict) and isinstance(team.get("members"), list):
        people.extend(team["members"])
    if isinstance(payload.get("hosts"), list):
        people.extend(payload["hosts"])
    return emails(people)


def gone_units(gone: GoneUid, stored: list[tuple[str, tuple[str, ...]]]) -> list[Observation]:
    """Which stored units a cancellation (or reschedule) without a seat id takes away.

    A seated booking's seat cancellation names only that seat's attendee: take the seats whose
    attendees it names. Otherwise the whole booking is gone (a tombstone if we never saw it).
    """
    seats = [(seat, people) for seat, people in stored if seat]
    named = set(gone.attendees)
    if seats and named:
        hit = [seat for seat, people in seats if named & set(people)]
        if hit and len(hit) < len(seats):
            return [_with_seat(gone.template, seat) for seat in hit]
    units = [seat for seat, _ in stored] or [""]
    if "" not in units:
        units.append("")
    return [_with_seat(gone.template, seat) for seat in units]


def _with_seat(template: Observation, seat: str) -> Observation:
    return Observation(**{**template.__dict__, "seat": seat})
