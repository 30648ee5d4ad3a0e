"""The fake Cal.com's create faults, each a way Cal.com's own code fails a create, and their control API."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
import respx

from service.testing.fakecalcom import FakeCalcom

from .helpers import FakeClock

KEY = "cal_live_salon_mitte_0001"
SECRET = "fake-subscriber-secret-51e2"
HOOK = "https://verifier.example/webhooks/calcom/salon-1"
NOW = datetime(2025, 10, 6, 12, 0, tzinfo=timezone.utc)
HEADERS = {"Authorization": f"Bearer {KEY}", "cal-api-version": "2024-08-13"}
BODY = {
    "start": "2025-10-07T12:00:00Z",
    "eventTypeId": 1001,
    "metadata": {"appointment_id": "a-1"},
    "attendee": {"name": "Max Muster", "email": "max@kunde.example", "timeZone": "Europe/Berlin"},
}


class Subscriber:
    """A webhook receiver that records what arrives."""

    def __init__(self) -> None:
        self.received: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.received.append(request)
        return httpx.Response(200)


class Sleeps:
    """The fake's injected sleep: records each wait and returns at once, or never when `endless`."""

    def __init__(self) -> None:
        self.waited: list[float] = []
        self.endless = False

    async def __call__(self, seconds: float) -> None:
        self.waited.append(seconds)
        if self.endless:
            await asyncio.Event().wait()


@pytest.fixture
def subscriber() -> Subscriber:
    return Subscriber()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def fake(subscriber, sleeps):
    async with httpx.AsyncClient(transport=httpx.MockTransport(subscriber)) as hooks:
        calcom = FakeCalcom(clock=FakeClock(NOW), webhook_client=hooks, sleep=sleeps)
        calcom.add_api_key(KEY)
        calcom.add_webhook(KEY, HOOK, SECRET)
        yield calcom


@pytest.fixture
async def http(fake):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app), base_url="http://fake.calcom") as client:
        yield client


async def create(http: httpx.AsyncClient, **fields: Any) -> httpx.Response:
    return await http.post("/v2/bookings", json={**BODY, **fields}, headers=HEADERS)


async def booked(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await http.get("/v2/bookings", headers=HEADERS)
    assert response.status_code == 200
    return response.json()["data"]


# --- each fault -----------------------------------------------------------------------------------


async def test_error_after_write_500_writes_and_announces_then_hides_the_uid_in_a_500(fake, http, subscriber):
    fake.fail_next_create("error_after_write_500")

    response = await create(http)

    assert response.status_code == 500
    assert response.json()["error"] == {"code": "INTERNAL_SERVER_ERROR", "message": "Internal server error."}
    (item,) = await booked(http)
    assert [json.loads(r.content)["payload"]["uid"] for r in subscriber.received] == [item["uid"]]
    assert item["uid"] not in response.text


async def test_error_after_write_400_writes_and_announces_then_says_missing_payment_credentials(fake, http, subscriber):
    fake.fail_next_create("error_after_write_400")

    response = await create(http)

    assert (response.status_code, response.json()["error"]["message"]) == (400, "Missing payment credentials")
    assert len(await booked(http)) == 1 and len(subscriber.received) == 1


async def test_slow_answer_holds_the_answer_after_the_row_and_webhook_until_released(fake, http, subscriber, sleeps):
    fake.fail_next_create("slow_answer")
    sleeps.endless = True  # only the release may end this hold

    answer = asyncio.create_task(create(http))
    await fake.wait_until_held()

    assert not answer.done() and fake.held == 1
    assert len(await booked(http)) == 1 and len(subscriber.received) == 1
    fake.release_answers()
    response = await answer
    assert response.status_code == 201 and response.json()["data"]["uid"] == (await booked(http))[0]["uid"]
    assert fake.held == 0


async def test_slow_answer_answers_by_itself_after_its_delay(fake, http, sleeps):
    fake.fail_next_create("slow_answer", delay=45)

    response = await create(http)

    assert response.status_code == 201 and sleeps.waited == [45]


async def test_a_client_giving_up_on_a_slow_answer_leaves_the_booking_made(fake, http, subscriber, sleeps):
    fake.fail_next_create("slow_answer")
    sleeps.endless = True
    answer = asyncio.create_task(create(http))
    await fake.wait_until_held()

    answer.cancel()  # what a client timeout does to the request
    with pytest.raises(asyncio.CancelledError):
        await answer

    assert fake.held == 0 and len(await booked(http)) == 1 and len(subscriber.received) == 1


async def test_conflict_refuses_like_a_taken_slot_without_row_or_webhook(fake, http, subscriber):
    fake.fail_next_create("conflict")

    response = await create(http)

    assert response.status_code == 400
    assert response.json()["error"]["message"] == "User either already has booking at this time or is not available"
    assert (await booked(http), subscriber.received, fake.written, fake.creates) == ([], [], 0, 1)


async def test_webhook_failing_still_answers_201_but_nothing_arrives(fake, http, subscriber):
    fake.fail_next_create("webhook_failing")

    response = await create(http)

    assert response.status_code == 201 and subscriber.received == []
    assert [(d["outcome"], d["url"], d["uid"]) for d in fake.deliveries] == [("failed", HOOK, response.json()["data"]["uid"])]


async def test_webhook_skipped_still_answers_201_and_sends_nothing(fake, http, subscriber):
    fake.fail_next_create("webhook_skipped")

    response = await create(http)

    assert response.status_code == 201 and subscriber.received == []
    assert len(await booked(http)) == 1 and [d["outcome"] for d in fake.deliveries] == ["skipped"]


async def test_rate_limited_429_refuses_before_anything_is_written(fake, http, subscriber):
    fake.fail_next_create("rate_limited_429")

    response = await create(http)

    assert response.status_code == 429 and "retry-after" not in response.headers
    assert response.json()["error"]["code"] == "ThrottlerException"
    assert (await booked(http), subscriber.received) == ([], [])


@pytest.mark.parametrize("status", [503, 502, 500])
async def test_unavailable_5xx_refuses_before_anything_is_written(fake, http, subscriber, status):
    fake.fail_next_create("unavailable_5xx", status=status)

    response = await create(http)

    assert response.status_code == status
    assert (await booked(http), subscriber.received) == ([], [])


async def test_create_faults_play_on_the_next_n_creates_only(fake, http):
    fake.fail_next_create("conflict", n=2)

    answers = [(await create(http)).status_code for _ in range(3)]

    assert answers == [400, 400, 201]


async def test_create_faults_and_read_faults_keep_to_their_own_requests(fake, http):
    fake.fail_next_create("unavailable_5xx")
    fake.fail_next(1, 502)

    read = await http.get("/v2/bookings", headers=HEADERS)
    created = await create(http)
    read_again = await http.get("/v2/bookings", headers=HEADERS)
    created_again = await create(http, start="2025-10-07T13:00:00Z")

    assert [read.status_code, created.status_code, read_again.status_code, created_again.status_code] == [502, 503, 200, 201]


async def test_a_fake_that_is_down_refuses_creates_too(fake, http):
    fake.set_down(True)

    assert (await create(http)).status_code == 503 and fake.written == 0


@pytest.mark.parametrize(
    "arguments",
    [{"mode": "timeout"}, {"mode": "slow_answer", "delay": -1}, {"mode": "unavailable_5xx", "status": 418}, {"mode": "conflict", "n": -1}],
)
def test_the_fake_refuses_a_create_fault_it_cannot_play(fake, arguments):
    mode = arguments.pop("mode")
    with pytest.raises(ValueError):
        fake.fail_next_create(mode, **arguments)


async def test_reset_forgets_event_types_subscribers_create_faults_and_counters(fake, http, subscriber):
    fake.set_event_type(1001, length=90)
    fake.fail_next_create("conflict")
    await create(http)

    fake.reset()
    fake.add_api_key(KEY)
    item = (await create(http)).json()["data"]

    assert (item["duration"], subscriber.received, fake.creates, fake.written, list(fake.deliveries)) == (30, [], 1, 1, [])


# --- control API ----------------------------------------------------------------------------------


async def test_control_api_configures_event_types_and_subscribers(http, fake, subscriber):
    event_type = await http.post("/_fake/event-types", json={"id": 6006, "seats": 2, "length": 45, "hosts": ["anna@salon.example"]})
    hooked = await http.post("/_fake/webhooks", json={"api_key": KEY, "url": "https://second.example/hook", "secret": "s2"})

    item = (await create(http, eventTypeId=6006)).json()["data"]

    assert event_type.status_code == 200 and event_type.json()["seats"] == 2 and hooked.status_code == 201
    assert (item["duration"], item["hosts"][0]["email"], "seatUid" in item) == (45, "anna@salon.example", True)
    assert sorted(str(r.url) for r in subscriber.received) == ["https://second.example/hook", HOOK]
    deliveries = (await http.get("/_fake/deliveries")).json()
    assert [d["outcome"] for d in deliveries] == ["delivered", "delivered"] and deliveries[0]["seat"] == item["seatUid"]


async def test_control_api_plays_create_faults_releases_and_counts(http, fake, sleeps):
    assert (await http.post("/_fake/fail-next-create", json={"mode": "slow_answer", "delay": 120})).status_code == 200
    sleeps.endless = True
    answer = asyncio.create_task(create(http))
    await fake.wait_until_held()

    counted = (await http.get("/_fake/calls")).json()
    released = (await http.post("/_fake/release")).json()

    assert (await answer).status_code == 201
    assert released == {"released": 1}
    assert (counted["creates"], counted["creates_by_key"], counted["written"], counted["held"]) == (1, {KEY: 1}, 1, 1)
    (logged,) = (await http.get("/_fake/creates")).json()
    assert logged["api_key"] == KEY and json.loads(logged["body"]) == BODY


@pytest.mark.parametrize(
    "path, body",
    [
        ("/_fake/fail-next-create", {"mode": "sometimes"}),
        ("/_fake/fail-next-create", {"mode": "conflict", "n": "two"}),
        ("/_fake/event-types", {"seats": 2}),
        ("/_fake/event-types", {"id": 1, "seats": 0}),
        ("/_fake/event-types", {"id": 1, "seats": 2, "recurring": 3}),
        ("/_fake/event-types", {"id": 1, "hosts": "anna@salon.example"}),
        ("/_fake/webhooks", {"api_key": KEY}),
        ("/_fake/webhooks", {"api_key": KEY, "url": "ftp://x.example"}),
        ("/_fake/webhooks", {"api_key": KEY, "url": HOOK, "secret": 7}),
    ],
)
async def test_control_api_refuses_bad_create_settings(http, path, body):
    assert (await http.post(path, json=body)).status_code == 400


async def test_without_a_webhook_client_the_fake_delivers_with_its_own(fake, http):
    fake.webhook_client = None

    with respx.mock(assert_all_called=True) as subscriber_site:
        route = subscriber_site.post(HOOK).respond(204)
        response = await create(http)

    assert response.status_code == 201 and route.call_count == 1
    assert fake.deliveries[0]["outcome"] == "delivered"


async def test_a_booking_time_is_the_fakes_clock_time(fake, http):
    fake.set_now(NOW + timedelta(hours=1))

    item = (await create(http)).json()["data"]

    assert item["createdAt"] == "2025-10-06T13:00:00.000Z"
