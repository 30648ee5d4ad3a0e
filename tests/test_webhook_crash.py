"""A web process killed between storing a webhook (answered 200) and matching it loses nothing.

The first web process runs with HOLD_WEBHOOK_MATCHING, so it stores and answers but never matches:
the kill lands in the window between the two every time, without timing. The event is then
matched from its stored body by the next web process start, or by the poller's next tick.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from service.store.connector import Database, sql

from .helpers import API_KEY, WEBHOOK_SECRET, booking_event, signed
from .processes import Process, free_port, service_env, started, wait_until
from .test_processes import run

pytestmark = pytest.mark.slow
TOKEN = "crash-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
# Nothing is due for a check while the test runs: only the stored webhook can verify.
QUIET = {"SETTLE_SECONDS": "3600", "CHECK_SCHEDULE": "3600", "POLL_INTERVAL_SECONDS": "0.2", "CALCOM_API_BASE": "http://127.0.0.1:9"}


async def rows(database_url: str) -> dict[str, Any]:
    db = Database(database_url)
    await db.connect()
    try:
        async with db.read() as tx:
            return {
                "events": await tx.fetch_all(sql("SELECT unmatched FROM webhook_events")),
                "verifications": await tx.fetch_all(sql("SELECT status, resolved_via FROM verifications")),
            }
    finally:
        await db.disconnect()


@contextmanager
def web(database_url: str, **extra: str) -> Iterator[tuple[Process, httpx.Client]]:
    port = free_port()
    env = service_env(database_url, PORT=str(port), API_TOKEN=TOKEN, **QUIET, **extra)
    with started(["web"], env, "web") as process, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        wait_until(lambda: http.get("/healthz").status_code == 200, 30, "the web process to listen")
        yield process, http


def store_and_die(database_url: str) -> None:
    """A failure recorded, then its booking's webhook answered 200 by a process killed before matching it."""
    with web(database_url, HOLD_WEBHOOK_MATCHING="true") as (process, http):
        account = {"calcom_api_key": API_KEY, "webhook_secret": WEBHOOK_SECRET, "calcom_api_base": "http://127.0.0.1:9"}
        assert http.put("/api/accounts/salon-1", json=account, headers=AUTH).status_code == 201
        phase = {"key": "A", "start": T.isoformat(), "end": (T + timedelta(minutes=30)).isoformat(), "attendee_email": "kunde@example.com"}
        recorded = http.post("/api/verifications", json={"account": "salon-1", "appointment_id": "762", "phases": [phase]}, headers=AUTH)
        assert recorded.status_code == 201 and recorded.json()["status"] == "pending"
        request = signed(booking_event(uid="stored-then-killed", start=T))
        answer = http.post("/webhooks/calcom/salon-1", content=request.body, headers=request.headers)
        assert answer.status_code == 200 and answer.json()["stored"] is True
        process.signal(signal.SIGKILL)
        assert process.wait(30) == -signal.SIGKILL
    # On disk: the event with its marker set, and the verification it would verify still pending.
    assert run(rows(database_url)) == {"events": [{"unmatched": 1}], "verifications": [{"status": "pending", "resolved_via": None}]}


def _matched(database_url: str) -> dict[str, Any] | None:
    now = run(rows(database_url))
    return now if now["events"] == [{"unmatched": 0}] and now["verifications"][0]["status"] != "pending" else None


def test_an_event_stored_by_a_killed_web_process_is_matched_by_the_next_start(database_url: str) -> None:
    store_and_die(database_url)
    with web(database_url):
        after = wait_until(lambda: _matched(database_url), 30, "the next web process to match the stored event", interval=0.1)
    assert after["verifications"] == [{"status": "verified", "resolved_via": "webhook"}]


def test_an_event_stored_by_a_killed_web_process_is_matched_by_the_poller(database_url: str) -> None:
    store_and_die(database_url)
    with started(["poll"], service_env(database_url, **QUIET), "poller"):
        after = wait_until(lambda: _matched(database_url), 60, "the poller to match the stored event", interval=0.2)
    assert after["verifications"] == [{"status": "verified", "resolved_via": "webhook"}]
