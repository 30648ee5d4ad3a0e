"""What the booking-guard tests share: the verifier wired to the fake Cal.com, both ways."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest

from service.settings import Settings
from service.testing.fakecalcom import FakeCalcom

from .helpers import API_KEY, API_TOKEN, AUTH, WEBHOOK_SECRET, FakeClock, create_account

CALCOM = "http://calcom.test"
HOOK = "http://verifier.test/webhooks/calcom/salon-1"
START = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)
PLATFORM = {"Authorization": f"Bearer {API_KEY}", "cal-api-version": "2024-08-13"}
CREATE = {
    "start": "2026-12-01T10:00:00Z",
    "eventTypeId": 1001,
    "attendee": {"name": "Max Muster", "email": "max@kunde.example", "timeZone": "Europe/Berlin"},
    "metadata": {"appointment_id": "762", "phase": "A"},
}


@pytest.fixture
def guard_timeout() -> float:
    """GUARD_CALCOM_TIMEOUT_SECONDS in these tests: a held answer ends the create call this soon."""
    return 0.3


@pytest.fixture
def settings(database_url: str, guard_timeout: float) -> Settings:
    return Settings(
        _env_file=None,
        database_url=database_url,
        api_token=API_TOKEN,
        settle_seconds=2,
        check_schedule=(10, 30, 120, 600),
        max_body_bytes=65536,
        guard_calcom_timeout_seconds=guard_timeout,
        guard_truth_seconds=5,
    )


@pytest.fixture
def fake(clock: FakeClock) -> FakeCalcom:
    calcom = FakeCalcom(clock=clock)
    calcom.add_api_key(API_KEY)
    return calcom


@pytest.fixture
def calcom_transport(fake: FakeCalcom) -> httpx.AsyncBaseTransport:
    return httpx.ASGITransport(app=fake.app)


@pytest.fixture
async def hooks(app: Any, fake: FakeCalcom) -> AsyncIterator[httpx.AsyncClient]:
    """Cal.com's webhooks reach the verifier in-process."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://verifier.test") as http:
        fake.webhook_client = http
        yield http


@pytest.fixture
async def salon(client: httpx.AsyncClient, fake: FakeCalcom, hooks: httpx.AsyncClient) -> None:
    """An account whose Cal.com sends its booking webhooks to the verifier."""
    await create_account(client, calcom_api_base=CALCOM)
    fake.add_webhook(API_KEY, HOOK, WEBHOOK_SECRET)


@pytest.fixture
async def unsubscribed(client: httpx.AsyncClient, fake: FakeCalcom, hooks: httpx.AsyncClient) -> None:
    """An account whose webhooks never arrive (the guard can only ask Cal.com)."""
    await create_account(client, calcom_api_base=CALCOM)


async def book(client: httpx.AsyncClient, body: dict[str, Any] | None = None, *, key: str | None = None, **fields: Any) -> httpx.Response:
    headers = {**PLATFORM, **({"Idempotency-Key": key} if key else {})}
    return await client.post("/calcom/salon-1/v2/bookings", json={**(body or CREATE), **fields}, headers=headers)


def bookings_in(fake: FakeCalcom) -> list[dict[str, Any]]:
    """Every booking the fake holds for the salon's key."""
    from service.testing.fakecalcom.queries import BookingQuery

    return fake.book.query(API_KEY, BookingQuery(take=250), now=fake.clock())


async def verification(client: httpx.AsyncClient, verification_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/verifications/{verification_id}", headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()
