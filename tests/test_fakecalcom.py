"""The fake Cal.com: API v2 shapes, filters, rate limits, faults, control API, and CalcomClient against it."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from service.clients.calcom import CalcomClient
from service.core.api_bookings import observations_from_api
from service.errors import CalcomCredentialsBroken, CalcomRequestRejected, CalcomUnavailable
from service.testing.fakecalcom import FakeCalcom
from service.testing.fakecalcom import app as fakecalcom

KEY = "cal_live_salon_mitte_0001"
OTHER_KEY = "cal_live_salon_nord_0002"
BASE = "http://fake.calcom"
NOW = datetime(2025, 10, 6, 12, 0, tzinfo=timezone.utc)
V2 = {"cal-api-version": "2024-08-13"}


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake(clock) -> FakeCalcom:
    fake = FakeCalcom(clock=clock)
    fake.add_api_key(KEY)
    return fake


@pytest.fixture
async def http(fake):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app), base_url=BASE) as client:
        yield client


@pytest.fixture
def client(http) -> CalcomClient:
    return CalcomClient(http, timeout=2.0)


def at(hours: float) -> datetime:
    return NOW + timedelta(hours=hours)


async def get(http: httpx.AsyncClient, key: str | None = KEY, headers: dict[str, str] | None = V2, **params: Any):
    auth = {"Authorization": f"Bearer {key}"} if key else {}
    return await http.get("/v2/bookings", params=params, headers={**auth, **(headers or {})})


async def uids(http: httpx.AsyncClient, **params: Any) -> list[str]:
    response = await get(http, **params)
    assert response.status_code == 200, response.text
    return [item["uid"] for item in response.json()["data"]]


# --- the bookings endpoint ----------------------------------------------------------------------


async def test_fake_answers_in_the_real_response_shape(fake, http):
    fake.add_booking(KEY, uid="b1", start=at(1), end=at(1.5), attendees=["max@kunde.example"], metadata={"appointment_id": 7})

    body = (await get(http)).json()

    assert body["status"] == "success"
    assert body["pagination"] == {
        "totalItems": 1,
        "remainingItems": 0,
        "returnedItems": 1,
        "itemsPerPage": 100,
        "currentPage": 1,
        "totalPages": 1,
        "hasNextPage": False,
        "hasPreviousPage": False,
    }
    (item,) = body["data"]
    required = {
        "id",
        "uid",
        "title",
        "description",
        "hosts",
        "status",
        "start",
        "end",
        "duration",
        "eventTypeId",
        "eventType",
        "location",
        "absentHost",
        "createdAt",
        "updatedAt",
        "attendees",
        "bookingFieldsResponses",
    }
    assert required <= item.keys()
    assert (item["start"], item["end"], item["duration"], item["status"]) == (
        "2025-10-06T13:00:00.000Z",
        "2025-10-06T13:30:00.000Z",
        30,
        "accepted",
    )
    assert item["attendees"][0]["email"] == "max@kunde.example"
    assert item["metadata"] == {"appointment_id": 7}


async def test_fake_rejects_an_unknown_api_key_with_calcoms_envelope(http):
    response = await get(http, key="cal_live_unknown")

    assert response.status_code == 401
    body = response.json()
    assert body["status"] == "error" and body["path"].startswith("/v2/bookings")
    assert body["error"]["code"] == "UnauthorizedException"
    assert {"timestamp", "error"} <= body.keys() and {"message", "details"} <= body["error"].keys()


async def test_fake_rejects_a_request_without_authorization(http):
    assert (await get(http, key=None)).status_code == 401


async def test_fake_without_version_header_answers_in_the_old_shape(fake, http):
    fake.add_booking(KEY, uid="b1", start=at(1))

    response = await get(http, headers={})

    assert response.status_code == 200
    data = response.json()["data"]
    assert isinstance(data, dict) and [b["uid"] for b in data["bookings"]] == ["b1"]
    assert "startTime" in data["bookings"][0]


async def test_fake_filters_after_start_on_start_and_before_end_on_end(fake, http):
    fake.add_booking(KEY, uid="inside", start=at(1), end=at(2))
    fake.add_booking(KEY, uid="starts-too-early", start=at(-0.5), end=at(1))
    fake.add_booking(KEY, uid="ends-too-late", start=at(2.5), end=at(4))
    fake.add_booking(KEY, uid="on-both-edges", start=at(0), end=at(3))

    got = await uids(http, afterStart="2025-10-06T12:00:00.000Z", beforeEnd="2025-10-06T15:00:00Z")

    assert sorted(got) == ["inside", "on-both-edges"]


@pytest.fixture
def statuses(fake):
    fake.add_booking(KEY, uid="ended", start=at(-3), end=at(-2))
    fake.add_booking(KEY, uid="running", start=at(-0.5), end=at(0.5))
    fake.add_booking(KEY, uid="future", start=at(2), end=at(3))
    fake.add_booking(KEY, uid="pending", start=at(4), end=at(5), status="pending")
    fake.add_booking(KEY, uid="cancelled", start=at(6), end=at(7), status="cancelled")
    fake.add_booking(KEY, uid="rejected-past", start=at(-5), end=at(-4), status="rejected")
    fake.add_booking(KEY, uid="series-pending", start=at(8), end=at(9), status="pending", recurring_booking_uid="s1")


@pytest.mark.parametrize(
    "status, expected",
    [
        ("upcoming", {"running", "future", "pending"}),
        ("past", {"ended"}),
        ("unconfirmed", {"pending", "series-pending"}),
        ("cancelled", {"cancelled", "rejected-past"}),
        ("recurring", {"series-pending"}),
        ("upcoming,unconfirmed,past,cancelled", {"ended", "running", "future", "pending", "cancelled", "rejected-past", "series-pending"}),
        (None, {"ended", "running", "future", "pending", "cancelled", "rejected-past", "series-pending"}),
    ],
)
async def test_fake_status_filters_follow_calcom_semantics(statuses, http, status, expected):
    params = {"status": status} if status else {}

    assert set(await uids(http, **params)) == expected


async def test_fake_status_moves_with_its_clock(fake, http, clock):
    fake.add_booking(KEY, uid="soon", start=at(1), end=at(2))
    assert await uids(http, status="past") == []

    clock.advance(3 * 3600)

    assert await uids(http, status="past") == ["soon"]


async def test_fake_sorts_by_start_ascending(fake, http):
    for uid, hours in (("c", 3), ("a", 1), ("b", 2)):
        fake.add_booking(KEY, uid=uid, start=at(hours))

    assert await uids(http) == ["a", "b", "c"]
    assert await uids(http, sortStart="desc") == ["c", "b", "a"]


async def test_fake_sorts_a_single_past_filter_newest_first(fake, http):
    for uid, hours in (("older", -5), ("newer", -2)):
        fake.add_booking(KEY, uid=uid, start=at(hours))

    assert await uids(http, status="past") == ["newer", "older"]


async def test_fake_pages_with_take_and_skip(fake, http):
    for n in range(7):
        fake.add_booking(KEY, uid=f"b{n}", start=at(n))

    body = (await get(http, take=3, skip=3)).json()

    assert [item["uid"] for item in body["data"]] == ["b3", "b4", "b5"]
    assert body["pagination"] == {
        "totalItems": 7,
        "remainingItems": 1,
        "returnedItems": 3,
        "itemsPerPage": 3,
        "currentPage": 2,
        "totalPages": 3,
        "hasNextPage": True,
        "hasPreviousPage": True,
    }


@pytest.mark.parametrize(
    "params",
    [
        {"take": "251"},
        {"take": "0"},
        {"take": "ten"},
        {"skip": "-1"},
        {"status": "upcoming,soon"},
        {"afterStart": "yesterday"},
        {"beforeEnd": "2025-13-01"},
        {"sortStart": "up"},
    ],
)
async def test_fake_validates_query_like_calcom(http, params):
    response = await get(http, **params)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BadRequestException"


async def test_fake_only_shows_a_keys_own_bookings(fake, http):
    fake.add_booking(KEY, uid="mine", start=at(1))
    fake.add_booking(OTHER_KEY, uid="theirs", start=at(1))

    assert await uids(http) == ["mine"]


# --- bookings ------------------------------------------------------------------------------------


def test_fake_seated_booking_gives_each_attendee_a_seat(fake):
    item = fake.add_booking(KEY, start=at(1), seats=["eva@kunde.example", {"email": "jan@kunde.example", "metadata": {"phase": "B"}}])

    assert [a["email"] for a in item["attendees"]] == ["eva@kunde.example", "jan@kunde.example"]
    assert len({a["seatUid"] for a in item["attendees"]}) == 2
    assert item["attendees"][1]["metadata"] == {"phase": "B"}
    assert "bookingFieldsResponses" not in item


def test_fake_adds_a_seat_to_a_seated_booking(fake):
    item = fake.add_booking(KEY, uid="group", start=at(1), seats=["eva@kunde.example"])

    seat = fake.add_seat("group", "ida@kunde.example", metadata={"appointment_id": "a-9"})

    assert seat["seatUid"] not in {a["seatUid"] for a in item["attendees"]}
    assert [a["email"] for a in fake.book.get("group")["attendees"]] == ["eva@kunde.example", "ida@kunde.example"]


def test_fake_cancels_a_booking(fake):
    fake.add_booking(KEY, uid="b1", start=at(1))

    assert fake.cancel_booking("b1", reason="customer called")["status"] == "cancelled"
    assert fake.cancel_booking("b1", status="rejected")["status"] == "rejected"


def test_fake_reschedules_like_calcom(fake):
    fake.add_booking(KEY, uid="old", start=at(1), end=at(1.5), attendees=["max@kunde.example"], metadata={"appointment_id": "a1"})

    new = fake.reschedule_booking("old", start=at(5))

    old = fake.book.get("old")
    assert (old["status"], old["rescheduledToUid"]) == ("cancelled", new["uid"])
    assert (new["rescheduledFromUid"], new["start"], new["end"]) == ("old", "2025-10-06T17:00:00.000Z", "2025-10-06T17:30:00.000Z")
    assert new["metadata"] == {"appointment_id": "a1"} and new["attendees"][0]["email"] == "max@kunde.example"


@pytest.mark.parametrize(
    "fields",
    [
        {"start": "soon"},
        {"start": at(2), "end": at(1)},
        {"start": at(1), "status": "maybe"},
        {"start": at(1), "attendees": ["a@x.example"], "seats": ["b@x.example"]},
        {"start": at(1), "hosts": "a@x.example"},
    ],
)
def test_fake_refuses_impossible_bookings(fake, fields):
    with pytest.raises(ValueError):
        fake.add_booking(KEY, **fields)


def test_fake_refuses_a_duplicate_uid(fake):
    fake.add_booking(KEY, uid="b1", start=at(1))

    with pytest.raises(ValueError):
        fake.add_booking(KEY, uid="b1", start=at(2))


# --- rate limits ---------------------------------------------------------------------------------


async def test_fake_sends_rate_limit_headers_on_every_answer(fake, http, clock):
    first = await get(http)
    clock.advance(10)
    second = await get(http, take="999")  # a 400 still counts and still carries the headers

    assert (first.headers["X-RateLimit-Limit-Default"], first.headers["X-RateLimit-Remaining-Default"]) == ("120", "119")
    assert first.headers["X-RateLimit-Reset-Default"] == "60"
    assert (second.status_code, second.headers["X-RateLimit-Remaining-Default"]) == (400, "118")
    assert second.headers["X-RateLimit-Reset-Default"] == "50"


async def test_fake_blocks_a_key_for_a_minute_after_the_limit(http, fake, clock):
    for _ in range(120):
        assert (await get(http)).status_code == 200

    throttled = await get(http)

    assert throttled.status_code == 429
    assert "retry-after" not in throttled.headers
    assert throttled.headers["X-RateLimit-Remaining-Default"] == "0"
    assert throttled.headers["X-RateLimit-Reset-Default"] == "60"
    assert throttled.json()["error"]["code"] == "ThrottlerException"
    assert throttled.json()["error"]["message"] == "CustomThrottlerGuard - Too many requests. Please try again later."
    clock.advance(59)
    assert (await get(http)).status_code == 429  # the window has passed, the block has not
    clock.advance(1)
    recovered = await get(http)
    assert (recovered.status_code, recovered.headers["X-RateLimit-Remaining-Default"]) == (200, "119")


async def test_fake_counts_the_window_from_the_first_request(fake, http, clock):
    fake.limit = 3
    for _ in range(3):
        await get(http)
    clock.advance(60)

    response = await get(http)

    assert (response.status_code, response.headers["X-RateLimit-Remaining-Default"]) == (200, "2")


async def test_fake_limits_each_key_separately(fake, http):
    fake.limit = 1
    fake.add_api_key(OTHER_KEY)

    assert [(await get(http, key=k)).status_code for k in (KEY, KEY, OTHER_KEY)] == [200, 429, 200]


# --- faults, counters, reset --------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 429, 500, 502, 503])
async def test_fake_fails_the_next_requests_on_demand(fake, http, status):
    fake.fail_next(2, status)

    answers = [(await get(http)).status_code for _ in range(3)]

    assert answers == [status, status, 200]


async def test_fake_injected_429_looks_like_calcoms(fake, http):
    fake.fail_next(1, 429)

    response = await get(http)

    assert response.json()["error"]["code"] == "ThrottlerException"
    assert response.headers["X-RateLimit-Remaining-Default"] == "0" and "retry-after" not in response.headers


def test_fake_refuses_a_fault_it_cannot_play(fake):
    with pytest.raises(ValueError):
        fake.fail_next(1, 418)


async def test_fake_is_down_until_told_otherwise(fake, http):
    fake.set_down(True)
    assert [(await get(http)).status_code for _ in range(2)] == [503, 503]

    fake.set_down(False)

    assert (await get(http)).status_code == 200


async def test_fake_delays_its_answers():
    waited: list[float] = []

    async def sleep(seconds: float) -> None:
        waited.append(seconds)

    fake = FakeCalcom(clock=Clock(), sleep=sleep)
    fake.add_api_key(KEY)
    fake.set_delay(12.5)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app), base_url=BASE) as http:
        assert (await get(http)).status_code == 200

    assert waited == [12.5]


async def test_fake_counts_calls_and_logs_queries(fake, http):
    fake.add_api_key(OTHER_KEY)
    await get(http, take="5")
    await get(http, key=OTHER_KEY)
    await get(http, key="cal_unknown")

    assert fake.calls == 3
    assert fake.calls_by_key == {KEY: 1, OTHER_KEY: 1, "cal_unknown": 1}
    assert fake.requests[0] == {"api_key": KEY, "api_version": "2024-08-13", "params": {"take": "5"}}


async def test_fake_reset_forgets_everything(fake, http):
    fake.add_booking(KEY, start=at(1))
    fake.fail_next(1, 500)
    fake.set_down(True)
    await get(http)

    fake.reset()

    assert (fake.calls, list(fake.requests), fake.down) == (0, [], False)
    assert (await get(http)).status_code == 401  # the key is gone too


# --- control API ---------------------------------------------------------------------------------


async def test_control_api_adds_and_changes_bookings(http):
    added = await http.post(
        "/_fake/bookings",
        json={
            "api_key": OTHER_KEY,
            "uid": "b1",
            "start": "2025-10-06T14:00:00Z",
            "end": "2025-10-06T14:45:00Z",
            "attendees": ["max@kunde.example"],
            "metadata": {"appointment_id": 1},
            "status": "pending",
        },
    )
    moved = await http.post("/_fake/bookings/b1/reschedule", json={"start": "2025-10-06T16:00:00Z", "new_uid": "b2"})
    cancelled = await http.post("/_fake/bookings/b2/cancel", json={"reason": "ill"})

    assert (added.status_code, added.json()["duration"], moved.json()["uid"]) == (201, 45, "b2")
    assert cancelled.json()["status"] == "cancelled"
    assert await uids(http, key=OTHER_KEY, status="cancelled") == ["b2", "b1"]  # newest first


async def test_control_api_adds_a_seat(http):
    await http.post("/_fake/bookings", json={"api_key": KEY, "uid": "g", "start": "2025-10-06T14:00:00Z", "seats": ["eva@x.example"]})

    seat = await http.post("/_fake/bookings/g/seats", json={"email": "ida@x.example", "seat_uid": "seat-ida"})

    assert (seat.status_code, seat.json()["seatUid"]) == (201, "seat-ida")


async def test_control_api_drives_faults_and_reads_counters(http, fake):
    assert (await http.post("/_fake/fail-next", json={"n": 1, "status": 502})).status_code == 200
    assert (await get(http)).status_code == 502
    await http.post("/_fake/down", json={"down": True})
    assert (await get(http)).status_code == 503
    await http.post("/_fake/down", json={"down": False})
    await http.post("/_fake/delay", json={"seconds": 0})

    calls = (await http.get("/_fake/calls")).json()
    logged = (await http.get("/_fake/requests")).json()

    assert calls == {"total": 2, "by_key": {KEY: 2}, "creates": 0, "creates_by_key": {}, "written": 0, "held": 0}
    assert [entry["api_key"] for entry in logged] == [KEY, KEY]


async def test_control_api_sets_clock_rate_limit_keys_and_reset(http, fake):
    await http.post("/_fake/api-keys", json={"api_key": OTHER_KEY})
    await http.post("/_fake/rate-limit", json={"limit": 1, "block": 5})
    await http.post("/_fake/bookings", json={"api_key": OTHER_KEY, "uid": "b", "start": "2025-10-06T13:00:00Z"})
    await http.post("/_fake/clock", json={"now": "2025-10-06T15:00:00Z"})

    assert await uids(http, key=OTHER_KEY, status="past") == ["b"]
    assert (await get(http, key=OTHER_KEY)).status_code == 429
    await http.post("/_fake/reset")
    assert (fake.calls, fake.limit, fake.block) == (0, 1, 5.0)


@pytest.mark.parametrize(
    "path, body, status",
    [
        ("/_fake/bookings", {"api_key": KEY}, 400),
        ("/_fake/bookings", {"start": "2025-10-06T13:00:00Z"}, 400),
        ("/_fake/bookings/nope/cancel", {}, 404),
        ("/_fake/fail-next", {"n": 1, "status": 418}, 400),
        ("/_fake/fail-next", {"n": "one", "status": 500}, 400),
        ("/_fake/down", {"down": "yes"}, 400),
        ("/_fake/clock", {"now": "noon"}, 400),
        ("/_fake/bookings", [1, 2], 400),
    ],
)
async def test_control_api_refuses_bad_input(http, path, body, status):
    assert (await http.post(path, json=body)).status_code == status


async def test_control_api_refuses_non_json(http):
    assert (await http.post("/_fake/down", content=b"{down")).status_code == 400


def test_main_serves_the_fake_with_uvicorn(monkeypatch):
    served: dict[str, Any] = {}
    monkeypatch.setattr("uvicorn.run", lambda app, **kwargs: served.update(app=app, **kwargs))

    fakecalcom.main(["--port", "9876", "--api-key", KEY, "--limit", "7"])

    assert (served["host"], served["port"]) == ("127.0.0.1", 9876)
    assert served["app"].routes[0].path == "/v2/bookings"


# --- CalcomClient against the fake ----------------------------------------------------------------


async def fetch(client: CalcomClient, key: str = KEY):
    return await client.list_bookings(api_base=BASE, api_key=key, after_start=at(-24), before_end=at(48))


async def test_client_pages_through_600_bookings_in_3_calls(client, fake):
    for n in range(600):
        fake.add_booking(KEY, uid=f"b{n:03d}", start=at(n / 60), end=at(n / 60 + 0.25))

    result = await fetch(client)

    assert result.calls == 3 and fake.calls == 3
    assert sorted(item["uid"] for item in result.items) == [f"b{n:03d}" for n in range(600)]
    assert [r["params"]["skip"] for r in fake.requests] == ["0", "250", "500"]
    assert all(r["params"]["take"] == "250" and r["api_version"] == "2024-08-13" for r in fake.requests)
    assert result.remaining == 117


async def test_client_hits_429_after_the_limit(client, fake):
    fake.limit = 3
    for n in range(300):
        fake.add_booking(KEY, start=at(n / 60))

    first = await fetch(client)
    with pytest.raises(CalcomUnavailable) as caught:
        await fetch(client)  # page 1 is the 3rd request of the window, page 2 the 4th

    assert (first.calls, first.remaining) == (2, 1)
    assert caught.value.rate_limited and caught.value.calls == 2 and fake.calls == 4
    assert caught.value.retry_at is not None and caught.value.retry_at >= time.time() + 59  # blocked 60 s


async def test_client_finds_started_ended_and_pending_bookings(client, fake, statuses):
    result = await fetch(client)

    found = {item["uid"]: item["status"] for item in result.items}
    assert {"ended", "running", "pending", "series-pending", "cancelled"} <= found.keys()
    assert found["pending"] == "pending"
    gone = {o.uid for item in result.items for o in observations_from_api(item, NOW) if o.state == "gone"}
    assert gone == {"cancelled", "rejected-past"}


async def test_client_turns_a_seated_fake_booking_into_seat_observations(client, fake):
    fake.add_booking(
        KEY,
        uid="group",
        start=at(1),
        metadata={"appointment_id": 762},
        seats=[{"email": "eva@x.example", "seatUid": "s-eva", "metadata": {"phase": "B"}}, "jan@x.example"],
    )

    (item,) = (await fetch(client)).items
    eva, jan = observations_from_api(item, NOW)

    assert (eva.seat, eva.attendees, eva.appointment_tag, eva.phase_tag) == ("s-eva", ("eva@x.example",), "762", "B")
    assert (jan.attendees, jan.appointment_tag, jan.phase_tag) == (("jan@x.example",), "762", None)


@pytest.mark.parametrize(
    "arrange, expected",
    [
        (lambda fake: fake.fail_next(1, 500), CalcomUnavailable),
        (lambda fake: fake.fail_next(1, 502), CalcomUnavailable),
        (lambda fake: fake.fail_next(1, 400), CalcomRequestRejected),
        (lambda fake: fake.set_down(True), CalcomUnavailable),
        (lambda fake: fake.reset(), CalcomCredentialsBroken),
    ],
    ids=["500", "502", "400", "down", "unknown key"],
)
async def test_client_maps_fake_failures(client, fake, arrange, expected):
    arrange(fake)

    with pytest.raises(expected):
        await fetch(client)
