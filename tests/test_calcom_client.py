"""The Cal.com API v2 bookings client against a mocked HTTP boundary (respx), and item conversion."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
import respx
from hypothesis import given
from hypothesis import strategies as st

from service.clients.calcom import CalcomClient, FetchResult
from service.core.api_bookings import observations_from_api
from service.errors import CalcomCredentialsBroken, CalcomRequestRejected, CalcomUnavailable

API_BASE = "https://api.cal.example"
URL = API_BASE + "/v2/bookings"
API_KEY = "cal_live_0123456789abcdef0123456789abcdef"
AFTER = datetime(2025, 10, 6, 9, 0, tzinfo=timezone.utc)
BEFORE = datetime(2025, 10, 6, 21, 0, tzinfo=timezone.utc)
FETCHED_AT = datetime(2025, 10, 6, 8, 0, 5, tzinfo=timezone.utc)


def booking_item(n: int = 1, **overrides: Any) -> dict[str, Any]:
    """A `BookingOutput_2024_08_13` as Cal.com serialises it."""
    start = datetime(2025, 10, 6, 10, 0, tzinfo=timezone.utc) + timedelta(minutes=30 * (n % 20))
    item: dict[str, Any] = {
        "id": 9000 + n,
        "uid": f"q7Yh2kLmN3pR5sT{n:07d}",
        "title": "Herrenhaarschnitt between Salon Mitte and Max Muster",
        "description": "",
        "hosts": [
            {
                "id": 41,
                "name": "Anna Schere",
                "email": "Anna@Salon-Mitte.example",
                "username": "anna",
                "timeZone": "Europe/Berlin",
            }
        ],
        "status": "accepted",
        "start": start.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "end": (start + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "duration": 30,
        "eventTypeId": 1201,
        "eventType": {"id": 1201, "slug": "herrenhaarschnitt"},
        "location": "Salon Mitte, Torstr. 1",
        "absentHost": False,
        "createdAt": "2025-10-01T08:12:44.512Z",
        "updatedAt": "2025-10-01T08:12:44.512Z",
        "attendees": [
            {
                "name": "Max Muster",
                "email": "max@kunde.example",
                "timeZone": "Europe/Berlin",
                "language": "de",
                "absent": False,
            }
        ],
        "bookingFieldsResponses": {"name": "Max Muster", "email": "max@kunde.example"},
        "metadata": {"appointment_id": "apt-100", "phase": "A"},
        "guests": [],
    }
    item.update(overrides)
    return item


def seated_item(**overrides: Any) -> dict[str, Any]:
    """A `GetSeatedBookingOutput_2024_08_13`: attendees are `SeatedAttendee`s with their own metadata."""
    item = booking_item(7, title="Farbberatung (Gruppe)", metadata={"appointment_id": "apt-shared"})
    del item["bookingFieldsResponses"]
    item["attendees"] = [
        {
            "name": "Eva",
            "email": "eva@kunde.example",
            "timeZone": "Europe/Berlin",
            "absent": False,
            "seatUid": "3be561a9-31f1-4b8e-aefc-9d9a085f0dd1",
            "bookingFieldsResponses": {"name": "Eva"},
            "metadata": {"appointment_id": 762, "phase": "B"},
        },
        {
            "name": "Jan",
            "email": "JAN@kunde.example",
            "timeZone": "Europe/Berlin",
            "absent": False,
            "seatUid": "9a0f3c1e-5d7b-4e2a-8c6f-1b2d3e4f5a6b",
            "bookingFieldsResponses": {"name": "Jan"},
        },
    ]
    item.update(overrides)
    return item


def page(items: list[dict[str, Any]], *, skip: int = 0, total: int | None = None, take: int = 250) -> dict[str, Any]:
    """A `GetBookingsOutput_2024_08_13` page."""
    total = len(items) if total is None else total
    return {
        "status": "success",
        "data": items,
        "pagination": {
            "totalItems": total,
            "remainingItems": max(0, total - (skip + take)),
            "returnedItems": len(items),
            "itemsPerPage": take,
            "currentPage": skip // take + 1,
            "totalPages": -(-total // take),
            "hasNextPage": skip + take < total,
            "hasPreviousPage": skip > 0,
        },
    }


def rate_headers(remaining: int, reset: int) -> dict[str, str]:
    return {
        "X-RateLimit-Limit-Default": "120",
        "X-RateLimit-Remaining-Default": str(remaining),
        "X-RateLimit-Reset-Default": str(reset),
    }


@pytest.fixture
async def client():
    async with httpx.AsyncClient() as http:
        yield CalcomClient(http, timeout=3.5)


@pytest.fixture
def calcom():
    with respx.mock(assert_all_mocked=True, assert_all_called=True) as mock:
        yield mock


async def fetch(client: CalcomClient, api_base: str = API_BASE) -> FetchResult:
    return await client.list_bookings(api_base=api_base, api_key=API_KEY, after_start=AFTER, before_end=BEFORE)


# --- the request --------------------------------------------------------------------------------


async def test_client_sends_api_version_and_bearer_headers(client, calcom):
    route = calcom.get(URL).respond(200, json=page([]))

    await fetch(client)

    request = route.calls.last.request
    assert request.headers["cal-api-version"] == "2024-08-13"
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"


async def test_client_sends_exact_query_params(client, calcom):
    route = calcom.get(URL).respond(200, json=page([]))
    berlin = timezone(timedelta(hours=2))

    await client.list_bookings(
        api_base=API_BASE,
        api_key=API_KEY,
        after_start=datetime(2025, 10, 6, 11, 0, 0, 250_999, tzinfo=berlin),
        before_end=BEFORE,
    )

    assert dict(route.calls.last.request.url.params) == {
        "afterStart": "2025-10-06T09:00:00.250Z",
        "beforeEnd": "2025-10-06T21:00:00.000Z",
        "status": "upcoming,unconfirmed,past,cancelled",
        "take": "250",
        "skip": "0",
    }


async def test_client_sets_an_explicit_timeout_on_every_request(client, calcom):
    route = calcom.get(URL).respond(200, json=page([]))

    await fetch(client)

    assert route.calls.last.request.extensions["timeout"] == {"connect": 3.5, "read": 3.5, "write": 3.5, "pool": 3.5}


async def test_client_tolerates_trailing_slash_in_api_base(client, calcom):
    route = calcom.get(URL).respond(200, json=page([]))

    await fetch(client, api_base=API_BASE + "/")

    assert route.called


async def test_client_refuses_naive_query_times(client):
    naive = AFTER.replace(tzinfo=None)

    with respx.mock(assert_all_mocked=True) as mock, pytest.raises(ValueError):
        await client.list_bookings(api_base=API_BASE, api_key=API_KEY, after_start=naive, before_end=BEFORE)

    assert mock.calls.call_count == 0


# --- paging -------------------------------------------------------------------------------------


def paged(total: int, *, take: int = 250):
    items = [booking_item(n) for n in range(total)]

    def answer(request: httpx.Request) -> httpx.Response:
        skip = int(request.url.params["skip"])
        body = page(items[skip : skip + take], skip=skip, total=total)
        return httpx.Response(200, json=body, headers=rate_headers(119 - skip // take, 55))

    return answer


async def test_client_pages_until_has_next_page_is_false(client, calcom):
    route = calcom.get(URL).mock(side_effect=paged(600))

    result = await fetch(client)

    assert result.calls == 3
    assert [call.request.url.params["skip"] for call in route.calls] == ["0", "250", "500"]
    assert len(result.items) == 600
    assert len({item["uid"] for item in result.items}) == 600


async def test_client_makes_one_call_when_everything_fits_one_page(client, calcom):
    route = calcom.get(URL).mock(side_effect=paged(250))

    result = await fetch(client)

    assert (result.calls, len(result.items), route.call_count) == (1, 250, 1)


async def test_client_stops_on_a_short_page_even_if_cal_com_claims_more(client, calcom):
    body = page([booking_item(1)], total=900)
    assert body["pagination"]["hasNextPage"] is True
    route = calcom.get(URL).respond(200, json=body)

    result = await fetch(client)

    assert (result.calls, len(result.items), route.call_count) == (1, 1, 1)


async def test_client_keeps_paging_without_pagination_while_pages_are_full(client, calcom):
    full = {"status": "success", "data": [booking_item(n) for n in range(250)]}
    rest = {"status": "success", "data": [booking_item(251)]}
    route = calcom.get(URL).mock(side_effect=[httpx.Response(200, json=full), httpx.Response(200, json=rest)])

    result = await fetch(client)

    assert (result.calls, len(result.items), route.call_count) == (2, 251, 2)


async def test_client_gives_up_after_one_hundred_pages(client, calcom):
    full = page([booking_item(n) for n in range(250)], total=10**6)
    route = calcom.get(URL).respond(200, json=full)

    with pytest.raises(CalcomUnavailable) as caught:
        await fetch(client)

    assert route.call_count == 100
    assert caught.value.calls == 100


async def test_client_fails_the_whole_fetch_when_a_later_page_fails(client, calcom):
    pages = paged(600)

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.params["skip"] == "500":
            return httpx.Response(502, text="<html>Bad gateway</html>")
        return pages(request)

    calcom.get(URL).mock(side_effect=answer)

    with pytest.raises(CalcomUnavailable) as caught:
        await fetch(client)

    assert caught.value.calls == 3


# --- rate-limit reading -------------------------------------------------------------------------


async def test_client_reports_the_last_rate_limit_reading(client, calcom):
    calcom.get(URL).mock(side_effect=paged(600))
    before = datetime.now(timezone.utc)

    result = await fetch(client)

    assert result.remaining == 117
    assert before + timedelta(seconds=55) <= result.reset_at <= datetime.now(timezone.utc) + timedelta(seconds=55)


async def test_client_reports_no_rate_limit_reading_without_headers(client, calcom):
    calcom.get(URL).respond(200, json=page([]))

    result = await fetch(client)

    assert (result.remaining, result.reset_at) == (None, None)


THROTTLED = {
    "status": "error",
    "timestamp": "2025-10-06T08:00:05.120Z",
    "path": "/v2/bookings",
    "error": {"code": "ThrottlerException", "message": "CustomThrottlerGuard - Too many requests. Please try again later."},
}


async def test_client_marks_429_as_rate_limited_with_the_block_end(client, calcom):
    calcom.get(URL).respond(429, json=THROTTLED, headers=rate_headers(0, 60))
    before = datetime.now(timezone.utc).timestamp()

    with pytest.raises(CalcomUnavailable) as caught:
        await fetch(client)

    error = caught.value
    assert error.rate_limited is True
    assert before + 60 <= error.retry_at <= datetime.now(timezone.utc).timestamp() + 60
    assert (error.calls, error.remaining) == (1, 0)
    assert "Too many requests" in str(error)


async def test_client_marks_429_without_headers_as_rate_limited_without_retry_time(client, calcom):
    calcom.get(URL).respond(429, json=THROTTLED)

    with pytest.raises(CalcomUnavailable) as caught:
        await fetch(client)

    assert (caught.value.rate_limited, caught.value.retry_at) == (True, None)


# --- errors -------------------------------------------------------------------------------------


def envelope(status: int, code: str, message: str) -> httpx.Response:
    body = {"status": "error", "timestamp": "2025-10-06T08:00:05.120Z", "path": "/v2/bookings", "error": {"code": code, "message": message}}
    return httpx.Response(status, json=body)


ERROR_CASES = {
    "read timeout": (httpx.ReadTimeout("timed out"), CalcomUnavailable),
    "connect timeout": (httpx.ConnectTimeout("timed out"), CalcomUnavailable),
    "connect error": (httpx.ConnectError("connection refused"), CalcomUnavailable),
    "connection dropped": (httpx.RemoteProtocolError("peer closed connection"), CalcomUnavailable),
    "500": (envelope(500, "InternalServerErrorException", "Internal server error"), CalcomUnavailable),
    "502": (httpx.Response(502, text="<html>502 Bad Gateway</html>"), CalcomUnavailable),
    "503": (httpx.Response(503, text=""), CalcomUnavailable),
    "401": (envelope(401, "UnauthorizedException", "CustomThrottlerGuard - Invalid API Key"), CalcomCredentialsBroken),
    "403": (envelope(403, "ForbiddenException", "insufficient permissions"), CalcomCredentialsBroken),
    "400": (envelope(400, "BadRequestException", "take must not be greater than 250"), CalcomRequestRejected),
    "404": (httpx.Response(404, text="Not Found"), CalcomRequestRejected),
    "non-JSON 200": (httpx.Response(200, text="<html>maintenance</html>"), CalcomUnavailable),
    "binary 200": (httpx.Response(200, content=b"\xff\xfe\x00garbage"), CalcomUnavailable),
    "JSON without data": (httpx.Response(200, json={"status": "success", "pagination": {}}), CalcomUnavailable),
    "data not a list": (httpx.Response(200, json={"status": "success", "data": {"bookings": []}}), CalcomUnavailable),
    "JSON array": (httpx.Response(200, json=[booking_item()]), CalcomUnavailable),
    "error status in 200": (httpx.Response(200, json={"status": "error", "data": []}), CalcomUnavailable),
}


@pytest.mark.parametrize("answer, expected", list(ERROR_CASES.values()), ids=list(ERROR_CASES))
async def test_client_maps_every_failure_to_our_error_types(client, calcom, answer, expected):
    calcom.get(URL).mock(side_effect=[answer])

    with pytest.raises(expected) as caught:
        await fetch(client)

    assert type(caught.value) is expected
    assert caught.value.calls == 1
    # no httpx exception (which holds the request and its Authorization header) rides along
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None or caught.value.__suppress_context__


@pytest.mark.parametrize("answer, expected", list(ERROR_CASES.values()), ids=list(ERROR_CASES))
async def test_client_never_reveals_the_api_key(client, calcom, caplog, answer, expected):
    calcom.get(URL).mock(side_effect=[answer])
    caplog.set_level(logging.DEBUG)

    with pytest.raises(expected) as caught:
        await fetch(client)

    secret = API_KEY.removeprefix("cal_live_")
    assert secret not in str(caught.value)
    assert secret not in repr(caught.value.args)
    assert all(secret not in json.dumps(record.__dict__, default=str) for record in caplog.records)


async def test_client_treats_5xx_as_unknown_not_rate_limited(client, calcom):
    calcom.get(URL).respond(503)

    with pytest.raises(CalcomUnavailable) as caught:
        await fetch(client)

    assert caught.value.rate_limited is False


async def test_client_logs_a_structured_event_per_fetch(client, calcom, caplog):
    calcom.get(URL).mock(side_effect=paged(300))
    caplog.set_level(logging.INFO, logger="service.clients.calcom")

    await fetch(client)

    events = [record for record in caplog.records if record.name == "service.clients.calcom"]
    assert [(e.event, e.calls, e.items) for e in events] == [("calcom_fetched", 2, 300)]


async def test_client_rejects_an_unusable_api_base(client):
    with respx.mock(assert_all_mocked=True):
        with pytest.raises(CalcomRequestRejected):
            await client.list_bookings(api_base="http://[::1", api_key=API_KEY, after_start=AFTER, before_end=BEFORE)


# --- observations_from_api ----------------------------------------------------------------------


def test_observation_carries_every_booking_field():
    (observation,) = observations_from_api(booking_item(3), FETCHED_AT)

    assert observation.uid == "q7Yh2kLmN3pR5sT0000003"
    assert observation.booking_id == 9003
    assert observation.start == datetime(2025, 10, 6, 11, 30, tzinfo=timezone.utc)
    assert observation.end == datetime(2025, 10, 6, 12, 0, tzinfo=timezone.utc)
    assert (observation.state, observation.calcom_status) == ("exists", "accepted")
    assert (observation.source, observation.event_at, observation.seat) == ("poll", FETCHED_AT, "")
    assert observation.event_type_id == 1201
    assert observation.hosts == ("anna@salon-mitte.example",)
    assert observation.attendees == ("max@kunde.example",)
    assert (observation.appointment_tag, observation.phase_tag) == ("apt-100", "A")


@pytest.mark.parametrize(
    "status, state, kept",
    [
        ("accepted", "exists", "accepted"),
        ("pending", "exists", "pending"),
        ("cancelled", "gone", "cancelled"),
        ("rejected", "gone", "rejected"),
        ("CANCELLED", "gone", "cancelled"),
    ],
)
def test_observation_state_follows_booking_status(status, state, kept):
    (observation,) = observations_from_api(booking_item(status=status), FETCHED_AT)

    assert (observation.state, observation.calcom_status) == (state, kept)


def test_observation_falls_back_to_deprecated_event_type_id():
    item = booking_item(eventTypeId=77)
    del item["eventType"]

    (observation,) = observations_from_api(item, FETCHED_AT)

    assert observation.event_type_id == 77


def test_observation_reads_numeric_appointment_id_as_string():
    (observation,) = observations_from_api(booking_item(metadata={"appointment_id": 762}), FETCHED_AT)

    assert observation.appointment_tag == "762"


def test_recurring_occurrence_is_its_own_booking():
    item = booking_item(4, uid="occ-2025-10-13", recurringBookingUid="series-9f8e7d")

    (observation,) = observations_from_api(item, FETCHED_AT)

    assert (observation.uid, observation.seat, observation.state) == ("occ-2025-10-13", "", "exists")


def test_seated_booking_yields_one_observation_per_seat():
    eva, jan = observations_from_api(seated_item(), FETCHED_AT)

    assert (eva.uid, eva.seat, eva.attendees) == (jan.uid, "3be561a9-31f1-4b8e-aefc-9d9a085f0dd1", ("eva@kunde.example",))
    assert (jan.seat, jan.attendees) == ("9a0f3c1e-5d7b-4e2a-8c6f-1b2d3e4f5a6b", ("jan@kunde.example",))
    assert eva.hosts == jan.hosts == ("anna@salon-mitte.example",)


def test_seat_metadata_overrides_booking_metadata():
    eva, jan = observations_from_api(seated_item(), FETCHED_AT)

    assert (eva.appointment_tag, eva.phase_tag) == ("762", "B")
    assert (jan.appointment_tag, jan.phase_tag) == ("apt-shared", None)


def test_cancelled_seated_booking_marks_every_seat_gone():
    observations = observations_from_api(seated_item(status="cancelled"), FETCHED_AT)

    assert [o.state for o in observations] == ["gone", "gone"]


def test_item_without_uid_is_skipped():
    item = booking_item()
    del item["uid"]

    assert observations_from_api(item, FETCHED_AT) == []


@pytest.mark.parametrize("start", [None, "", "tomorrow", 1759744800, "2025-13-40T25:00:00Z"])
def test_item_without_parseable_start_is_skipped(start):
    assert observations_from_api(booking_item(start=start), FETCHED_AT) == []


def test_odd_shapes_do_not_raise():
    item = booking_item(hosts=None, attendees="max@kunde.example", metadata=["apt-100"], eventType="x", id="abc", end=5)

    (observation,) = observations_from_api(item, FETCHED_AT)

    assert (observation.hosts, observation.attendees, observation.appointment_tag) == ((), (), None)
    assert (observation.booking_id, observation.event_type_id, observation.end) == (None, 1201, None)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
fields = st.sampled_from(["uid", "id", "start", "end", "status", "eventType", "eventTypeId", "hosts", "attendees", "metadata"])


@given(item=st.dictionaries(fields, json_values) | json_values)
def test_conversion_never_raises_on_any_json(item):
    observations = observations_from_api(item, FETCHED_AT)

    assert all(o.source == "poll" and o.event_at == FETCHED_AT for o in observations)


@given(overrides=st.dictionaries(fields.filter(lambda f: f not in ("uid", "start")), json_values))
def test_conversion_keeps_a_booking_whatever_its_other_fields(overrides):
    observations = observations_from_api(booking_item(**overrides), FETCHED_AT)

    assert len(observations) >= 1
