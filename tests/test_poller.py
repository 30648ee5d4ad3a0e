"""The fallback poller end to end against the fake Cal.com, driven tick by tick with the injected clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from service.clients.calcom import CalcomClient
from service.core.checks import query_windows
from service.settings import Settings
from service.store.connector import Database, sql
from service.store.queries import checks as check_store
from service.testing.fakecalcom import FakeCalcom
from service.workers.poller import Poller

from .helpers import API_KEY, AUTH, CUSTOMER, FakeClock, booking_event, create_account, failure, phase, post_webhook, record

CALCOM = "http://calcom.test"
CHECKS = [2, 12, 42, 162, 762]  # seconds after recording: settle 2, then 10, 30, 120, 600
T = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


def at(minutes: float) -> datetime:
    return T + timedelta(minutes=minutes)


def booked(fake: FakeCalcom, **fields: object) -> dict:
    """A booking in the fake Cal.com for the customer the test phases name."""
    return fake.add_booking(API_KEY, **{"attendees": [CUSTOMER], **fields})  # type: ignore[arg-type]


@pytest.fixture
def fake(clock: FakeClock) -> FakeCalcom:
    calcom = FakeCalcom(clock=clock)
    calcom.add_api_key(API_KEY)
    return calcom


@pytest.fixture
async def calcom_http(fake: FakeCalcom) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app)) as http:
        yield http


def make_poller(db: Database, settings: Settings, http: httpx.AsyncClient, clock: FakeClock, owner: str = "p1") -> Poller:
    return Poller(db, settings, CalcomClient(http, clock=clock), clock=clock, owner=owner)


@pytest.fixture
def poller(db: Database, settings: Settings, calcom_http: httpx.AsyncClient, clock: FakeClock) -> Poller:
    return make_poller(db, settings, calcom_http, clock)


@pytest.fixture
async def account(client: httpx.AsyncClient) -> None:
    await create_account(client, calcom_api_base=CALCOM)


async def show(client: httpx.AsyncClient, verification_id: str) -> dict:
    return (await client.get(f"/api/verifications/{verification_id}", headers=AUTH)).json()


async def run_schedule(poller: Poller, clock: FakeClock, start: datetime, *, until: int = CHECKS[-1]) -> list:
    """Tick at each scheduled check (and at every backoff retry in between) up to `until` seconds."""
    reports = []
    moment = start
    while moment <= start + timedelta(seconds=until):
        clock.now = moment
        reports.append(await poller.tick(moment))
        moment += timedelta(seconds=1)
    return reports


async def test_nothing_is_polled_before_the_settle_window(client, account, poller: Poller, fake: FakeCalcom, clock: FakeClock) -> None:
    booked(fake, uid="bk", start=at(0), end=at(30))
    await record(client, failure())
    clock.advance(1.9)
    report = await poller.tick(clock())
    assert report.due == 0 and fake.calls == 0


async def test_poll_only_verification(client, account, poller: Poller, fake: FakeCalcom, clock: FakeClock) -> None:
    booked(fake, uid="bk", id=13068988, start=at(0), end=at(30))
    pending = (await record(client, failure())).json()
    clock.advance(2)
    report = await poller.tick(clock())
    assert (report.due, report.calls, report.verdicts) == (1, 1, 1)
    body = await show(client, pending["id"])
    assert body["status"] == "verified" and body["resolved_via"] == "poll" and body["checks"] == 1
    assert body["phases"][0]["booking"] == {
        "id": 13068988,
        "uid": "bk",
        "start": "2026-12-01T09:00:00Z",
        "source": "poll",
        "identity": "person",
    }


async def test_query_uses_the_real_contract_and_the_tolerance_window(
    client, account, poller: Poller, fake: FakeCalcom, clock: FakeClock
) -> None:
    await record(client, failure(phases=[phase("A", at(0), 30), phase("B", at(60), 30)]))
    clock.advance(2)
    await poller.tick(clock())
    (request,) = fake.requests
    assert request["api_version"] == "2024-08-13" and request["api_key"] == API_KEY
    params = request["params"]
    assert params["afterStart"].startswith("2026-12-01T08:55:00") and params["afterStart"].endswith("Z")
    assert params["beforeEnd"].startswith("2026-12-01T10:35:00")
    assert params["status"] == "upcoming,unconfirmed,past,cancelled"
    assert params["take"] == "250" and params["skip"] == "0"


async def test_phase_without_end_is_searched_for_twelve_hours(client, account, poller: Poller, fake: FakeCalcom, clock: FakeClock) -> None:
    await record(client, failure(phases=[{"key": "A", "start": at(0).isoformat()}]))
    clock.advance(2)
    await poller.tick(clock())
    assert fake.requests[0]["params"]["beforeEnd"].startswith("2026-12-01T21:05:00")


async def test_real_failure_becomes_no_booking_found_at_the_last_check(
    client, account, poller: Poller, fake: FakeCalcom, clock: FakeClock
) -> None:
    start = clock()
    pending = (await record(client, failure())).json()
    reports = await run_schedule(poller, clock, start, until=CHECKS[-1] - 1)
    assert sum(r.calls for r in reports) == 4
    still = await show(client, pending["id"])
    assert still["status"] == "pending" and still["checks"] == 4
    assert still["next_check_at"] == (start + timedelta(seconds=CHECKS[-1])).isoformat().replace("+00:00", "Z")
    clock.now = start + timedelta(seconds=CHECKS[-1])
    await poller.tick(clock())
    body = await show(client, pending["id"])
    assert (body["status"], body["review_reason"], body["resolved_via"]) == ("manual_review", "no_booking_found", "system")
    assert body["checks"] == 5 and fake.calls == 5
    assert body["missing_phases"] == ["A"] and body["phases"][0]["status"] == "missing"


async def test_partial_composite_becomes_partial_match_naming_the_missing_phases(
    client, account, poller, fake: FakeCalcom, clock: FakeClock
) -> None:
    start = clock()
    booked(fake, uid="a", start=at(0), end=at(30))
    booked(fake, uid="c", start=at(75), end=at(105))
    phases = [phase("A", at(0)), phase("B", at(30), 45), phase("C", at(75)), phase("D", at(105))]
    pending = (await record(client, failure(phases=phases, service="Dauerwelle"))).json()
    await run_schedule(poller, clock, start)
    body = await show(client, pending["id"])
    assert (body["status"], body["review_reason"]) == ("manual_review", "partial_match")
    assert body["missing_phases"] == ["B", "D"]
    assert [p["status"] for p in body["phases"]] == ["matched", "missing", "matched", "missing"]
    # The matched bookings stay claimed: another appointment cannot take them.
    other = (await record(client, failure(appointment_id="other", phases=[phase("A", at(0))]))).json()
    await run_schedule(poller, clock, clock(), until=CHECKS[-1])
    assert (await show(client, other["id"]))["review_reason"] == "no_booking_found"


async def test_indistinguishable_candidates_become_ambiguous_match(client, account, poller, fake: FakeCalcom, clock: FakeClock) -> None:
    booked(fake, uid="x", start=at(0), end=at(30), hosts=["anna@salon.example"])
    booked(fake, uid="y", start=at(0), end=at(30), hosts=["bob@salon.example"])
    pending = (await record(client, failure())).json()
    await run_schedule(poller, clock, clock())
    body = await show(client, pending["id"])
    assert (body["status"], body["review_reason"]) == ("manual_review", "ambiguous_match")
    assert body["phases"][0]["status"] == "ambiguous" and body["missing_phases"] == ["A"]


async def test_calcom_down_throughout_is_calcom_unavailable_never_no_booking(
    client, account, poller, fake: FakeCalcom, clock: FakeClock
) -> None:
    fake.set_down(True)
    start = clock()
    pending = (await record(client, failure())).json()
    deadline = (await show(client, pending["id"]))["deadline_at"]
    reports = await run_schedule(poller, clock, start)
    body = await show(client, pending["id"])
    assert (body["status"], body["review_reason"]) == ("manual_review", "calcom_unavailable")
    assert [p["status"] for p in body["phases"]] == ["unknown"]  # nobody knows: never "missing"
    assert body["missing_phases"] == []
    assert body["resolved_at"] == deadline  # the deadline did not move
    calls = sum(r.calls for r in reports)
    # Retried sooner than the schedule, with backoff: more than the 5 scheduled checks, far fewer than one a second.
    assert 5 < calls < 60, calls


async def test_answer_after_failures_still_verifies_before_the_deadline(
    client, account, poller, fake: FakeCalcom, clock: FakeClock
) -> None:
    fake.set_down(True)
    start = clock()
    booked(fake, uid="bk", start=at(0), end=at(30))
    pending = (await record(client, failure())).json()
    await run_schedule(poller, clock, start, until=100)
    fake.set_down(False)
    await run_schedule(poller, clock, clock() + timedelta(seconds=1), until=CHECKS[-1])
    assert (await show(client, pending["id"]))["status"] == "verified"


async def test_later_complete_answer_decides_the_reason_when_calcom_recovered(
    client, account, poller, fake: FakeCalcom, clock: FakeClock
) -> None:
    start = clock()
    pending = (await record(client, failure())).json()
    clock.now = start + timedelta(seconds=2)
    await poller.tick(clock())  # one complete answer: nothing there
    fake.set_down(True)
    await run_schedule(poller, clock, start + timedelta(seconds=3))
    body = await show(client, pending["id"])
    assert body["review_reason"] == "no_booking_found"


async def test_rate_limit_pauses_the_key_and_resumes_without_extra_calls(
    client, account, poller, fake: FakeCalcom, clock: FakeClock
) -> None:
    booked(fake, uid="bk", start=at(0), end=at(30))
    pending = (await record(client, failure())).json()
    clock.advance(2)
    fake.fail_next(1, 429)
    first = await poller.tick(clock())
    assert first.calls == 1 and fake.calls == 1
    for _ in range(55):  # the pause is 60–65 s: every tick meanwhile makes no call
        clock.advance(1)
        await poller.tick(clock())
    assert fake.calls == 1
    assert (await show(client, pending["id"]))["status"] == "pending"
    for _ in range(15):
        clock.advance(1)
        await poller.tick(clock())
    assert fake.calls == 2
    assert (await show(client, pending["id"]))["status"] == "verified"


async def test_low_remaining_budget_waits_for_the_window_reset(client, account, poller, fake: FakeCalcom, clock: FakeClock) -> None:
    fake.limit = 3
    for n in range(4):
        await record(client, failure(appointment_id=str(n), phases=[phase("A", at(n * 60 * 24 * 10))]))  # 10 days apart: 4 queries
    clock.advance(2)
    await poller.tick(clock())
    # Cal.com said 2 requests were left after the first: keep them in hand, do not trip the 60 s block.
    assert fake.calls == 1


async def test_broken_credentials_flag_the_account_and_keep_the_verifications(
    client, account, poller, fake: FakeCalcom, clock: FakeClock
) -> None:
    fake.reset()  # forget the key: Cal.com answers 401
    start = clock()
    pending = (await record(client, failure())).json()
    clock.now = start + timedelta(seconds=2)
    await poller.tick(clock())
    assert (await client.get("/api/accounts/salon-1", headers=AUTH)).json()["credentials"] == "broken"
    assert (await show(client, pending["id"]))["status"] == "pending"
    fake.add_api_key(API_KEY)
    booked(fake, uid="bk", start=at(0), end=at(30))
    await run_schedule(poller, clock, clock() + timedelta(seconds=1))
    assert (await client.get("/api/accounts/salon-1", headers=AUTH)).json()["credentials"] == "ok"
    assert (await show(client, pending["id"]))["status"] == "verified"


async def test_broken_credentials_until_the_deadline_is_calcom_unavailable(
    client, account, poller, fake: FakeCalcom, clock: FakeClock
) -> None:
    fake.reset()
    pending = (await record(client, failure())).json()
    await run_schedule(poller, clock, clock())
    body = await show(client, pending["id"])
    assert body["review_reason"] == "calcom_unavailable"


async def test_started_and_unconfirmed_bookings_are_found(client, account, poller, fake: FakeCalcom, clock: FakeClock) -> None:
    clock.now = at(10)  # the first appointment started ten minutes ago
    booked(fake, uid="running", start=at(0), end=at(30))
    booked(fake, uid="ended", start=at(-120), end=at(-90))
    booked(fake, uid="awaiting", start=at(240), end=at(270), status="pending")
    ids = [
        (await record(client, failure(appointment_id=name, phases=[phase("A", start)]))).json()["id"]
        for name, start in (("running", at(0)), ("ended", at(-120)), ("awaiting", at(240)))
    ]
    clock.advance(2)
    await poller.tick(clock())
    assert [(await show(client, i))["phases"][0]["booking"]["uid"] for i in ids] == ["running", "ended", "awaiting"]


async def test_cancelled_bookings_from_the_api_never_match(client, account, poller, fake: FakeCalcom, clock: FakeClock) -> None:
    booked(fake, uid="gone", start=at(0), end=at(30), status="cancelled")
    pending = (await record(client, failure())).json()
    await run_schedule(poller, clock, clock())
    assert (await show(client, pending["id"]))["review_reason"] == "no_booking_found"


async def test_one_query_per_account_per_tick(client, poller, fake: FakeCalcom, clock: FakeClock) -> None:
    accounts = [f"salon-{n}" for n in range(3)]
    for name in accounts:
        await create_account(client, name, calcom_api_base=CALCOM)
        for n in range(20):
            await record(client, failure(account=name, appointment_id=f"{name}-{n}", phases=[phase("A", at(n * 60))]))
    clock.advance(2)
    report = await poller.tick(clock())
    assert (report.due, report.calls) == (60, 3)


async def test_far_apart_windows_are_split(client, account, poller, fake: FakeCalcom, clock: FakeClock) -> None:
    await record(client, failure(appointment_id="1", phases=[phase("A", at(0))]))
    await record(client, failure(appointment_id="2", phases=[phase("A", at(60 * 24 * 30))]))
    clock.advance(2)
    assert (await poller.tick(clock())).calls == 2


def test_query_windows_merge_and_split() -> None:
    day = timedelta(days=1)
    windows = [
        (T, T + timedelta(hours=1)),
        (T + timedelta(minutes=30), T + timedelta(hours=2)),
        (T + 3 * day, T + 3 * day),
        (T + 30 * day, T + 30 * day),
    ]
    assert query_windows(windows) == [(T, T + 3 * day), (T + 30 * day, T + 30 * day)]


async def test_paging_through_many_bookings(client, account, poller, fake: FakeCalcom, clock: FakeClock) -> None:
    for n in range(600):
        booked(fake, uid=f"noise-{n}", start=at(-600 + n), end=at(-599 + n))
    booked(fake, uid="mine", start=at(0), end=at(30))
    pending = (await record(client, failure(phases=[phase("A", at(-600)), phase("B", at(0))]))).json()
    clock.advance(2)
    report = await poller.tick(clock())
    assert report.calls == 3
    assert (await show(client, pending["id"]))["phases"][1]["booking"]["uid"] == "mine"


async def test_webhook_resolved_work_is_never_polled(client, account, poller, fake: FakeCalcom, clock: FakeClock) -> None:
    await post_webhook(client, booking_event(uid="bk", start=at(0)))
    assert (await record(client, failure())).json()["status"] == "verified"
    await run_schedule(poller, clock, clock())
    assert fake.calls == 0


async def test_poll_evidence_also_settles_verifications_not_yet_due(client, account, poller, fake: FakeCalcom, clock: FakeClock) -> None:
    booked(fake, uid="a", start=at(0), end=at(30))
    booked(fake, uid="b", start=at(180), end=at(210))
    booked(fake, uid="c", start=at(120), end=at(150))
    first = (await record(client, failure(appointment_id="1", phases=[phase("A", at(0)), phase("B", at(180))]))).json()
    clock.advance(1)
    second = (await record(client, failure(appointment_id="2", phases=[phase("A", at(120))]))).json()
    clock.advance(1)
    report = await poller.tick(clock())  # only the first is due; its window holds the second's booking too
    assert (report.due, report.calls, report.verdicts) == (1, 1, 2)
    one, two = await show(client, first["id"]), await show(client, second["id"])
    assert (one["status"], two["status"]) == ("verified", "verified")
    assert two["resolved_via"] == "poll" and two["checks"] == 0


async def test_a_booking_two_appointments_could_own_equally_is_not_given_to_either(
    client, account, poller, fake: FakeCalcom, clock: FakeClock
) -> None:
    booked(fake, uid="a", start=at(0), end=at(30))
    booked(fake, uid="b", start=at(60), end=at(90))
    first = (await record(client, failure(appointment_id="1", phases=[phase("A", at(0)), phase("B", at(60))]))).json()
    second = (await record(client, failure(appointment_id="2", phases=[phase("A", at(60))]))).json()
    await run_schedule(poller, clock, clock())
    one, two = await show(client, first["id"]), await show(client, second["id"])
    assert (one["review_reason"], two["review_reason"]) == ("ambiguous_match", "ambiguous_match")


async def test_two_pollers_never_poll_one_account_twice_in_a_tick(
    client, db, settings, calcom_http, account, fake: FakeCalcom, clock: FakeClock
) -> None:
    for n in range(30):
        await record(client, failure(appointment_id=str(n), phases=[phase("A", at(n * 45))]))
    clock.advance(2)
    p1, p2 = make_poller(db, settings, calcom_http, clock, "p1"), make_poller(db, settings, calcom_http, clock, "p2")
    reports = await asyncio.gather(p1.tick(clock()), p2.tick(clock()))
    assert sum(r.calls for r in reports) == 1
    assert sum(r.due for r in reports) == 30


async def test_killed_pollers_work_is_taken_over_after_its_lease(
    client, db, settings, calcom_http, account, fake: FakeCalcom, clock: FakeClock
) -> None:
    from service.store.queries import accounts as account_store

    booked(fake, uid="bk", start=at(0), end=at(30))
    pending = (await record(client, failure())).json()
    clock.advance(2)
    now = clock()
    async with db.transaction() as tx:  # a poller "dead" right after claiming
        await account_store.claim_for_poll(tx, "dead", now, now + timedelta(seconds=settings.lease_seconds))
        assert await check_store.claim_due(tx, "salon-1", "dead", now, now + timedelta(seconds=settings.lease_seconds), 100)
    survivor = make_poller(db, settings, calcom_http, clock, "p2")
    clock.advance(settings.lease_seconds - 1)
    assert (await survivor.tick(clock())).due == 0
    assert (await show(client, pending["id"]))["status"] == "pending"
    clock.advance(2)
    report = await survivor.tick(clock())
    assert report.due == 1 and report.verdicts == 1
    assert (await show(client, pending["id"]))["status"] == "verified"


async def test_poller_writes_a_heartbeat(client, db, poller: Poller, clock: FakeClock) -> None:
    await poller.tick(clock())
    async with db.read() as tx:
        row = await tx.fetch_one(sql("SELECT id, heartbeat_at, stopped_at FROM pollers"))
    assert row["id"] == "p1" and row["heartbeat_at"] == clock() and row["stopped_at"] is None


async def test_run_stops_at_once_when_asked_and_says_goodbye(poller: Poller, db) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(poller.run(stop))
    while poller.ticks == 0:
        await asyncio.sleep(0)
    stop.set()
    await asyncio.wait_for(task, 5)
    async with db.read() as tx:  # a cleanly stopped poller leaves the list /status reads
        assert await tx.fetch_all(sql("SELECT id FROM pollers")) == []


async def test_old_webhook_bodies_are_pruned_after_the_retention(client, account, poller: Poller, db, clock: FakeClock) -> None:
    await post_webhook(client, booking_event(uid="old", start=at(0)))
    clock.advance(31 * 86400)
    await post_webhook(client, booking_event(uid="new", start=at(0)))
    await poller.tick(clock())
    async with db.read() as tx:
        kept = await tx.fetch_all(sql("SELECT booking_uid FROM webhook_events"))
        observations = await tx.fetch_val(sql("SELECT COUNT(*) AS n FROM booking_observations"))
    assert [r["booking_uid"] for r in kept] == ["new"]
    assert observations == 2  # what the old one taught us stays
