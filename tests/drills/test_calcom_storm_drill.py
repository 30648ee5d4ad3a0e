"""Drill 4: Cal.com 429 storms, 5xx and timeouts, against a real poller process.

Three accounts, each with its own API key on its own fake Cal.com, polled at once by one poller
(CHECK_SCHEDULE=30,60: the deadline is 90 s after recording, CALCOM_TIMEOUT_SECONDS=1):

* `storm` — the first request gets a 429, then Cal.com is fine: the key is left alone for 60 s
  (Cal.com blocks a key 60 s and sends no Retry-After), then one query verifies everything.
* `flaky` — two requests too slow (3 s > the 1 s timeout), then 500, 502, 503, then fine: retried
  with backoff and jitter (far fewer calls than ticks), verified before the deadline.
* `down` — a 429, then 503 for ever: the key is left alone 60 s, then retried with backoff, and at the
  deadline the verdict is `calcom_unavailable` — never `no_booking_found`, although the bookings exist.

SPEC §6 (rate limit, backoff, unknown is never "no booking", the deadline does not move), §9 row
"Cal.com API 5xx / timeout / 429 / 401".
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from ..helpers import API_KEY
from ..processes import free_port, wait_until
from .support import AUTH, TimedFake, put_account, query, secrets_in, services, wait_healthy, web_env

T = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
ROWS = 5  # pending verifications per account
TICK = 0.2
SETTINGS = {
    "SETTLE_SECONDS": "0",
    "CHECK_SCHEDULE": "30,60",
    "POLL_INTERVAL_SECONDS": str(TICK),
    "LEASE_SECONDS": "3",
    "CALCOM_TIMEOUT_SECONDS": "1",
    "CALLBACK_RETRY_HOURS": "24",
}
DEADLINE = 90.0
BLOCK = 60.0  # Cal.com's block after a 429


def _gaps(times: list[float]) -> list[float]:
    return [round(b - a, 2) for a, b in zip(times, times[1:])]


@pytest.mark.timeout(200)
def test_poller_paces_itself_through_429_5xx_and_timeouts_and_never_calls_unknown_no_booking(
    drill_database: str, figures: dict[str, Any]
) -> None:
    keys = {"storm": f"{API_KEY}-storm", "flaky": f"{API_KEY}-flaky", "down": f"{API_KEY}-down"}
    fakes = {
        "storm": TimedFake(keys["storm"], script=[429]),
        "flaky": TimedFake(keys["flaky"], script=["slow", "slow", 500, 502, 503]),
        "down": TimedFake(keys["down"], script=[429], then=503),
    }
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = web_env(drill_database, port, **SETTINGS)
    with fakes["storm"], fakes["flaky"], fakes["down"], services(("web", env, "web"), ("poll", env, "poller")) as (web, poller):
        wait_healthy(base)
        with httpx.Client(base_url=base, timeout=10) as http:
            for name, fake in fakes.items():
                put_account(base, name, calcom_api_key=keys[name], calcom_api_base=fake.base)
                for i in range(ROWS):
                    at = T + timedelta(hours=i)
                    fake.fake.add_booking(
                        keys[name], uid=f"{name}-bk-{i}", start=at, end=at + timedelta(minutes=30), attendees=["kunde@example.com"]
                    )
                    phases = [
                        {
                            "key": "A",
                            "start": at.isoformat(),
                            "end": (at + timedelta(minutes=30)).isoformat(),
                            "attendee_email": "kunde@example.com",
                        }
                    ]
                    response = http.post(
                        "/api/verifications", json={"account": name, "appointment_id": f"{name}-{i}", "phases": phases}, headers=AUTH
                    )
                    assert response.status_code == 201, response.text

        def settled() -> list[dict[str, Any]] | None:
            rows = query(
                drill_database,
                "SELECT account, status, review_reason, resolved_via, checks, complete_checks, created_at, resolved_at FROM verifications",
            )
            return rows if all(r["status"] != "pending" for r in rows) else None

        rows = wait_until(settled, DEADLINE + 40, "every verification to reach a verdict", interval=0.5)
        assert poller.alive(), poller.tail()
        logs = web.output() + poller.output()

    calls = {name: fake.times() for name, fake in fakes.items()}
    answers = {name: [a for _, a in fake.calls] for name, fake in fakes.items()}
    verdicts = {name: Counter((r["status"], r["review_reason"]) for r in rows if r["account"] == name) for name in fakes}
    checks = {name: sorted(Counter(r["checks"] for r in rows if r["account"] == name).items()) for name in fakes}
    start = min(t for times in calls.values() for t in times)
    for name in fakes:
        figures[f"{name}_calls"] = len(calls[name])
        figures[f"{name}_answers"] = [str(a) for a in answers[name]]
        figures[f"{name}_call_times_s"] = [round(t - start, 1) for t in calls[name]]
        figures[f"{name}_verdicts"] = {f"{s}/{r}": n for (s, r), n in verdicts[name].items()}
        figures[f"{name}_checks"] = checks[name]
    figures["poller_ticks_in_the_drill"] = int((max(max(c) for c in calls.values()) - start) / TICK)

    # storm: one 429, then nothing for Cal.com's 60 s block, then one query verifies every verification.
    storm = calls["storm"]
    assert answers["storm"][0] == 429 and len(storm) >= 2
    figures["storm_pause_after_429_s"] = round(storm[1] - storm[0], 1)
    assert storm[1] - storm[0] >= BLOCK, f"called again {storm[1] - storm[0]:.1f} s after a 429"
    assert len(storm) <= 1 + ROWS, f"{len(storm)} calls"
    assert verdicts["storm"] == {("verified", None): ROWS}

    # flaky: the scripted failures, retried with backoff; recovery well before the deadline is a verdict.
    flaky = calls["flaky"]
    failing = len(fakes["flaky"].script)
    window = flaky[failing] - flaky[0]  # from the first failure to the first good answer
    figures["flaky_failure_window_s"] = round(window, 1)
    figures["flaky_ticks_in_failure_window"] = int(window / TICK)
    figures["flaky_gaps_s"] = _gaps(flaky)
    assert verdicts["flaky"] == {("verified", None): ROWS}, verdicts["flaky"]
    # Never two queries of one account in one tick; every scripted failure was retried, and once
    # Cal.com answers, each verification needs at most one more (complete) query.
    assert min(_gaps(flaky)) >= TICK * 0.75, _gaps(flaky)
    assert len(flaky) <= failing + ROWS
    # Pacing is per API key: the storm key's 60 s pause did not stop the flaky key's retries.
    assert any(storm[0] < t < storm[1] for t in flaky)

    # down: the 429 pause, then 503 with backoff until the deadline; the outcome is unknown, never "no booking".
    down = calls["down"]
    assert answers["down"][0] == 429 and down[1] - down[0] >= BLOCK, _gaps(down)
    after_block = [t for t in down[1:]]
    ticks_after_block = (max(down) - down[1]) / TICK + 1
    figures["down_calls_after_block"] = len(after_block)
    figures["down_ticks_after_block"] = int(ticks_after_block)
    figures["down_gaps_s"] = _gaps(down)
    assert verdicts["down"] == {("manual_review", "calcom_unavailable"): ROWS}, verdicts["down"]
    assert all(r["complete_checks"] == 0 for r in rows if r["account"] == "down")
    # The deadline did not move: verdicts within a few ticks of created_at + 90 s.
    late = [(r["resolved_at"] - r["created_at"]).total_seconds() for r in rows if r["account"] == "down"]
    figures["down_verdict_after_s"] = [round(x, 1) for x in late]
    assert all(DEADLINE <= x <= DEADLINE + 5 for x in late), late
    # Backoff with jitter: far fewer calls than one per tick (each of the ROWS verifications backs off
    # on its own, so the bound is per verification: at most ~log2(30 s / 0.5 s) + 1 = 7 retries each).
    assert len(after_block) <= ROWS * 7 + 1 and len(after_block) < ticks_after_block / 3, figures
    assert not secrets_in(logs)
