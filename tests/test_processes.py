"""The real processes: pollers sharing work, killed mid-tick, stopped by SIGTERM."""

from __future__ import annotations

import signal
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from service.app.intake import Intake
from service.app.notify import Notifier
from service.clock import system_clock
from service.core.models import PhaseIn, VerificationIn
from service.settings import Settings
from service.store.connector import Database, sql
from service.store.queries import accounts as account_store

from .helpers import API_KEY, WEBHOOK_SECRET
from .processes import fake_calcom, free_port, service_env, started, wait_until

pytestmark = pytest.mark.slow
FAST = {"SETTLE_SECONDS": "0", "CHECK_SCHEDULE": "1,1", "POLL_INTERVAL_SECONDS": "0.2", "LEASE_SECONDS": "3"}
T = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


async def prepare(database_url: str, calcom_base: str, control: httpx.Client, n: int) -> list[str]:
    """An account, n failures recorded now, and (in the fake Cal.com) the n bookings behind them."""
    settings = Settings(_env_file=None, database_url=database_url, settle_seconds=0, check_schedule=(1, 1))
    db = Database(database_url)
    await db.connect()
    try:
        async with db.transaction() as tx:
            values = dict(
                calcom_api_key=API_KEY,
                webhook_secret=WEBHOOK_SECRET,
                calcom_api_base=calcom_base,
                callback_url=None,
                callback_secret=None,
                match_tolerance_seconds=300,
                enabled=True,
            )
            await account_store.upsert(tx, "salon-1", values, system_clock())
        intake = Intake(db, settings, Notifier(db))
        ids = []
        for i in range(n):
            start = T + timedelta(minutes=20 * i)
            control.post(
                "/_fake/bookings",
                json={
                    "api_key": API_KEY,
                    "uid": f"bk-{i}",
                    "start": start.isoformat(),
                    "end": (start + timedelta(minutes=15)).isoformat(),
                    "attendees": [f"k{i}@example.com"],
                },
            ).raise_for_status()
            request = VerificationIn(
                account="salon-1", appointment_id=str(i), phases=[PhaseIn(key="A", start=start, attendee_email=f"k{i}@example.com")]
            )
            ids.append((await intake.record(request, system_clock())).view["id"])
        return ids
    finally:
        await db.disconnect()


async def statuses(database_url: str) -> list[dict]:
    db = Database(database_url)
    await db.connect()
    try:
        async with db.read() as tx:
            return await tx.fetch_all(sql("SELECT id, status, checks, resolved_via FROM verifications ORDER BY seq"))
    finally:
        await db.disconnect()


def run(coro):  # type: ignore[no-untyped-def]
    import asyncio

    return asyncio.run(coro)


@pytest.fixture
def pg_only(database_url: str) -> str:
    if database_url.startswith("sqlite"):
        pytest.skip("scale-out with several pollers is a PostgreSQL mode")
    return database_url


def test_two_pollers_resolve_500_verifications_without_claiming_any_twice(pg_only: str) -> None:
    with fake_calcom(API_KEY) as (base, control):
        ids = run(prepare(pg_only, base, control, 500))
        env = service_env(pg_only, **FAST)
        with started(["poll"], env, "poller-1") as one, started(["poll"], env, "poller-2") as two:
            rows = wait_until(
                lambda: (lambda r: r if all(x["status"] != "pending" for x in r) else None)(run(statuses(pg_only))),
                120,
                "every verification to reach a verdict",
                interval=0.5,
            )
            assert one.popen.poll() is None and two.popen.poll() is None, one.output() + two.output()
        calls = control.get("/_fake/calls").json()["total"]
    assert [r["id"] for r in rows] == ids
    assert {r["status"] for r in rows} == {"verified"}
    assert {r["resolved_via"] for r in rows} == {"poll"}
    assert {r["checks"] for r in rows} == {1}, "a verification was checked by both pollers"
    assert calls <= 20, calls  # a few queries of 2 pages each, not one per verification


def test_poller_killed_mid_tick_is_replaced_after_its_lease(database_url: str) -> None:
    with fake_calcom(API_KEY) as (base, control):
        run(prepare(database_url, base, control, 3))
        control.post("/_fake/delay", json={"seconds": 60}).raise_for_status()
        env = service_env(database_url, **FAST)
        with started(["poll"], env, "doomed") as doomed:
            wait_until(lambda: control.get("/_fake/calls").json()["total"] >= 1, 60, "the poller to be inside its Cal.com call")
            doomed.signal(signal.SIGKILL)
            assert doomed.wait() == -signal.SIGKILL
        assert {r["status"] for r in run(statuses(database_url))} == {"pending"}
        control.post("/_fake/delay", json={"seconds": 0}).raise_for_status()
        with started(["poll"], env, "survivor") as survivor:
            rows = wait_until(
                lambda: (lambda r: r if all(x["status"] == "verified" for x in r) else None)(run(statuses(database_url))),
                60,
                "the survivor to finish the work",
                interval=0.3,
            )
            assert survivor.popen.poll() is None
    assert len(rows) == 3


def test_sigterm_finishes_the_tick_and_exits_zero(database_url: str) -> None:
    with fake_calcom(API_KEY) as (base, control):
        run(prepare(database_url, base, control, 2))
        control.post("/_fake/delay", json={"seconds": 1.5}).raise_for_status()
        env = service_env(database_url, **FAST)
        with started(["poll"], env, "poller") as poller:
            wait_until(lambda: control.get("/_fake/calls").json()["total"] >= 1, 60, "a tick in progress")
            poller.signal(signal.SIGTERM)
            assert poller.wait(30) == 0, poller.output()
            output = poller.output()
    assert "poller_stopped" in output
    # The tick that was running when SIGTERM arrived was finished, not abandoned.
    assert {r["status"] for r in run(statuses(database_url))} == {"verified"}


def test_web_process_serves_and_exits_zero_on_sigterm(database_url: str) -> None:
    port = free_port()
    env = service_env(database_url, PORT=str(port), API_TOKEN="process-test-token-0123456789")
    with started(["web"], env, "web") as web:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            wait_until(lambda: http.get("/healthz").status_code == 200, 30, "the web process to listen")
            assert http.get("/readyz").status_code == 200
            assert http.get("/api/verifications").status_code == 401
        web.signal(signal.SIGTERM)
        assert web.wait(30) == 0, web.output()
