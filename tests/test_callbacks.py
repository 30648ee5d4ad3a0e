"""Verdict callbacks: the retry policy by example and property, then delivery against a fake platform receiver.

The receiver is an `httpx.MockTransport` handler (respx stays reserved for the Cal.com boundary): it
records every request and answers a programmable sequence of statuses or exceptions. Time moves only
through the FakeClock and `tick(now)`.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from service.settings import Settings
from service.store.connector import Database, sql
from service.store.queries import outbox
from service.workers.callbacks import CallbackDeliverer, next_attempt

from .helpers import AUTH, CALLBACK_SECRET, FakeClock, booking_event, create_account, failure, post_webhook, record

HOOK_URL = "https://platform.example/hooks/verification"
CREATED = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)
OUTBOX_ROWS = sql(
    "SELECT id, state, attempts, last_status, last_error, created_at, next_attempt_at, delivered_at, lease_owner FROM outbox ORDER BY seq"
)


# --- the retry policy (pure) ---------------------------------------------------------------------


@pytest.mark.parametrize("attempts", range(1, 41))
def test_retry_delay_grows_exponentially_from_5_seconds_with_jitter_and_caps_at_an_hour(attempts: int) -> None:
    ceiling = min(3600.0, 5.0 * 2 ** (attempts - 1))
    for seed in range(50):
        at = next_attempt(attempts, CREATED, CREATED, random.Random(seed), 25)
        assert at is not None
        assert 0.5 <= (at - CREATED).total_seconds() <= ceiling


def test_retry_gives_up_exactly_at_the_retry_horizon() -> None:
    rng = random.Random(1)
    horizon = CREATED + timedelta(hours=25)
    assert next_attempt(3, CREATED, horizon, rng, 25) is None
    assert next_attempt(3, CREATED, horizon + timedelta(days=3), rng, 25) is None
    assert next_attempt(3, CREATED, horizon - timedelta(microseconds=1), rng, 25) == horizon
    assert next_attempt(3, CREATED, CREATED + timedelta(hours=23, minutes=59), rng, 24) is not None


def test_retry_schedule_keeps_trying_until_the_horizon_with_no_gap_over_an_hour() -> None:
    for seed in range(30):
        rng, now, attempts = random.Random(seed), CREATED, 0
        while True:
            attempts += 1
            following = next_attempt(attempts, CREATED, now, rng, 25)
            if following is None:
                break
            assert timedelta(seconds=0.5) <= following - now <= timedelta(hours=1)
            now = following
        assert now - CREATED == timedelta(hours=25)
        assert 26 <= attempts <= 400


@hypothesis_settings(max_examples=500, deadline=None)
@given(
    attempts=st.integers(min_value=1, max_value=100_000),
    elapsed=st.floats(min_value=0, max_value=40 * 3600, allow_nan=False),
    retry_hours=st.floats(min_value=24, max_value=24 * 30, allow_nan=False),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_retry_is_none_only_past_the_horizon_and_never_beyond_it(attempts: int, elapsed: float, retry_hours: float, seed: int) -> None:
    now = CREATED + timedelta(seconds=elapsed)
    horizon = CREATED + timedelta(hours=retry_hours)
    at = next_attempt(attempts, CREATED, now, random.Random(seed), retry_hours)
    if now >= horizon:
        assert at is None
    else:
        assert at is not None and now < at <= min(horizon, now + timedelta(hours=1))


# --- the fake platform receiver -------------------------------------------------------------------


class Receiver:
    """A fake platform endpoint: records every request, answers the queued statuses/exceptions, then `default`."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.answers: list[Any] = []
        self.default: Any = 200
        self.hold: asyncio.Event | None = None
        self.arrived = asyncio.Event()

    def answer(self, *answers: Any) -> None:
        self.answers.extend(answers)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        self.requests.append(request)
        self.arrived.set()
        if self.hold is not None:
            await self.hold.wait()
        await asyncio.sleep(0)  # a yield, not a wait: lets concurrent deliveries interleave
        answer = self.answers.pop(0) if self.answers else self.default
        if isinstance(answer, type) and issubclass(answer, httpx.TransportError):
            raise answer("simulated", request=request)
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        return httpx.Response(answer, text="ok" if answer < 300 else "receiver says no")

    def ids(self) -> list[str]:
        return [r.headers["webhook-id"] for r in self.requests]

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
async def platform(receiver: Receiver) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(receiver)) as http:
        yield http


@pytest.fixture
def deliverer(db: Database, platform: httpx.AsyncClient, settings: Settings, clock: FakeClock) -> CallbackDeliverer:
    return CallbackDeliverer(db, platform, settings, owner="poller-a", rng=random.Random(7), clock=clock)


@pytest.fixture
def make_deliverer(db: Database, settings: Settings, clock: FakeClock) -> Callable[..., CallbackDeliverer]:
    def make(http: httpx.AsyncClient, owner: str, *, database: Database | None = None, batch: int = 50) -> CallbackDeliverer:
        return CallbackDeliverer(database or db, http, settings, owner=owner, rng=random.Random(owner), batch=batch, clock=clock)

    return make


async def callback_account(client: httpx.AsyncClient, url: str = HOOK_URL, *, enabled: bool = False) -> None:
    await create_account(client, callback_url=url, callback_secret=CALLBACK_SECRET, enabled=enabled)


async def manual_review(client: httpx.AsyncClient, appointment_id: str = "762") -> dict[str, Any]:
    """A verification recorded for a disabled account: straight to manual_review, with an outbox row."""
    response = await record(client, failure(appointment_id))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "manual_review" and body["callback"]["state"] == "pending"
    return body


async def view(client: httpx.AsyncClient, verification_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/verifications/{verification_id}", headers=AUTH)
    assert response.status_code == 200
    return response.json()


async def rows(db: Database) -> list[dict[str, Any]]:
    async with db.read() as tx:
        return await tx.fetch_all(OUTBOX_ROWS)


def signature_for(request: httpx.Request) -> str:
    """What an independent Standard Webhooks implementation signs for this request's id, timestamp and body."""
    stamp = datetime.fromtimestamp(int(request.headers["webhook-timestamp"]), timezone.utc)
    return Webhook(CALLBACK_SECRET).sign(request.headers["webhook-id"], stamp, request.content.decode())


# --- delivery -------------------------------------------------------------------------------------


async def test_callback_is_signed_and_carries_the_verification_as_get_returns_it(
    client: httpx.AsyncClient, clock: FakeClock, db: Database, receiver: Receiver, deliverer: CallbackDeliverer
) -> None:
    # The standardwebhooks verifier checks the timestamp against the real clock (5 min tolerance).
    clock.now = datetime.now(timezone.utc).replace(microsecond=0)
    await callback_account(client, enabled=True)
    start = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
    assert (await post_webhook(client, booking_event(uid="bk-1", booking_id=4711, start=start))).status_code == 200
    verification = (await record(client, failure())).json()
    assert verification["status"] == "verified"

    assert await deliverer.tick(clock.now) == 1

    [request] = receiver.requests
    assert request.method == "POST" and str(request.url) == HOOK_URL
    assert request.headers["content-type"] == "application/json"
    assert "calcom-post-sync-verifier" in request.headers["user-agent"]
    assert request.headers["webhook-id"].startswith("msg_")
    assert request.headers["webhook-timestamp"] == str(int(clock.now.timestamp()))
    assert request.headers["webhook-signature"].startswith("v1,")
    body = Webhook(CALLBACK_SECRET).verify(request.content, dict(request.headers))
    with pytest.raises(WebhookVerificationError):
        Webhook(CALLBACK_SECRET).verify(request.content + b" ", dict(request.headers))
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "QUJD" * 8).verify(request.content, dict(request.headers))

    assert body["type"] == "verification.resolved"
    sent, current = body["verification"], await view(client, verification["id"])
    assert sent["id"] == current["id"] and sent["status"] == "verified" and sent["resolved_via"] == "webhook"
    assert sent["phases"][0]["booking"]["uid"] == "bk-1"
    assert {k: v for k, v in sent.items() if k != "callback"} == {k: v for k, v in current.items() if k != "callback"}
    assert current["callback"] == {"state": "delivered", "attempts": 1, "last_error": None}
    [row] = await rows(db)
    assert row["delivered_at"] == clock.now and row["last_status"] == 200 and row["lease_owner"] is None


async def test_callback_is_retried_after_500s_and_a_timeout_with_the_same_webhook_id(
    client: httpx.AsyncClient, clock: FakeClock, db: Database, receiver: Receiver, deliverer: CallbackDeliverer
) -> None:
    await callback_account(client)
    verification = await manual_review(client)
    receiver.answer(500, httpx.ReadTimeout, 503, 200)

    assert await deliverer.tick(clock.now) == 1
    first = (await rows(db))[0]
    assert (first["state"], first["attempts"], first["last_status"]) == ("pending", 1, 500)
    assert (await view(client, verification["id"]))["callback"]["last_error"].startswith("HTTP 500")
    due = [first["next_attempt_at"]]
    assert clock.now < due[0] <= clock.now + timedelta(seconds=5)

    # Not before it is due.
    assert await deliverer.tick(clock.now + (due[0] - clock.now) / 2) == 0

    clock.now = due[0]
    assert await deliverer.tick(clock.now) == 1
    callback = (await view(client, verification["id"]))["callback"]
    assert callback["state"] == "pending" and callback["attempts"] == 2 and "timed out" in callback["last_error"]
    due.append((await rows(db))[0]["next_attempt_at"])

    clock.now = due[1]
    assert await deliverer.tick(clock.now) == 1
    callback = (await view(client, verification["id"]))["callback"]
    assert callback == {"state": "pending", "attempts": 3, "last_error": "HTTP 503: receiver says no"}
    due.append((await rows(db))[0]["next_attempt_at"])
    assert due == sorted(due) and len(set(due)) == 3

    clock.now = due[2]
    assert await deliverer.tick(clock.now) == 1
    assert (await view(client, verification["id"]))["callback"] == {"state": "delivered", "attempts": 4, "last_error": None}
    assert await deliverer.tick(clock.now + timedelta(days=2)) == 0

    assert len(receiver.requests) == 4 and len(set(receiver.ids())) == 1
    assert len({r.content for r in receiver.requests}) == 1  # the stored body, unchanged
    for request in receiver.requests:
        assert request.headers["webhook-signature"] == signature_for(request)


async def test_410_gone_stops_delivery_at_once(
    client: httpx.AsyncClient, clock: FakeClock, receiver: Receiver, deliverer: CallbackDeliverer
) -> None:
    await callback_account(client)
    verification = await manual_review(client)
    receiver.answer(410)

    assert await deliverer.tick(clock.now) == 1
    callback = (await view(client, verification["id"]))["callback"]
    assert callback["state"] == "failed" and callback["attempts"] == 1 and "410" in callback["last_error"]
    for hours in (1, 24, 48):
        assert await deliverer.tick(clock.now + timedelta(hours=hours)) == 0
    assert len(receiver.requests) == 1


async def test_gives_up_only_after_the_retry_horizon_of_at_least_24_hours(
    client: httpx.AsyncClient, clock: FakeClock, db: Database, receiver: Receiver, deliverer: CallbackDeliverer, settings: Settings
) -> None:
    await callback_account(client)
    verification = await manual_review(client)
    receiver.default = 503
    created = clock.now
    horizon = timedelta(hours=settings.callback_retry_hours)
    assert horizon >= timedelta(hours=24)
    checked_23h = False

    while True:
        if not checked_23h and clock.now - created >= timedelta(hours=23):
            assert (await view(client, verification["id"]))["callback"]["state"] == "pending"
            checked_23h = True
        assert await deliverer.tick(clock.now) == 1
        [row] = await rows(db)
        if row["state"] != "pending":
            break
        assert row["next_attempt_at"] - clock.now <= timedelta(hours=1)
        clock.now = row["next_attempt_at"]

    assert checked_23h
    assert clock.now - created == horizon
    callback = (await view(client, verification["id"]))["callback"]
    assert callback["state"] == "failed" and callback["attempts"] == len(receiver.requests)
    assert callback["last_error"].startswith(f"gave up after {len(receiver.requests)} attempts over 25 h")
    assert await deliverer.tick(clock.now + timedelta(days=1)) == 0
    assert len(set(receiver.ids())) == 1


async def test_redirect_is_not_followed_and_counts_as_a_failed_attempt(
    client: httpx.AsyncClient, clock: FakeClock, db: Database, receiver: Receiver, deliverer: CallbackDeliverer
) -> None:
    await callback_account(client)
    verification = await manual_review(client)
    receiver.answer(httpx.Response(302, headers={"location": "https://elsewhere.example/hooks"}))

    assert await deliverer.tick(clock.now) == 1
    assert [r.url.host for r in receiver.requests] == ["platform.example"]
    callback = (await view(client, verification["id"]))["callback"]
    assert callback["state"] == "pending" and callback["attempts"] == 1
    assert "302" in callback["last_error"] and "not followed" in callback["last_error"]
    [row] = await rows(db)
    assert row["last_status"] == 302 and row["next_attempt_at"] > clock.now


async def test_two_deliverers_ticking_concurrently_deliver_each_event_exactly_once(
    client: httpx.AsyncClient,
    clock: FakeClock,
    db: Database,
    database_url: str,
    receiver: Receiver,
    make_deliverer: Callable[..., CallbackDeliverer],
) -> None:
    await callback_account(client)
    for n in range(30):
        await manual_review(client, appointment_id=str(1000 + n))
    other_db = Database(database_url)  # a second process: its own connections
    await other_db.connect()
    try:
        async with (
            httpx.AsyncClient(transport=httpx.MockTransport(receiver)) as http_a,
            httpx.AsyncClient(transport=httpx.MockTransport(receiver)) as http_b,
        ):
            a = make_deliverer(http_a, "poller-a", batch=7)
            b = make_deliverer(http_b, "poller-b", database=other_db, batch=7)
            made = {"a": 0, "b": 0}
            while True:
                done_a, done_b = await asyncio.gather(a.tick(clock.now), b.tick(clock.now))
                made["a"] += done_a
                made["b"] += done_b
                if done_a == done_b == 0:
                    break
    finally:
        await other_db.disconnect()

    counts = Counter(receiver.ids())
    assert len(counts) == 30 and set(counts.values()) == {1}
    assert made["a"] + made["b"] == 30 and made["a"] > 0 and made["b"] > 0
    assert {r["state"] for r in await rows(db)} == {"delivered"}
    assert {r["id"] for r in await rows(db)} == set(counts)


async def test_rows_claimed_by_a_dead_poller_are_delivered_after_its_lease_expires(
    client: httpx.AsyncClient, clock: FakeClock, db: Database, receiver: Receiver, deliverer: CallbackDeliverer, settings: Settings
) -> None:
    await callback_account(client)
    verification = await manual_review(client)
    lease = timedelta(seconds=settings.lease_seconds)
    async with db.transaction() as tx:
        claimed = await outbox.claim_due(tx, "poller-dead", clock.now, clock.now + lease, 50)
    assert len(claimed) == 1

    assert await deliverer.tick(clock.now) == 0
    assert await deliverer.tick(clock.now + lease - timedelta(seconds=1)) == 0
    assert receiver.requests == []

    clock.now = clock.now + lease + timedelta(seconds=1)
    assert await deliverer.tick(clock.now) == 1
    assert receiver.ids() == [claimed[0]["id"]]
    assert (await view(client, verification["id"]))["callback"] == {"state": "delivered", "attempts": 1, "last_error": None}


async def test_a_tick_killed_mid_post_is_redelivered_with_the_same_webhook_id_after_the_lease(
    client: httpx.AsyncClient,
    clock: FakeClock,
    db: Database,
    receiver: Receiver,
    platform: httpx.AsyncClient,
    make_deliverer: Callable[..., CallbackDeliverer],
) -> None:
    await callback_account(client)
    verification = await manual_review(client)
    dying, successor = make_deliverer(platform, "poller-dying"), make_deliverer(platform, "poller-successor")
    receiver.hold = asyncio.Event()  # the receiver never answers the first POST

    task = asyncio.create_task(dying.tick(clock.now))
    await receiver.arrived.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    receiver.hold = None
    [row] = await rows(db)
    assert row["state"] == "pending" and row["attempts"] == 0 and row["lease_owner"] == "poller-dying"

    assert await successor.tick(clock.now + timedelta(seconds=30)) == 0
    assert await successor.tick(clock.now + timedelta(minutes=5)) == 1
    assert len(receiver.requests) == 2 and len(set(receiver.ids())) == 1
    assert (await view(client, verification["id"]))["callback"] == {"state": "delivered", "attempts": 1, "last_error": None}


async def test_operator_resolve_after_manual_review_sends_a_second_event_with_a_new_webhook_id(
    client: httpx.AsyncClient, clock: FakeClock, receiver: Receiver, deliverer: CallbackDeliverer
) -> None:
    await callback_account(client)
    verification = await manual_review(client)
    assert await deliverer.tick(clock.now) == 1

    clock.advance(600)
    response = await client.post(
        f"/api/verifications/{verification['id']}/resolve", json={"outcome": "synced", "note": "found in Cal.com"}, headers=AUTH
    )
    assert response.status_code == 200, response.text
    assert response.json()["callback"] == {"state": "pending", "attempts": 0, "last_error": None}
    assert await deliverer.tick(clock.now) == 1

    first, second = receiver.bodies()
    assert receiver.ids()[0] != receiver.ids()[1]
    assert first["verification"]["status"] == "manual_review" and first["verification"]["review_reason"] == "verification_disabled"
    assert second["verification"]["status"] == "resolved" and second["verification"]["resolution"] == "synced"
    assert second["verification"]["resolved_via"] == "operator"
    assert (await view(client, verification["id"]))["callback"] == {"state": "delivered", "attempts": 1, "last_error": None}


async def test_event_is_abandoned_when_the_account_no_longer_has_a_callback_url(
    client: httpx.AsyncClient, clock: FakeClock, receiver: Receiver, deliverer: CallbackDeliverer
) -> None:
    await callback_account(client)
    verification = await manual_review(client)
    await create_account(client, enabled=False)  # replaced without callback_url

    assert await deliverer.tick(clock.now) == 0
    callback = (await view(client, verification["id"]))["callback"]
    assert callback["state"] == "failed" and callback["attempts"] == 0 and "callback_url" in callback["last_error"]
    assert receiver.requests == []


async def test_no_secret_or_url_token_reaches_last_error_or_logs(
    client: httpx.AsyncClient,
    clock: FakeClock,
    db: Database,
    receiver: Receiver,
    deliverer: CallbackDeliverer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = "tok-private-5e6f7a8b"
    url = f"https://platform.example/hooks/{token}/verification?auth={token}"
    await callback_account(client, url)
    verification = await manual_review(client)
    key = CALLBACK_SECRET.removeprefix("whsec_")
    receiver.answer(
        httpx.Response(500, text=f"bad config at {url}: secret={CALLBACK_SECRET} key={key}"),
        httpx.ConnectError(f"cannot reach {url} with {key}"),
        httpx.Response(400, text="x" * 100 + key),  # the key straddles where the snippet is cut
    )

    errors = []
    for _ in range(3):
        assert await deliverer.tick(clock.now) == 1
        [row] = await rows(db)
        errors.append(row["last_error"])
        clock.now = row["next_attempt_at"]
    shown = json.dumps(await view(client, verification["id"]))

    assert errors[0].startswith("HTTP 500") and errors[1].startswith("ConnectError") and errors[2].startswith("HTTP 400")
    for text in [*errors, shown]:
        assert len(text) <= 1000
        for private in (CALLBACK_SECRET, key[:8], token, "/hooks/"):
            assert private not in text
    assert "platform.example" in errors[0] and "[redacted]" in errors[0]
    assert all(len(e) <= 200 for e in errors)
    outcomes = [r for r in caplog.records if getattr(r, "event", "").startswith("callback_")]
    assert [r.event for r in outcomes] == ["callback_retry"] * 3  # type: ignore[attr-defined]
    for record_ in caplog.records:
        line = record_.getMessage() + " " + " ".join(f"{k}={v}" for k, v in vars(record_).items())
        for private in (CALLBACK_SECRET, key, token, "/hooks/"):
            assert private not in line
    assert outcomes[0].host == "platform.example"  # type: ignore[attr-defined]
    assert outcomes[0].webhook_id == receiver.ids()[0]  # type: ignore[attr-defined]
    assert outcomes[0].verification_id == verification["id"]  # type: ignore[attr-defined]
