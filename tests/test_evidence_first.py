"""Evidence is stored before it is judged: a failure to decide never loses a webhook, a check or a record."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from service.app import settle as verdicts
from service.store.connector import Database, sql
from service.testing.fakecalcom import FakeCalcom
from service.workers.poller import Poller

from .helpers import AUTH, FakeClock, booking_event, create_account, failure, phase, post_webhook, record
from .test_poller import CALCOM, CHECKS, booked, calcom_http, fake, poller, run_schedule  # noqa: F401 (fixtures)

T = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


class Broken:
    """Stands in for the planner: raises while `on`, then behaves (a bug fixed, a glitch passed)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.on = True
        self.calls = 0
        real = verdicts.decide

        def decide(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.on:
                raise RuntimeError("matching bug")
            return real(*args, **kwargs)

        monkeypatch.setattr(verdicts, "decide", decide)


async def show(client: httpx.AsyncClient, verification_id: str) -> dict:
    return (await client.get(f"/api/verifications/{verification_id}", headers=AUTH)).json()


async def test_a_webhook_is_stored_and_answered_even_when_matching_it_raises(
    client, db: Database, fake: FakeCalcom, poller: Poller, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    await create_account(client, calcom_api_base=CALCOM)
    start = clock()
    pending = (await record(client, failure("762", [phase("A", T)]))).json()
    broken = Broken(monkeypatch)
    response = await post_webhook(client, booking_event(uid="late-evidence", start=T))
    assert response.status_code == 200 and broken.calls == 1
    async with db.read() as tx:
        events = await tx.fetch_val(sql("SELECT COUNT(*) FROM webhook_events"))
        seen = await tx.fetch_val(sql("SELECT COUNT(*) FROM booking_observations WHERE uid = 'late-evidence'"))
    assert (events, seen) == (1, 1)
    assert (await show(client, pending["id"]))["status"] == "pending"
    # The next check decides from what was stored, even though Cal.com itself does not answer.
    broken.on = False
    fake.fail_next(1, 500)
    clock.now = start + timedelta(seconds=CHECKS[0])
    await poller.tick(clock())
    verified = await show(client, pending["id"])
    assert verified["status"] == "verified" and verified["phases"][0]["booking"]["uid"] == "late-evidence"
    assert (await client.get("/status")).json()["matching"]["settle_failed"] == 1


async def test_a_failing_decision_keeps_the_check_and_still_ends_at_the_deadline(
    client, fake: FakeCalcom, poller: Poller, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    await create_account(client, calcom_api_base=CALCOM)
    start = clock()
    pending = (await record(client, failure("762", [phase("A", T)]))).json()
    booked(fake, uid="theirs", start=T)
    Broken(monkeypatch)
    clock.now = start + timedelta(seconds=CHECKS[0])
    await poller.tick(clock())
    checked = await show(client, pending["id"])
    assert checked["status"] == "pending" and checked["checks"] == 1  # the check is recorded
    await run_schedule(poller, clock, start)
    final = await show(client, pending["id"])
    assert final["status"] == "manual_review" and final["review_reason"] == "ambiguous_match"
    assert final["checks"] == len(CHECKS)


async def test_a_failure_is_recorded_even_when_matching_it_raises(
    client, fake: FakeCalcom, poller: Poller, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    await create_account(client, calcom_api_base=CALCOM)
    start = clock()
    await post_webhook(client, booking_event(uid="early", start=T))
    broken = Broken(monkeypatch)
    response = await record(client, failure("762", [phase("A", T)]))
    assert response.status_code == 201 and response.json()["status"] == "pending"
    broken.on = False
    fake.fail_next(1, 500)
    clock.now = start + timedelta(seconds=CHECKS[0])
    await poller.tick(clock())
    assert (await show(client, response.json()["id"]))["status"] == "verified"
