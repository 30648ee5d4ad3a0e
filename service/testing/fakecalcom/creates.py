"""`POST /v2/bookings` of the fake Cal.com, in Cal.com's order of work (see `faults.py`).

Admission (outage, key, throttle, version), validation, availability, the row, the booking webhooks
awaited before answering, then the answer: 201 `{"status": "success", "data": …}` with the same
item shape the GETs return (`data` a list for a recurring event type, `seatUid` for a seat).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.testing.fakecalcom import faults
from service.testing.fakecalcom.answers import bearer, error, internal_error, throttled, unavailable
from service.testing.fakecalcom.create_input import CreateInput, Rejected, bad_request, read_create
from service.testing.fakecalcom.eventtypes import EventType
from service.testing.fakecalcom.faults import CreateFault
from service.testing.fakecalcom.reads import API_VERSION
from service.testing.fakecalcom.webhooks import Webhook, booking_created, deliver, skipped

if TYPE_CHECKING:
    from service.testing.fakecalcom.app import FakeCalcom

NOT_AVAILABLE = "User either already has booking at this time or is not available"
HOSTS_NOT_AVAILABLE = "One of the hosts either already has booking at this time or is not available"


async def create_booking(fake: FakeCalcom, request: Request) -> Response:
    """Create a booking (or a seat, or a recurring series) the way Cal.com does."""
    now = fake.clock()
    api_key = bearer(request)
    raw = await request.body()
    fake.note_create(api_key, request.headers.get("cal-api-version"), raw)
    fault = fake.next_create_fault()
    mode = fault.mode if fault else None
    if fake.down or mode == faults.UNAVAILABLE_5XX:
        status = fault.status if fault and mode == faults.UNAVAILABLE_5XX else 503
        return internal_error(request) if status == 500 else unavailable(status)
    if mode == faults.RATE_LIMITED_429:
        return throttled(request, fake.limit, fake.block)
    refused = fake.authenticate(request, api_key)
    if refused is not None:
        return refused
    assert api_key is not None
    blocked, headers = fake.throttle(request, api_key, now)
    if blocked is not None:
        return blocked
    if request.headers.get("cal-api-version") != API_VERSION:
        message = "this create needs cal-api-version: 2024-08-13 (without it Cal.com reads the body as version 2024-04-15)"
        return error(request, 400, "BadRequestException", message, headers)
    try:
        wanted = read_create(_decode(raw))
        event_type = fake.event_types.get(wanted.event_type_id)
        _check(wanted, event_type, now)
        if mode == faults.CONFLICT:
            raise _slot_taken(event_type)
        data = await _book(fake, api_key, wanted, event_type, fault)
    except Rejected as rejected:
        return error(request, rejected.status, rejected.code, rejected.message, headers)
    if mode == faults.ERROR_AFTER_WRITE_500:
        return internal_error(request, headers)
    if mode == faults.ERROR_AFTER_WRITE_400:
        return error(request, 400, "BadRequestException", "Missing payment credentials", headers)
    if fault and mode == faults.SLOW_ANSWER:
        await fake.hold_answer(fault.delay)
    return JSONResponse({"status": "success", "data": data}, 201, headers=headers)


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise bad_request("the request body is not valid JSON") from None


def _check(wanted: CreateInput, event_type: EventType, now: datetime) -> None:
    """The checks Cal.com makes before it looks at availability."""
    if wanted.start < now:
        raise bad_request("Attempting to book a meeting in the past.")
    if event_type.recurring:
        if wanted.recurrence_count and wanted.recurrence_count > event_type.recurring:
            raise bad_request("Provided recurrence count is higher than the event type's recurring event count.")
        return
    if wanted.length and not event_type.durations:
        raise bad_request(
            "Can't specify 'lengthInMinutes' because event type does not have multiple possible lengths. "
            "Please, remove the 'lengthInMinutes' field from the request."
        )
    if wanted.length and wanted.length not in event_type.durations:
        raise bad_request(
            "Provided 'lengthInMinutes' is not one of the possible lengths for the event type. "
            f"The possible lengths are: {', '.join(str(d) for d in event_type.durations)}"
        )


def _slot_taken(event_type: EventType) -> Rejected:
    return bad_request(HOSTS_NOT_AVAILABLE if event_type.team else NOT_AVAILABLE)


async def _book(fake: FakeCalcom, api_key: str, wanted: CreateInput, event_type: EventType, fault: CreateFault | None) -> Any:
    if event_type.recurring:
        return await _book_series(fake, api_key, wanted, event_type, fault)
    if event_type.seats:
        return await _book_seat(fake, api_key, wanted, event_type, fault)
    end = wanted.start + timedelta(minutes=wanted.length or event_type.length)
    return await _book_one(fake, api_key, wanted, event_type, fault, wanted.start, end)


async def _book_one(
    fake: FakeCalcom,
    api_key: str,
    wanted: CreateInput,
    event_type: EventType,
    fault: CreateFault | None,
    start: datetime,
    end: datetime,
    **series: Any,
) -> dict[str, Any]:
    """One booking: the first free host takes it, then its webhook goes out."""
    host = _free_host(fake, api_key, event_type, start, end)
    item = fake.book.add(
        api_key,
        start=start,
        end=end,
        status="pending" if event_type.requires_confirmation else "accepted",
        event_type_id=event_type.id,
        event_type_slug=event_type.slug,
        hosts=[host],
        attendees=[wanted.attendee],
        guests=wanted.guests,
        metadata=wanted.metadata,
        responses=wanted.responses,
        recurring_booking_uid=series.get("recurring_booking_uid"),
        title=_title(event_type, host, wanted),
    )
    fake.written += 1
    webhook = booking_created(
        item, event_type, people=item["attendees"], booker=wanted.attendee, metadata=item["metadata"], recurrence=series.get("recurrence")
    )
    await _announce(fake, api_key, webhook, fault)
    return item


async def _book_series(
    fake: FakeCalcom, api_key: str, wanted: CreateInput, event_type: EventType, fault: CreateFault | None
) -> list[dict[str, Any]]:
    """A recurring create: one booking per weekly occurrence, one after the other, without a transaction.

    As in Cal.com (handleNewRecurringBooking.ts), an occurrence that fails leaves the earlier ones
    written, their webhooks sent, and the whole request answers with the error.
    """
    count = wanted.recurrence_count or event_type.recurring or 1
    series_uid = str(uuid.uuid4())
    items = []
    for n in range(count):
        start = wanted.start + timedelta(weeks=n)
        end = start + timedelta(minutes=event_type.length)  # Cal.com ignores lengthInMinutes here
        items.append(
            await _book_one(fake, api_key, wanted, event_type, fault, start, end, recurring_booking_uid=series_uid, recurrence=count)
        )
    return items


async def _book_seat(
    fake: FakeCalcom, api_key: str, wanted: CreateInput, event_type: EventType, fault: CreateFault | None
) -> dict[str, Any]:
    """A seated event type: the first create of a slot makes the booking, later ones add seats."""
    email = wanted.attendee["email"]
    slot = fake.book.seated_slot(api_key, event_type.id, wanted.start)
    if slot is None:
        end = wanted.start + timedelta(minutes=wanted.length or event_type.length)
        host = _free_host(fake, api_key, event_type, wanted.start, end)
        item = fake.book.add(
            api_key,
            start=wanted.start,
            end=end,
            event_type_id=event_type.id,
            event_type_slug=event_type.slug,
            hosts=[host],
            seats=[{**wanted.attendee, "metadata": wanted.metadata}],
            metadata=wanted.metadata,
            title=_title(event_type, host, wanted),
        )
        seat_uid, people, metadata = item["attendees"][0]["seatUid"], [wanted.attendee], item["metadata"]
    else:
        if any(a["email"].lower() == email.lower() for a in slot["attendees"]):
            raise Rejected(409, "ConflictException", "already_signed_up_for_this_booking_error")
        if len(slot["attendees"]) >= (event_type.seats or 0):
            raise Rejected(409, "ConflictException", "No more seats left at this seated booking.")
        person = {k: v for k, v in wanted.attendee.items() if k != "email"}
        seat_uid = fake.book.add_seat(slot["uid"], email, metadata=wanted.metadata, **person)["seatUid"]
        item = fake.book.get(slot["uid"])
        # The new seat's webhook lists everyone on the slot and carries the booking's metadata
        # merged with this create's (handleSeats.ts, createNewSeat.ts).
        people, metadata = [*slot["attendees"], wanted.attendee], {**slot["metadata"], **wanted.metadata}
    fake.written += 1
    webhook = booking_created(item, event_type, people=people, booker=wanted.attendee, metadata=metadata, seat_uid=seat_uid)
    await _announce(fake, api_key, webhook, fault)
    return {**item, "seatUid": seat_uid}


def _free_host(fake: FakeCalcom, api_key: str, event_type: EventType, start: datetime, end: datetime) -> str:
    for host in event_type.hosts:
        if not fake.book.busy(api_key, host, start, end):
            return host
    raise _slot_taken(event_type)


def _title(event_type: EventType, host: str, wanted: CreateInput) -> str:
    """Cal.com's default event name: "{event type} between {organizer} and {attendee}"."""
    organizer = host.split("@")[0].replace(".", " ").title()
    return f"{event_type.title} between {organizer} and {wanted.attendee['name']}"


async def _announce(fake: FakeCalcom, api_key: str, webhook: Webhook, fault: CreateFault | None) -> None:
    """Send a booking webhook to the key's subscribers and wait for every delivery, as Cal.com does."""
    subscribers = fake.subscribers(api_key)
    mode = fault.mode if fault else None
    if mode == faults.WEBHOOK_SKIPPED:
        records = skipped(subscribers, webhook)
    else:
        records = await deliver(fake.webhook_client, subscribers, webhook, fake.clock(), fail=mode == faults.WEBHOOK_FAILING)
    fake.deliveries.extend({"api_key": api_key, **record} for record in records)
