"""A Cal.com outage is visible: /status problem after CALCOM_ALERT_SECONDS, counters in /metrics, refusals logged."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import datetime, timezone

import httpx
import pytest
import respx
from prometheus_client.parser import text_string_to_metric_families

from service.clients.calcom import CalcomClient
from service.core.tallies import Tally
from service.errors import CalcomError
from service.settings import Settings
from service.store.connector import Database
from service.testing.fakecalcom import FakeCalcom
from service.workers.poller import Poller

from .helpers import API_KEY, API_TOKEN, AUTH, FakeClock, booking_event, create_account, failure, post_webhook, record, signed

CALCOM = "http://calcom.test"
T = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


@pytest.fixture(params=[False, True], ids=["counts-only", "show-accounts"])
def settings(database_url: str, request: pytest.FixtureRequest) -> Settings:
    return Settings(
        _env_file=None,
        database_url=database_url,
        api_token=API_TOKEN,
        settle_seconds=2,
        check_schedule=(10, 30, 120, 600),
        max_body_bytes=65536,
        calcom_alert_seconds=300,
        status_show_accounts=request.param,
    )


@pytest.fixture
def fake(clock: FakeClock) -> FakeCalcom:
    calcom = FakeCalcom(clock=clock)
    calcom.add_api_key(API_KEY)
    return calcom


@pytest.fixture
async def poller(db: Database, settings: Settings, fake: FakeCalcom, clock: FakeClock) -> AsyncIterator[Poller]:
    """A poller as its own process would run it: its own tally, flushed to the shared counters each tick."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app)) as http:
        yield Poller(db, settings, CalcomClient(http, clock=clock, tally=Tally()), clock=clock, owner="p1")


async def ticks(poller: Poller, clock: FakeClock, seconds: int) -> None:
    for _ in range(seconds):
        clock.advance(1)
        await poller.tick(clock())


def metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(text) for s in f.samples}


async def test_an_outage_longer_than_the_alert_is_a_problem_until_calcom_answers(
    client: httpx.AsyncClient, poller: Poller, fake: FakeCalcom, clock: FakeClock, settings: Settings
) -> None:
    await create_account(client, calcom_api_base=CALCOM)
    fake.set_down(True)
    await record(client, failure())
    await ticks(poller, clock, 200)  # failing for about 200 s: below the alert
    status = (await client.get("/status")).json()
    assert status["ok"] is True and status["accounts"]["calcom_failing"] == 0
    await ticks(poller, clock, 200)  # now longer than 300 s
    status = (await client.get("/status")).json()
    assert status["ok"] is False and status["accounts"]["calcom_failing"] == 1
    [problem] = [p for p in status["problems"] if p.startswith("Cal.com checks of")]
    assert "outcomes are unknown" in problem and "Cal.com answered 503" in problem
    text = (await client.get("/metrics")).text
    samples = metrics(text)
    assert samples[("calcom_verifier_accounts_calcom_failing", ())] == 1
    assert samples[("calcom_verifier_calcom_requests_total", (("outcome", "5xx"),))] >= 2
    assert samples[("calcom_verifier_calcom_requests_total", (("outcome", "ok"),))] == 0
    if settings.status_show_accounts:
        assert "account(s) salon-1" in problem and status["accounts"]["names"]["calcom_failing"] == ["salon-1"]
        assert samples[("calcom_verifier_account_calcom_failing", (("account", "salon-1"),))] == 1
    else:
        assert "1 account(s)" in problem and "names" not in status["accounts"]
        assert "salon-1" not in text and "salon-1" not in str(status)
    fake.set_down(False)
    await ticks(poller, clock, 400)  # the next check after the backoff gets a complete answer
    status = (await client.get("/status")).json()
    assert status["accounts"]["calcom_failing"] == 0 and not any(p.startswith("Cal.com checks of") for p in status["problems"])
    assert status["traffic"]["calcom_requests"]["ok"] >= 1


async def test_webhook_refusals_are_logged_and_counted_by_reason(client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    await create_account(client)
    envelope = booking_event(uid="bk-1", start=T)
    assert (await post_webhook(client, envelope, account="salon-9")).status_code == 404
    assert (await post_webhook(client, envelope, account="Salon-1")).status_code == 404
    assert (await post_webhook(client, envelope, secret="wrong-secret-000000")).status_code == 401
    assert (await post_webhook(client, b'{"payload": {}}')).status_code == 400
    request = signed(b"x" * 70_000)
    assert (await client.post("/webhooks/calcom/salon-1", content=request.body, headers=request.headers)).status_code == 413
    rejected = [r for r in caplog.records if getattr(r, "event", None) == "webhook_rejected"]
    assert sorted((r.reason, r.status) for r in rejected) == [  # type: ignore[attr-defined]
        ("bad_payload", 400),
        ("too_large", 413),
        ("unknown_account", 404),
        ("unknown_account", 404),
    ]
    assert any(getattr(r, "event", None) == "webhook_signature_rejected" for r in caplog.records)
    traffic = (await client.get("/status")).json()["traffic"]["webhook_rejections"]
    assert traffic == {"unknown_account": 2, "too_large": 1, "bad_signature": 1, "bad_payload": 1, "database_unavailable": 0}
    samples = metrics((await client.get("/metrics")).text)
    assert samples[("calcom_verifier_webhook_rejections_total", (("reason", "unknown_account"),))] == 2


async def test_api_client_errors_are_counted_by_route_and_422s_logged_by_field(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await create_account(client)
    typo = failure()
    typo["phases"][0]["staff_requried"] = False
    assert (await record(client, typo)).status_code == 422
    assert (await client.get("/api/verifications/5c0e-not-there", headers=AUTH)).status_code == 404
    assert (await client.get("/api/verifications/another-one", headers=AUTH)).status_code == 404
    assert (await client.get("/api/verifications")).status_code == 401
    [logged] = [r for r in caplog.records if getattr(r, "event", None) == "api_validation_failed"]
    assert logged.fields == ["phases.0.staff_requried"] and logged.path == "/api/verifications"  # type: ignore[attr-defined]
    assert (await client.get("/status")).json()["traffic"]["api_client_errors"] == {
        "GET /api/verifications 401": 1,
        "GET /api/verifications/{id} 404": 2,
        "POST /api/verifications 422": 1,
    }
    samples = metrics((await client.get("/metrics")).text)
    labels = (("method", "GET"), ("route", "/api/verifications/{id}"), ("status", "404"))
    assert samples[("calcom_verifier_api_client_errors_total", labels)] == 2
    families = {f.name for f in text_string_to_metric_families((await client.get("/metrics")).text)}
    assert "calcom_verifier_guard_requests" in families  # declared for the booking guard to fill


@respx.mock(assert_all_mocked=True)
async def test_calcom_requests_are_counted_by_outcome(respx_mock: respx.MockRouter) -> None:
    answers = [httpx.Response(500), httpx.Response(429), httpx.Response(404), httpx.TimeoutException("slow"), httpx.ConnectError("down")]
    respx_mock.get("https://api.cal.com/v2/bookings").mock(side_effect=answers)
    tally = Tally()
    async with httpx.AsyncClient() as http:
        calcom = CalcomClient(http, tally=tally)
        for _ in answers:
            with pytest.raises(CalcomError):
                await calcom.list_bookings(api_base="https://api.cal.com", api_key=API_KEY, after_start=T, before_end=T)
    assert tally.take() == {("calcom_requests", o): 1 for o in ("5xx", "429", "4xx", "timeout", "connection_error")}
