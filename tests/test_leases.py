"""Leases, signatures and rate-limit pauses use the time they are taken, not the start of a long tick.

A tick's `now` is read once; a slow Cal.com answer or a slow receiver makes it old. Here the fake
Cal.com (or the fake platform) moves the FakeClock while it answers, and a second poller ticks in the
middle, as it would on another machine.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from service.clients.calcom import CalcomClient
from service.core.ratelimit import key_name
from service.settings import Settings
from service.store.connector import Database
from service.store.queries import accounts as account_store
from service.testing.fakecalcom import FakeCalcom
from service.workers import poller as poller_module
from service.workers.callbacks import CallbackDeliverer
from service.workers.poller import Poller

from .helpers import API_KEY, CALLBACK_SECRET, FakeClock, booking_event, create_account, failure, phase, post_webhook, record

CALCOM = "http://calcom.test"
HOOK_URL = "https://platform.example/hooks/verification"
T = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)

Hook = Callable[[httpx.Request, int], Awaitable[None]]


class Hooked(httpx.AsyncBaseTransport):
    """A transport that runs `hook(request, n)` (n counts from 1) before the app answers the request."""

    def __init__(self, inner: httpx.AsyncBaseTransport, hook: Hook) -> None:
        self.inner, self.hook, self.count = inner, hook, 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.count += 1
        await self.hook(request, self.count)
        return await self.inner.handle_async_request(request)


def calcom_client(fake: FakeCalcom, clock: FakeClock, hook: Hook | None = None) -> CalcomClient:
    transport: httpx.AsyncBaseTransport = httpx.ASGITransport(app=fake.app)
    if hook is not None:
        transport = Hooked(transport, hook)
    return CalcomClient(httpx.AsyncClient(transport=transport), clock=clock)


@pytest.fixture
def fake(clock: FakeClock) -> FakeCalcom:
    calcom = FakeCalcom(clock=clock)
    calcom.add_api_key(API_KEY)
    return calcom


async def test_an_account_polled_after_a_slow_one_is_not_taken_by_another_poller(
    client: httpx.AsyncClient, db: Database, settings: Settings, fake: FakeCalcom, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(poller_module, "ACCOUNTS_AT_ONCE", 1)  # accounts one after the other
    settings = settings.model_copy(update={"lease_seconds": 5})
    for account in ("salon-1", "salon-2"):
        await create_account(client, account, calcom_api_base=CALCOM)
        await record(client, failure(account=account, phases=[phase("A", T)]))
    clock.advance(2)
    other = Poller(db, settings, calcom_client(fake, clock), clock=clock, owner="other")
    seen: dict[str, int] = {}

    async def hook(request: httpx.Request, n: int) -> None:
        if n == 1:
            clock.advance(8)  # salon-1's answer takes 8 s: longer than a lease, shorter than the next check
        else:  # salon-2's query is under way: a second poller ticks now
            report = await other.tick(clock())
            seen.update(due=report.due, calls=report.calls)

    first = Poller(db, settings, calcom_client(fake, clock, hook), clock=clock, owner="first")
    report = await first.tick(clock())
    assert report.calls == 2 and report.verdicts == 0
    assert seen == {"due": 0, "calls": 0}
    assert fake.calls == 2


async def _slow_poll_then_deliver(
    client: httpx.AsyncClient, db: Database, settings: Settings, fake: FakeCalcom, clock: FakeClock, on_post: Hook
) -> list[httpx.Request]:
    """One verdict waiting in the outbox, one verification due for a poll whose Cal.com answer takes 10 minutes."""
    await create_account(client, calcom_api_base=CALCOM, callback_url=HOOK_URL, callback_secret=CALLBACK_SECRET)
    assert (await post_webhook(client, booking_event(uid="bk-1", start=T))).status_code == 200
    assert (await record(client, failure(appointment_id="1", phases=[phase("A", T)]))).json()["status"] == "verified"
    await record(client, failure(appointment_id="2", phases=[phase("A", T + timedelta(hours=3))]))
    clock.advance(2)
    posts: list[httpx.Request] = []

    async def receive(request: httpx.Request) -> httpx.Response:
        posts.append(request)
        request.extensions["received_at"] = clock()
        await on_post(request, len(posts))
        return httpx.Response(200)

    async def slow_calcom(request: httpx.Request, n: int) -> None:
        clock.advance(600)

    async with httpx.AsyncClient(transport=httpx.MockTransport(receive)) as platform:
        deliverer = CallbackDeliverer(db, platform, settings, owner="first", rng=random.Random(1), clock=clock)
        poller = Poller(db, settings, calcom_client(fake, clock, slow_calcom), clock=clock, owner="first", deliverer=deliverer)
        await poller.tick(clock())
    return posts


async def test_a_verdict_callback_is_not_posted_twice_after_a_slow_tick(
    client: httpx.AsyncClient, db: Database, settings: Settings, fake: FakeCalcom, clock: FakeClock
) -> None:
    second_made: list[int] = []

    async def meanwhile(request: httpx.Request, n: int) -> None:
        if n == 1:  # while the first POST is in flight, another poller's deliverer ticks
            async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(200))) as http:
                other = CallbackDeliverer(db, http, settings, owner="other", rng=random.Random(2), clock=clock)
                second_made.append(await other.tick(clock()))

    posts = await _slow_poll_then_deliver(client, db, settings, fake, clock, meanwhile)
    assert second_made == [0]
    assert set(Counter(r.headers["webhook-id"] for r in posts).values()) == {1}


async def test_a_verdict_callback_is_signed_with_the_time_it_is_sent(
    client: httpx.AsyncClient, db: Database, settings: Settings, fake: FakeCalcom, clock: FakeClock
) -> None:
    async def nothing(request: httpx.Request, n: int) -> None:
        return None

    [post] = await _slow_poll_then_deliver(client, db, settings, fake, clock, nothing)
    assert int(post.headers["webhook-timestamp"]) == int(post.extensions["received_at"].timestamp())


async def test_a_429_pause_survives_another_pollers_older_pace_update(
    client: httpx.AsyncClient, db: Database, settings: Settings, fake: FakeCalcom, clock: FakeClock
) -> None:
    # Two accounts on one Cal.com API key: one rate limit, shared by every poller.
    for account in ("salon-1", "salon-2"):
        await create_account(client, account, calcom_api_base=CALCOM)
        await record(client, failure(account=account, phases=[phase("A", T)]))
        clock.advance(1)
    # Now salon-1 is due; salon-2 will be in a second.
    other = Poller(db, settings, calcom_client(fake, clock), clock=clock, owner="other")
    other_calls: list[int] = []

    async def hook(request: httpx.Request, n: int) -> None:
        if n == 1:  # while the first poller's query is under way, the other one hits a 429
            clock.advance(1)
            fake.fail_next(1, 429)
            other_calls.append((await other.tick(clock())).calls)

    blocked_at = clock() + timedelta(seconds=1)
    first = Poller(db, settings, calcom_client(fake, clock, hook), clock=clock, owner="first")
    report = await first.tick(clock())
    assert (report.accounts, report.calls, other_calls, fake.calls) == (1, 1, [1], 2)
    async with db.read() as tx:
        pace = await account_store.get_pace(tx, key_name(API_KEY))
    assert pace is not None and pace["paused_until_at"] is not None
    assert pace["paused_until_at"] >= blocked_at + timedelta(seconds=60)


async def test_an_older_rate_limit_reading_never_replaces_a_newer_one(db: Database) -> None:
    key = key_name(API_KEY)
    async with db.transaction() as tx:
        await account_store.set_pace(
            tx, key, paused_until=T + timedelta(seconds=60), remaining=0, reset_at=T + timedelta(seconds=60), now=T
        )
        # another poller's reading, taken a second before, stored after
        await account_store.set_pace(
            tx, key, paused_until=None, remaining=80, reset_at=T + timedelta(seconds=30), now=T - timedelta(seconds=1)
        )
    async with db.read() as tx:
        assert await account_store.get_pace(tx, key) == {
            "paused_until_at": T + timedelta(seconds=60),
            "remaining": 0,
            "reset_at": T + timedelta(seconds=60),
        }
    async with db.transaction() as tx:  # a newer reading in a new window replaces it; the pause (past by then) stays
        await account_store.set_pace(
            tx, key, paused_until=None, remaining=119, reset_at=T + timedelta(seconds=130), now=T + timedelta(seconds=70)
        )
    async with db.read() as tx:
        pace = await account_store.get_pace(tx, key)
    assert pace == {"paused_until_at": T + timedelta(seconds=60), "remaining": 119, "reset_at": T + timedelta(seconds=130)}
