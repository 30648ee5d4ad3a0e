"""The fake Cal.com creates bookings like Cal.com: validation, availability, seats, recurrence, inline webhooks, reads."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from service.core.webhooks import parse as parse_webhook
from service.testing.fakecalcom import FakeCalcom

from .helpers import FakeClock, example

KEY = "cal_live_salon_mitte_0001"
OTHER_KEY = "cal_live_salon_nord_0002"
SECRET = "fake-subscriber-secret-51e2"
HOOK = "https://verifier.example/webhooks/calcom/salon-1"
NOW = datetime(2025, 10, 6, 12, 0, tzinfo=timezone.utc)
V2 = {"cal-api-version": "2024-08-13"}
MAX = {"name": "Max Muster", "email": "max@kunde.example", "timeZone": "Europe/Berlin", "phoneNumber": "+491701234567"}


class Subscriber:
    """A webhook receiver: records what arrives, answers `status`, and can hold each delivery until released."""

    def __init__(self) -> None:
        self.received: list[httpx.Request] = []
        self.status = 200
        self.arrived = asyncio.Event()
        self.release: asyncio.Event | None = None

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.received.append(request)
        self.arrived.set()
        if self.release is not None:
            await self.release.wait()
        return httpx.Response(self.status)

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.received]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def subscriber() -> Subscriber:
    return Subscriber()


@pytest.fixture
async def fake(clock, subscriber):
    async with httpx.AsyncClient(transport=httpx.MockTransport(subscriber)) as hooks:
        calcom = FakeCalcom(clock=clock, webhook_client=hooks)
        calcom.add_api_key(KEY)
        calcom.add_webhook(KEY, HOOK, SECRET)
        yield calcom


@pytest.fixture
async def http(fake):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app), base_url="http://fake.calcom") as client:
        yield client


def at(hours: float) -> str:
    return (NOW + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


async def create(http: httpx.AsyncClient, key: str | None = KEY, headers: dict[str, str] | None = V2, **fields: Any) -> httpx.Response:
    body = {"start": at(24), "eventTypeId": 1001, "attendee": MAX, "metadata": {"appointment_id": "a-1"}, **fields}
    body = {name: value for name, value in body.items() if value is not None}
    auth = {"Authorization": f"Bearer {key}"} if key else {}
    return await http.post("/v2/bookings", json=body, headers={**auth, **(headers or {})})


async def listed(http: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    response = await http.get("/v2/bookings", params=params, headers={"Authorization": f"Bearer {KEY}", **V2})
    assert response.status_code == 200, response.text
    return response.json()["data"]


def refused(response: httpx.Response, status: int, message: str | None = None) -> bool:
    body = response.json()
    assert response.status_code == status, response.text
    assert body["status"] == "error" and {"timestamp", "path", "error"} <= body.keys()
    return message is None or body["error"]["message"] == message


# --- the create and what the reads see of it ------------------------------------------------------


async def test_create_answers_201_with_the_item_the_reads_return(fake, http):
    response = await create(http)

    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "success"
    item = body["data"]
    assert (item["start"], item["end"], item["duration"], item["status"]) == (
        "2025-10-07T12:00:00.000Z",
        "2025-10-07T12:30:00.000Z",
        30,
        "accepted",
    )
    assert item["attendees"] == [
        {
            "name": "Max Muster",
            "email": "max@kunde.example",
            "timeZone": "Europe/Berlin",
            "language": "en",
            "absent": False,
            "phoneNumber": "+491701234567",
        }
    ]
    assert (item["metadata"], item["eventTypeId"], item["eventType"]["id"]) == ({"appointment_id": "a-1"}, 1001, 1001)
    assert item["createdAt"] == "2025-10-06T12:00:00.000Z"
    assert await listed(http) == [item]
    one = await http.get(f"/v2/bookings/{item['uid']}", headers={"Authorization": f"Bearer {KEY}", **V2})
    assert one.json() == {"status": "success", "data": item}


async def test_creates_are_counted_apart_from_reads(fake, http):
    await create(http)
    await create(http)  # the slot is taken now: a request, but nothing written
    await listed(http)

    assert (fake.creates, fake.creates_by_key[KEY], fake.written, fake.calls) == (2, 2, 1, 1)
    assert json.loads(fake.create_requests[0]["body"])["metadata"] == {"appointment_id": "a-1"}


async def test_length_comes_from_the_event_type_with_30_minutes_by_default(fake, http):
    fake.set_event_type(2002, length=45)

    configured = (await create(http, eventTypeId=2002)).json()["data"]
    unconfigured = (await create(http, eventTypeId=3003, start=at(30))).json()["data"]

    assert (configured["duration"], configured["end"]) == (45, "2025-10-07T12:45:00.000Z")
    assert unconfigured["duration"] == 30


async def test_length_in_minutes_is_taken_only_from_an_event_type_with_several_lengths(fake, http):
    fake.set_event_type(2002, length=30, durations=[30, 60])

    picked = await create(http, eventTypeId=2002, lengthInMinutes=60)
    not_offered = await create(http, eventTypeId=2002, lengthInMinutes=45, start=at(30))
    single_length = await create(http, eventTypeId=1001, lengthInMinutes=30, start=at(40))

    assert picked.json()["data"]["duration"] == 60
    assert refused(not_offered, 400) and "possible lengths are: 30, 60" in not_offered.json()["error"]["message"]
    assert refused(single_length, 400) and single_length.json()["error"]["message"].startswith("Can't specify 'lengthInMinutes'")
    assert fake.written == 1


async def test_a_phone_only_attendee_gets_calcoms_made_up_address(http):
    item = (await create(http, attendee={"name": "Eva", "timeZone": "Europe/Berlin", "phoneNumber": "+49 170 5550001"})).json()["data"]

    assert item["attendees"][0]["email"] == "491705550001@sms.cal.com"
    assert item["attendees"][0]["phoneNumber"] == "+49 170 5550001"


# --- validation -----------------------------------------------------------------------------------

METADATA_MESSAGE = (
    "metadata must be an object with up to 50 keys, each key name up to 40 characters, and values with a maximum length of 500 characters."
)


@pytest.mark.parametrize(
    "fields",
    [
        {"start": None},
        {"start": "tomorrow"},
        {"start": 1760000000},
        {"eventTypeId": None},
        {"eventTypeId": "1001"},
        {"attendee": None},
        {"attendee": {"email": "max@kunde.example", "timeZone": "Europe/Berlin"}},
        {"attendee": {"name": "Max", "email": "max@kunde.example"}},
        {"attendee": {**MAX, "timeZone": "Mars/Olympus"}},
        {"attendee": {**MAX, "email": "not-an-address"}},
        {"attendee": {**MAX, "phoneNumber": "0170 12"}},
        {"attendee": {"name": "Max", "timeZone": "Europe/Berlin"}},
        {"lengthInMinutes": -5},
        {"guests": "a@b.example"},
    ],
    ids=[
        "no start",
        "start not ISO",
        "start a number",
        "no event type",
        "event type a string",
        "no attendee",
        "attendee without name",
        "attendee without time zone",
        "unknown time zone",
        "bad email",
        "bad phone",
        "neither email nor phone",
        "negative length",
        "guests not a list",
    ],
)
async def test_create_refuses_a_body_calcom_refuses(fake, http, subscriber, fields):
    response = await create(http, **fields)

    assert refused(response, 400) and response.json()["error"]["code"] == "BadRequestException"
    assert (fake.written, subscriber.received) == (0, [])


@pytest.mark.parametrize(
    "metadata",
    [
        {f"k{n}": n for n in range(51)},
        {"k" * 41: "x"},
        {"note": "x" * 501},
        {"nested": {"a": 1}},
        {"gone": None},
        {"list": [1]},
        {"emoji": "😀" * 251},
        "appointment a-1",
    ],
    ids=[
        "51 keys",
        "41-character key",
        "501-character value",
        "object value",
        "null value",
        "list value",
        "501 UTF-16 units",
        "not an object",
    ],
)
async def test_create_enforces_calcoms_metadata_limits(fake, http, metadata):
    response = await create(http, metadata=metadata)

    assert refused(response, 400, METADATA_MESSAGE)
    assert fake.written == 0


async def test_create_accepts_metadata_right_at_the_limits(http):
    metadata = {f"k{n:02d}": n for n in range(48)} | {"k" * 40: "x" * 500, "flag": True}

    response = await create(http, metadata=metadata)

    assert response.status_code == 201 and response.json()["data"]["metadata"] == metadata


async def test_create_refuses_a_meeting_in_the_past(fake, http):
    assert refused(await create(http, start=at(-1)), 400, "Attempting to book a meeting in the past.")


@pytest.mark.parametrize("key", [None, "cal_live_unknown"])
async def test_create_without_a_known_key_is_401_and_writes_nothing(fake, http, subscriber, key):
    response = await create(http, key=key)

    assert refused(response, 401) and response.json()["error"]["code"] == "UnauthorizedException"
    assert (fake.written, subscriber.received, fake.creates) == (0, [], 1)


async def test_create_without_the_version_header_writes_nothing(fake, http):
    assert refused(await create(http, headers={}), 400)
    assert fake.written == 0


async def test_creates_count_against_the_keys_rate_limit(fake, http):
    fake.limit = 2
    await create(http)
    await listed(http)

    response = await create(http, start=at(30))

    assert refused(response, 429) and response.json()["error"]["code"] == "ThrottlerException"
    assert fake.written == 1


# --- availability -------------------------------------------------------------------------------


async def test_a_slot_the_host_holds_cannot_be_booked_again(fake, http, subscriber):
    first = await create(http)
    again = await create(http, attendee={**MAX, "email": "eva@kunde.example"})
    overlapping = await create(http, start=(NOW + timedelta(hours=24, minutes=15)).isoformat())
    next_slot = await create(http, start=(NOW + timedelta(hours=24, minutes=30)).isoformat())

    message = "User either already has booking at this time or is not available"
    assert first.status_code == 201 and refused(again, 400, message) and refused(overlapping, 400, message)
    assert next_slot.status_code == 201
    assert len(await listed(http)) == 2 and len(subscriber.received) == 2


async def test_a_cancelled_booking_frees_its_slot_and_other_accounts_never_block(fake, http):
    fake.add_booking(OTHER_KEY, start=at(24), hosts=["host@salon.example"])
    first = (await create(http)).json()["data"]
    fake.cancel_booking(first["uid"])

    assert (await create(http)).status_code == 201


async def test_a_round_robin_retry_lands_on_the_next_host_and_makes_a_duplicate(fake, http):
    fake.set_event_type(4004, hosts=["anna@salon.example", "ben@salon.example"])

    first = (await create(http, eventTypeId=4004)).json()["data"]
    retry = (await create(http, eventTypeId=4004)).json()["data"]
    third = await create(http, eventTypeId=4004)

    assert [first["hosts"][0]["email"], retry["hosts"][0]["email"]] == ["anna@salon.example", "ben@salon.example"]
    assert first["uid"] != retry["uid"] and first["metadata"] == retry["metadata"]
    assert refused(third, 400, "One of the hosts either already has booking at this time or is not available")


async def test_two_creates_racing_for_one_slot_make_one_booking(fake, http, subscriber):
    subscriber.release = asyncio.Event()  # the first create sits in its webhook delivery, its row written
    first = asyncio.create_task(create(http))
    await subscriber.arrived.wait()

    second = await create(http, attendee={**MAX, "email": "eva@kunde.example"})
    subscriber.release.set()

    assert (await first).status_code == 201 and second.status_code == 400
    assert fake.written == 1


async def test_an_event_type_that_needs_confirmation_books_pending_and_sends_booking_requested(fake, http, subscriber):
    fake.set_event_type(5005, requires_confirmation=True)

    item = (await create(http, eventTypeId=5005)).json()["data"]

    (body,) = subscriber.bodies()
    assert item["status"] == "pending"
    assert (body["triggerEvent"], body["payload"]["status"]) == ("BOOKING_REQUESTED", "PENDING")


# --- seats ----------------------------------------------------------------------------------------


async def test_creates_for_a_seated_slot_add_seats_to_one_booking(fake, http, subscriber):
    fake.set_event_type(6006, seats=3)
    eva = {**MAX, "name": "Eva Kern", "email": "eva@kunde.example"}

    first = (await create(http, eventTypeId=6006, metadata={"appointment_id": "a-1"})).json()["data"]
    second = (await create(http, eventTypeId=6006, attendee=eva, metadata={"appointment_id": "a-2", "phase": "B"})).json()["data"]

    assert first["uid"] == second["uid"] and first["seatUid"] != second["seatUid"]
    assert [(a["email"], a["seatUid"], a["metadata"]) for a in second["attendees"]] == [
        ("max@kunde.example", first["seatUid"], {"appointment_id": "a-1"}),
        ("eva@kunde.example", second["seatUid"], {"appointment_id": "a-2", "phase": "B"}),
    ]
    hook = subscriber.bodies()[1]["payload"]
    assert (hook["uid"], hook["bookingId"], hook["attendeeSeatId"]) == (first["uid"], first["id"], second["seatUid"])
    assert hook["metadata"] == {"appointment_id": "a-2", "phase": "B"}
    assert len(await listed(http)) == 1 and fake.written == 2


async def test_the_verifier_reads_a_new_seats_webhook_as_that_seats_attendee(fake, http, subscriber):
    fake.set_event_type(6006, seats=3)
    await create(http, eventTypeId=6006)
    await create(
        http, eventTypeId=6006, attendee={**MAX, "name": "Eva Kern", "email": "eva@kunde.example"}, metadata={"appointment_id": "a-2"}
    )

    event = parse_webhook(subscriber.received[1].content, "application/json", NOW)

    (seen,) = event.changes
    assert (seen.attendees, seen.appointment_tag, seen.seat) == (
        ("eva@kunde.example",),
        "a-2",
        subscriber.bodies()[1]["payload"]["attendeeSeatId"],
    )


async def test_a_seated_slot_refuses_the_same_attendee_twice_and_a_full_slot(fake, http, subscriber):
    fake.set_event_type(6006, seats=2)
    await create(http, eventTypeId=6006)
    await create(http, eventTypeId=6006, attendee={**MAX, "email": "eva@kunde.example"})

    twice = await create(http, eventTypeId=6006, attendee={**MAX, "email": "MAX@kunde.example"})
    full = await create(http, eventTypeId=6006, attendee={**MAX, "email": "ida@kunde.example"})

    assert refused(twice, 409, "already_signed_up_for_this_booking_error")
    assert refused(full, 409, "No more seats left at this seated booking.")
    assert len(subscriber.received) == 2 and fake.written == 2


# --- recurring ------------------------------------------------------------------------------------


async def test_a_recurring_create_books_one_occurrence_a_week_and_answers_a_list(fake, http, subscriber):
    fake.set_event_type(7007, recurring=4, length=60)

    data = (await create(http, eventTypeId=7007, recurrenceCount=3)).json()["data"]

    series = data[0]["recurringBookingUid"]
    assert [item["start"] for item in data] == ["2025-10-07T12:00:00.000Z", "2025-10-14T12:00:00.000Z", "2025-10-21T12:00:00.000Z"]
    assert {item["recurringBookingUid"] for item in data} == {series} and len({item["uid"] for item in data}) == 3
    assert [b["payload"]["uid"] for b in subscriber.bodies()] == [item["uid"] for item in data]
    assert subscriber.bodies()[0]["payload"]["recurringEvent"] == {"freq": 2, "count": 3, "interval": 1}
    whole = await http.get(f"/v2/bookings/{series}", headers={"Authorization": f"Bearer {KEY}", **V2})
    one = await http.get(f"/v2/bookings/{data[1]['uid']}", headers={"Authorization": f"Bearer {KEY}", **V2})
    assert whole.json()["data"] == data and one.json()["data"] == data[1]


async def test_a_recurring_create_takes_the_event_types_count_and_refuses_more(fake, http):
    fake.set_event_type(7007, recurring=2)

    default = (await create(http, eventTypeId=7007)).json()["data"]
    too_many = await create(http, eventTypeId=7007, recurrenceCount=3, start=at(30))

    assert len(default) == 2
    assert refused(too_many, 400, "Provided recurrence count is higher than the event type's recurring event count.")


async def test_a_recurring_create_that_fails_midway_keeps_the_occurrences_it_wrote(fake, http, subscriber):
    fake.set_event_type(7007, recurring=3)
    fake.add_booking(KEY, uid="taken", start=(NOW + timedelta(days=8)).isoformat())  # the second week's slot

    response = await create(http, eventTypeId=7007)

    assert refused(response, 400, "User either already has booking at this time or is not available")
    written = [item for item in await listed(http) if item["uid"] != "taken"]
    assert [item["start"] for item in written] == ["2025-10-07T12:00:00.000Z"]
    assert [b["payload"]["uid"] for b in subscriber.bodies()] == [written[0]["uid"]]


# --- the inline webhook ---------------------------------------------------------------------------


async def test_the_webhook_is_signed_like_calcoms_and_verifies_with_the_secret(http, subscriber):
    await create(http)

    (request,) = subscriber.received
    expected = hmac.new(SECRET.encode(), request.content, hashlib.sha256).hexdigest()
    assert request.headers["X-Cal-Signature-256"] == expected
    assert request.headers["X-Cal-Webhook-Version"] == "2021-10-20"
    assert request.headers["Content-Type"] == "application/json"
    assert str(request.url) == HOOK


async def test_the_webhook_has_the_shape_of_calcoms_booking_created(http, subscriber):
    item = (await create(http)).json()["data"]

    (body,) = subscriber.bodies()
    real = example("booking_created.docs-v2021-10-20.json")
    payload = body["payload"]
    assert body.keys() == real.keys() and body["triggerEvent"] == "BOOKING_CREATED"
    for name in (
        "uid",
        "bookingId",
        "startTime",
        "endTime",
        "eventTypeId",
        "organizer",
        "attendees",
        "metadata",
        "status",
        "title",
        "type",
        "length",
    ):
        assert type(payload[name]) is type(real["payload"][name]), name
    assert payload["organizer"].keys() >= real["payload"]["organizer"].keys() - {"usernameInOrg"}
    assert (payload["uid"], payload["bookingId"], payload["eventTypeId"]) == (item["uid"], item["id"], 1001)
    assert (payload["startTime"], payload["endTime"], payload["status"]) == ("2025-10-07T12:00:00Z", "2025-10-07T12:30:00Z", "ACCEPTED")
    assert payload["attendees"][0]["phoneNumber"] == "+491701234567" and payload["metadata"] == {"appointment_id": "a-1"}
    assert payload["organizer"]["email"] == item["hosts"][0]["email"]


async def test_the_verifier_reads_the_webhook_as_the_booking_created(http, subscriber):
    item = (await create(http)).json()["data"]

    event = parse_webhook(subscriber.received[0].content, "application/json", NOW)

    (seen,) = event.changes
    assert (seen.uid, seen.booking_id, seen.appointment_tag, seen.phones) == (item["uid"], item["id"], "a-1", ("491701234567",))
    assert (seen.start, seen.event_type_id, seen.attendees) == (NOW + timedelta(hours=24), 1001, ("max@kunde.example",))


async def test_the_webhook_arrives_before_the_create_answers(http, subscriber):
    subscriber.release = asyncio.Event()
    answer = asyncio.create_task(create(http))

    await subscriber.arrived.wait()

    assert not answer.done()  # the create is still waiting on its delivery
    subscriber.release.set()
    assert (await answer).status_code == 201


async def test_every_subscriber_of_the_key_and_no_other_gets_the_webhook(fake, http, subscriber):
    fake.add_webhook(KEY, "https://second.example/hook")
    fake.add_webhook(OTHER_KEY, "https://other.example/hook", "other-secret")

    await create(http)

    assert sorted(str(r.url) for r in subscriber.received) == ["https://second.example/hook", HOOK]
    unsigned = next(r for r in subscriber.received if r.url.host == "second.example")
    assert unsigned.headers["X-Cal-Signature-256"] == "no-secret-provided"


async def test_a_subscriber_answering_an_error_does_not_fail_the_create(fake, http, subscriber):
    subscriber.status = 500

    response = await create(http)

    assert response.status_code == 201
    assert [(d["outcome"], d["status"]) for d in fake.deliveries] == [("rejected", 500)]


# --- reads a guard uses ---------------------------------------------------------------------------


async def test_the_list_filters_a_guard_uses(fake, http, clock):
    fake.set_event_type(2002)
    old = (await create(http)).json()["data"]
    clock.advance(600)
    mine = (await create(http, start=at(26), eventTypeId=2002, attendee={**MAX, "email": "Eva@Kunde.example"})).json()["data"]
    other = (await create(http, start=at(28))).json()["data"]
    uids = lambda items: [i["uid"] for i in items]

    assert uids(await listed(http, afterCreatedAt="2025-10-06T12:05:00Z")) == [mine["uid"], other["uid"]]
    assert uids(await listed(http, beforeCreatedAt="2025-10-06T12:05:00Z")) == [old["uid"]]
    assert uids(await listed(http, eventTypeId="2002")) == [mine["uid"]]
    assert uids(await listed(http, eventTypeIds="1001,2002")) == [old["uid"], mine["uid"], other["uid"]]
    assert uids(await listed(http, attendeeEmail="eva@kunde.example")) == [mine["uid"]]
    assert uids(await listed(http, bookingUid=other["uid"])) == [other["uid"]]
    assert uids(await listed(http, afterStart=at(25), beforeEnd=at(27))) == [mine["uid"]]
    assert uids(await listed(http, sortCreated="desc", sortEnd="asc")) == [old["uid"], mine["uid"], other["uid"]]  # sortEnd comes first
    assert uids(await listed(http, sortCreated="desc")) == [other["uid"], mine["uid"], old["uid"]]


@pytest.mark.parametrize("params", [{"eventTypeId": "two"}, {"eventTypeId": "1,2"}, {"afterCreatedAt": "noon"}, {"sortCreated": "newest"}])
async def test_the_list_refuses_bad_filters(http, params):
    response = await http.get("/v2/bookings", params=params, headers={"Authorization": f"Bearer {KEY}", **V2})

    assert refused(response, 400)


async def test_get_one_booking_needs_a_key_and_says_404_for_an_unknown_uid(http):
    unknown = await http.get("/v2/bookings/nope", headers={"Authorization": f"Bearer {KEY}", **V2})
    anonymous = await http.get("/v2/bookings/nope", headers=V2)

    assert refused(unknown, 404, "Booking with uid=nope was not found in the database")
    assert refused(anonymous, 401)
