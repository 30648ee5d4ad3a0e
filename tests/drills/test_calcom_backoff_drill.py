"""Drill 4b: during a Cal.com outage an account is backed off as a whole, not verification by verification.

This drill found the bug it now guards against: every claimed verification used to draw its own
jittered retry time, so with many pending verifications in one account their retries spread over
the following ticks and the account was queried about once per tick during an outage (47 queries
in 60 ticks) — no effective backoff ("never hammer", SPEC §6) — and after recovery the batch stayed
split into many queries instead of one. Now a failed query pauses the account's API key with one
exponential backoff, and all its due verifications are retried together.
"""

from __future__ import annotations

import json
import math
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from ..helpers import API_KEY
from ..processes import free_port, wait_until
from .support import AUTH, TimedFake, put_account, query, services, wait_healthy, web_env

T = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
ROWS = 40
TICK = 0.2
OUTAGE = 12.0  # seconds Cal.com answers 503 (the drill's parameter)
SETTINGS = {
    "SETTLE_SECONDS": "0",
    "CHECK_SCHEDULE": "60,60",
    "POLL_INTERVAL_SECONDS": str(TICK),
    "LEASE_SECONDS": "3",
    "CALCOM_TIMEOUT_SECONDS": "1",
    "CALLBACK_RETRY_HOURS": "24",
}


@pytest.mark.timeout(120)
def test_one_account_is_backed_off_as_a_whole_during_a_calcom_outage(drill_database: str, figures: dict[str, Any]) -> None:
    key = f"{API_KEY}-outage"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = web_env(drill_database, port, **SETTINGS)
    with TimedFake(key, then=503) as fake, services(("web", env, "web")) as (web,):
        wait_healthy(base)
        put_account(base, "salon-1", calcom_api_key=key, calcom_api_base=fake.base)
        with httpx.Client(base_url=base, timeout=10) as http:
            for i in range(ROWS):
                at = T + timedelta(hours=i)
                fake.fake.add_booking(key, uid=f"bk-{i}", start=at, end=at + timedelta(minutes=30), attendees=["kunde@example.com"])
                phases = [
                    {
                        "key": "A",
                        "start": at.isoformat(),
                        "end": (at + timedelta(minutes=30)).isoformat(),
                        "attendee_email": "kunde@example.com",
                    }
                ]
                assert (
                    http.post(
                        "/api/verifications", json={"account": "salon-1", "appointment_id": f"a{i}", "phases": phases}, headers=AUTH
                    ).status_code
                    == 201
                )
        with services(("poll", env, "poller")) as (poller,):
            wait_until(lambda: fake.calls, 30, "the first query")
            first = fake.times()[0]
            time.sleep(max(0.0, first + OUTAGE - time.monotonic()))  # the outage's length, not a wait for an event
            fake.then = "ok"
            recovered = time.monotonic()
            during = [t for t in fake.times() if t < recovered]
            # The first tick after the outage that reached verdicts (the poller logs each tick).
            first_good = wait_until(lambda: _first_tick_with_verdicts(poller.output()), 60, "a tick with verdicts after the outage")
            verified = query(drill_database, "SELECT COUNT(*) AS n FROM verifications WHERE status = 'verified'")[0]["n"]
            assert poller.alive()
    figures.update(
        pending_verifications=ROWS,
        outage_s=OUTAGE,
        ticks_during_outage=int(OUTAGE / TICK),
        queries_during_outage=len(during),
        first_good_tick=f"{first_good['due']} due, {first_good['verdicts']} verified by its query",
        verified_when_measured=verified,
        per_account_backoff_would_make=f"about {int(math.log2(OUTAGE / 0.5)) + 1} queries during the outage, then one for all {ROWS}",
    )
    # With one backoff per account (2 s, 4 s, 8 s, … with jitter): a handful of queries in the
    # outage, and the first good query verifies all the verifications at once.
    assert len(during) <= 8, figures
    assert first_good["verdicts"] == ROWS, figures


def _first_tick_with_verdicts(log: str) -> dict[str, Any] | None:
    for line in log.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == "poll_tick" and entry.get("verdicts"):
            return entry
    return None
