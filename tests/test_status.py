"""/status and /metrics: every figure of a known scenario, on both databases; the pure helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from service.app import status as status_module
from service.core import status as core_status
from service.core.status import age_seconds, alive_bound_seconds, counts, percentile, poller_view, ratio, summarize
from service.store.connector import Database
from service.store.queries import accounts as account_store
from service.store.queries import outbox as outbox_store
from service.store.queries import pollers as poller_store
from service.store.queries import verifications as verification_store
from service.web.routes import status as routes_status

from . import helpers
from .helpers import AUTH, CALLBACK_SECRET, FakeClock, booking_event, create_account, failure, phase, post_webhook, record

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)  # the clock fixture's start
END = T0 + timedelta(hours=26)  # when the scenario is read
DAY0 = datetime(2026, 12, 10, 10, 0, tzinfo=timezone.utc)  # appointments lie days apart: no cross-matching
EMAILS = ("anna@salon.example", "kunde@example.com")


def day(n: int) -> datetime:
    return DAY0 + timedelta(days=n)


@pytest.fixture
async def ops(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """The two routes on their own app sharing the real app's services, and no Authorization header."""
    ops_app = Starlette(routes=routes_status.routes)
    ops_app.state.services = app.state.services
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=ops_app), base_url="http://verifier.test") as http:
        yield http


async def recorded(client: httpx.AsyncClient, appointment: str, start: datetime, *, account: str = "salon-1", status: str) -> str:
    response = await record(client, failure(appointment, phases=[phase("A", start)], account=account))
    assert response.status_code == 201, response.text
    assert response.json()["status"] == status, response.json()
    return str(response.json()["id"])


async def system_verdict(db: Database, verification_id: str, now: datetime, *, status: str, via: str, reason: str | None = None) -> None:
    """What the poller does at a check: a verdict written through the store, guarded by 'pending'."""
    async with db.transaction() as tx:
        row = await verification_store.by_id(tx, verification_id)
        assert row is not None
        assert await verification_store.resolve(
            tx, row["seq"], expected="pending", status=status, now=now, resolved_via=via, review_reason=reason
        )


async def operator_resolves(client: httpx.AsyncClient, verification_id: str, outcome: str) -> None:
    response = await client.post(f"/api/verifications/{verification_id}/resolve", json={"outcome": outcome}, headers=AUTH)
    assert response.status_code == 200, response.text


async def webhook_for(client: httpx.AsyncClient, uid: str, start: datetime) -> None:
    assert (await post_webhook(client, booking_event(uid=uid, start=start))).status_code == 200


async def view(client: httpx.AsyncClient, verification_id: str) -> dict[str, Any]:
    return dict((await client.get(f"/api/verifications/{verification_id}", headers=AUTH)).json())


async def build_scenario(client: httpx.AsyncClient, db: Database, clock: FakeClock) -> None:
    """Ten verifications, four callback events, three pollers, three accounts — read at END."""
    await create_account(client, "salon-1")
    await create_account(
        client, "salon-off", enabled=False, callback_url="https://platform.example/hooks/verification", callback_secret=CALLBACK_SECRET
    )
    await create_account(client, "salon-2")

    # 26 h before END: a webhook and a kill-switch record whose callback is delivered.
    await webhook_for(client, "old-booking", day(9))
    await recorded(client, "d0", day(10), account="salon-off", status="manual_review")
    async with db.transaction() as tx:
        [event] = await outbox_store.claim_due(tx, "test-deliverer", clock(), clock() + timedelta(seconds=60), 10)
        assert await outbox_store.record_attempt(
            tx,
            event["seq"],
            "test-deliverer",
            state="delivered",
            last_status=200,
            last_error=None,
            next_attempt_at=None,
            delivered_at=clock(),
        )

    clock.now = END - timedelta(hours=2)
    await recorded(client, "p0", day(0), status="pending")  # stays pending: 2 h old, past its deadline
    await webhook_for(client, "w1-booking", day(1))
    await recorded(client, "w1", day(1), status="verified")  # webhook first: 0 s
    w2 = await recorded(client, "w2", day(2), status="pending")
    clock.advance(1)
    await webhook_for(client, "w2-booking", day(2))  # 1 s
    w3 = await recorded(client, "w3", day(3), status="pending")
    clock.advance(3)
    await webhook_for(client, "w3-booking", day(3))  # 3 s
    for verification_id in (w2, w3):
        assert (await view(client, verification_id))["resolved_via"] == "webhook"
    p1 = await recorded(client, "p1", day(4), status="pending")
    await system_verdict(db, p1, clock.advance(8), status="verified", via="poll")  # 8 s
    r1 = await recorded(client, "r1", day(5), status="pending")
    await system_verdict(db, r1, clock.advance(762), status="manual_review", via="system", reason="no_booking_found")  # 762 s
    o2 = await recorded(client, "o2", day(6), status="pending")
    await system_verdict(db, o2, clock.advance(900), status="manual_review", via="system", reason="partial_match")  # 900 s
    clock.advance(100)
    await operator_resolves(client, o2, "failed")

    await recorded(client, "d1", day(7), account="salon-off", status="manual_review")
    async with db.transaction() as tx:
        [event] = await outbox_store.claim_due(tx, "test-deliverer", clock(), clock() + timedelta(seconds=60), 10)
        assert await outbox_store.abandon(tx, event["seq"], "test-deliverer", "HTTP 410 Gone")
    d2 = await recorded(client, "d2", day(8), account="salon-off", status="manual_review")
    await operator_resolves(client, d2, "synced")  # its two callback events stay pending
    assert clock() == END - timedelta(hours=2) + timedelta(seconds=1774)

    async with db.transaction() as tx:
        await account_store.set_credentials(tx, "salon-2", "broken", "HTTP 401 from Cal.com", clock())
        await poller_store.heartbeat(tx, "poller-stopped", hostname="worker-3", pid=303, ticks=9, now=END - timedelta(hours=1))
        await poller_store.stopped(tx, "poller-stopped", END - timedelta(seconds=60))
        await poller_store.heartbeat(tx, "poller-stale", hostname="worker-2", pid=202, ticks=40, now=END - timedelta(seconds=600))
        await poller_store.heartbeat(tx, "poller-alive", hostname="worker-1", pid=101, ticks=500, now=END - timedelta(seconds=5))
    clock.now = END


EXPECTED: dict[str, Any] = {
    "ok": False,
    "generated_at": "2026-12-01T11:00:00Z",
    "verifications": {
        "total": 10,
        "by_status": {"pending": 1, "verified": 4, "manual_review": 3, "resolved": 2},
        "by_review_reason": {
            "no_booking_found": 1,
            "partial_match": 0,
            "ambiguous_match": 0,
            "unconfirmed_match": 0,
            "calcom_unavailable": 0,
            "verification_disabled": 2,
        },
        "by_resolution": {"synced": 1, "failed": 1},
    },
    "resolved_via": {"webhook": 3, "poll": 1, "guard": 0, "operator": 2, "system": 3},
    "auto_recovery_rate": 0.4444,  # 4 / 9
    "false_negatives_caught": 5,  # 4 verified + 1 resolved synced
    "false_negative_rate": 0.2,  # 1 / 5
    "review_queue": {"size": 3, "outcome_unknown": 0, "entered_last_24h": 4, "oldest_waiting_age_seconds": 93600.0},
    "oldest_pending_age_seconds": 7200.0,
    "pending_past_deadline": 1,
    "time_to_verdict_seconds": {  # 0, 1, 3, 8, 762, 900 (kill-switch records excluded)
        "count": 6,
        "p50": 3.0,
        "p95": 900.0,
        "p99": 900.0,
        "window": {"last": 10_000, "since": "2026-12-01T09:00:00Z"},
    },
    "pollers": [
        {
            "id": "poller-alive",
            "hostname": "worker-1",
            "pid": 101,
            "started_at": "2026-12-01T10:59:55Z",
            "heartbeat_age_seconds": 5.0,
            "ticks": 500,
            "stopped": False,
            "alive": True,
        },
        {
            "id": "poller-stale",
            "hostname": "worker-2",
            "pid": 202,
            "started_at": "2026-12-01T10:50:00Z",
            "heartbeat_age_seconds": 600.0,
            "ticks": 40,
            "stopped": False,
            "alive": False,
        },
        {
            "id": "poller-stopped",
            "hostname": "worker-3",
            "pid": 303,
            "started_at": "2026-12-01T10:00:00Z",
            "heartbeat_age_seconds": 60.0,
            "ticks": 9,
            "stopped": True,
            "alive": False,
        },
    ],
    "callbacks": {"backlog": 2, "oldest_pending_age_seconds": 5426.0, "delivered": 1, "failed": 1, "failed_recent": 1},
    "accounts": {"total": 3, "disabled": 1, "broken_credentials": 1, "calcom_failing": 0},  # counts only, by default
    "webhooks": {"received_last_24h": 3},
    "duplicate_bookings": {"open": 0},
    "matching": {"matcher_gave_up": 0, "group_too_large": 0, "settle_failed": 0},
    "traffic": {
        "calcom_requests": {"ok": 0, "4xx": 0, "429": 0, "5xx": 0, "timeout": 0, "connection_error": 0},
        "webhook_rejections": {"unknown_account": 0, "too_large": 0, "bad_signature": 0, "bad_payload": 0, "database_unavailable": 0},
        "api_client_errors": {},
        "guard_requests": {},
    },
    "targets": {
        "auto_recovery_rate": {"target": "> 0.9", "value": 0.4444, "met": False},
        "false_negative_rate": {"target": "0", "value": 0.2, "met": False},
        "review_queue_entered_last_24h": {"target": "< 5", "value": 4, "met": True},
    },
}


async def test_status_reports_every_figure_of_a_known_scenario(
    client: httpx.AsyncClient, ops: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    await build_scenario(client, db, clock)
    response = await ops.get("/status")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    problems = body.pop("problems")
    definitions = body.pop("definitions")
    assert body == EXPECTED
    assert problems == [
        "1 pending verification(s) are past their deadline: the poller is not keeping up or not running",
        "Cal.com rejects the API key (401/403) of 1 account(s): the poller cannot check them; "
        'replace the key with PATCH /api/accounts/{account} {"calcom_api_key": …}',
        "1 callback(s) given up (retries exhausted or 410) in the last 49 h: the platform never received those verdicts",
        "2 callback(s) waiting, the oldest for 5426 s: is the platform's callback URL reachable?",
    ]
    assert {"auto_recovery_rate", "false_negatives_caught", "time_to_verdict_seconds", "pollers.alive"} <= set(definitions)


async def test_metrics_parse_and_agree_with_status(
    client: httpx.AsyncClient, ops: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    await build_scenario(client, db, clock)
    status = (await ops.get("/status")).json()
    response = await ops.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = list(text_string_to_metric_families(response.text))
    assert all(f.name.startswith("calcom_verifier_") and f.documentation for f in families)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}

    def value(name: str, **labels: str) -> float:
        return samples[("calcom_verifier_" + name, tuple(sorted(labels.items())))]

    assert value("ok") == 0 and value("problems") == len(status["problems"]) == 4
    for key, n in status["verifications"]["by_status"].items():
        assert value("verifications", status=key) == n
    for key, n in status["verifications"]["by_review_reason"].items():
        assert value("review_queue", reason=key) == n
    for key, n in status["resolved_via"].items():
        assert value("resolved_via", via=key) == n
    for key, n in status["verifications"]["by_resolution"].items():
        assert value("operator_resolutions", resolution=key) == n
    assert value("auto_recovery_ratio") == status["auto_recovery_rate"]
    assert value("false_negatives_caught_total") == status["false_negatives_caught"] == 5
    assert value("false_negative_ratio") == status["false_negative_rate"]
    assert value("review_queue_entered_24h") == status["review_queue"]["entered_last_24h"]
    assert value("review_queue_oldest_age_seconds") == status["review_queue"]["oldest_waiting_age_seconds"]
    assert value("oldest_pending_age_seconds") == status["oldest_pending_age_seconds"]
    assert value("pending_past_deadline") == status["pending_past_deadline"]
    times = status["time_to_verdict_seconds"]
    assert [value("time_to_verdict_seconds", quantile=q) for q in ("0.5", "0.95", "0.99")] == [times["p50"], times["p95"], times["p99"]]
    assert value("time_to_verdict_sample_size") == times["count"]
    for poller in status["pollers"]:
        labels = {"poller": poller["id"], "hostname": poller["hostname"], "pid": str(poller["pid"])}
        assert value("poller_alive", **labels) == int(poller["alive"])
        assert value("poller_heartbeat_age_seconds", **labels) == poller["heartbeat_age_seconds"]
    assert value("pollers_alive") == 1
    callbacks = status["callbacks"]
    assert [value("callbacks", state=s) for s in ("pending", "delivered", "failed")] == [
        callbacks["backlog"],
        callbacks["delivered"],
        callbacks["failed"],
    ]
    assert value("callbacks_failed_recent") == callbacks["failed_recent"]
    assert value("callback_backlog_oldest_age_seconds") == callbacks["oldest_pending_age_seconds"]
    assert value("accounts") == 3 and value("accounts_disabled") == 1
    assert value("accounts_credentials_broken") == 1 and value("accounts_calcom_failing") == 0
    assert not any(s.labels.get("account") for f in families for s in f.samples)  # no account ids by default
    assert value("webhooks_received_24h") == status["webhooks"]["received_last_24h"]


async def test_status_and_metrics_carry_no_secret_and_no_personal_data(
    client: httpx.AsyncClient, ops: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    await build_scenario(client, db, clock)
    for path in ("/status", "/metrics"):
        text = (await ops.get(path)).text
        leaked = [s for s in (*helpers.ALL_SECRETS, *EMAILS, "platform.example", "Cal.com HTTP 400", "HTTP 401 from") if s in text]
        assert not leaked, f"{path} shows {leaked}"
        assert "@" not in text


async def test_operational_endpoints_need_no_token(client: httpx.AsyncClient, ops: httpx.AsyncClient) -> None:
    assert (await client.get("/api/verifications")).status_code == 401  # the API does
    for path in ("/status", "/metrics"):
        assert (await ops.get(path)).status_code == 200


async def test_an_empty_service_is_ok_and_leaves_undefined_figures_out(ops: httpx.AsyncClient) -> None:
    body = (await ops.get("/status")).json()
    assert body["ok"] is True and body["problems"] == []
    assert body["auto_recovery_rate"] is None and body["false_negative_rate"] is None
    assert body["time_to_verdict_seconds"] == {"count": 0, "p50": None, "p95": None, "p99": None, "window": {"last": 10_000, "since": None}}
    assert body["oldest_pending_age_seconds"] is None and body["review_queue"]["oldest_waiting_age_seconds"] is None
    assert body["callbacks"]["oldest_pending_age_seconds"] is None and body["pollers"] == []
    assert body["targets"]["auto_recovery_rate"]["met"] is None
    names = {s.name for f in text_string_to_metric_families((await ops.get("/metrics")).text) for s in f.samples}
    assert "calcom_verifier_auto_recovery_ratio" not in names and "calcom_verifier_time_to_verdict_seconds" not in names
    assert {"calcom_verifier_ok", "calcom_verifier_oldest_pending_age_seconds", "calcom_verifier_time_to_verdict_sample_size"} <= names


async def test_waiting_work_without_a_live_poller_is_a_problem(
    client: httpx.AsyncClient, ops: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    await create_account(client)
    await recorded(client, "762", day(0), status="pending")
    async with db.transaction() as tx:
        await poller_store.heartbeat(tx, "poller-1", hostname="worker-1", pid=1, ticks=1, now=clock())
    clock.advance(30)  # the liveness bound with POLL_INTERVAL_SECONDS=1
    body = (await ops.get("/status")).json()
    assert body["pollers"][0]["alive"] is False
    assert body["problems"] == [
        "no poller is alive (no heartbeat in the last 30 s) while 1 verification(s) and 0 callback(s) wait: start the poller process"
    ]
    async with db.transaction() as tx:
        await poller_store.heartbeat(tx, "poller-1", hostname="worker-1", pid=1, ticks=2, now=clock())
    assert (await ops.get("/status")).json()["ok"] is True


async def test_pending_is_past_deadline_only_after_the_liveness_grace(
    client: httpx.AsyncClient, ops: httpx.AsyncClient, db: Database, clock: FakeClock
) -> None:
    await create_account(client)
    await recorded(client, "762", day(0), status="pending")  # deadline: 2 + 10 + 30 + 120 + 600 = 762 s
    clock.advance(762 + 29)
    async with db.transaction() as tx:
        await poller_store.heartbeat(tx, "poller-1", hostname="worker-1", pid=1, ticks=1, now=clock())
    assert (await ops.get("/status")).json()["pending_past_deadline"] == 0
    clock.advance(2)
    body = (await ops.get("/status")).json()
    assert body["pending_past_deadline"] == 1 and body["ok"] is False


async def test_time_to_verdict_covers_only_the_most_recent_verdicts(
    client: httpx.AsyncClient, ops: httpx.AsyncClient, db: Database, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    await create_account(client)
    for n, seconds in enumerate((100, 1, 2, 4)):
        verification_id = await recorded(client, f"a{n}", day(n), status="pending")
        await system_verdict(db, verification_id, clock.advance(seconds), status="verified", via="poll")
    monkeypatch.setattr(status_module, "VERDICT_SAMPLE", 3)
    monkeypatch.setattr(core_status, "VERDICT_SAMPLE", 3)
    times = (await ops.get("/status")).json()["time_to_verdict_seconds"]
    assert times == {"count": 3, "p50": 2.0, "p95": 4.0, "p99": 4.0, "window": {"last": 3, "since": "2026-11-30T09:01:41Z"}}


# -- pure helpers ------------------------------------------------------------------------------


def test_percentile_is_nearest_rank() -> None:
    hundred = [float(n) for n in range(1, 101)]
    assert [percentile(hundred, q) for q in (50, 95, 99, 100)] == [50.0, 95.0, 99.0, 100.0]
    assert percentile([7.0], 99) == 7.0 and percentile([], 50) is None
    assert percentile([1.0, 2.0], 50) == 1.0 and percentile([1.0, 2.0], 51) == 2.0
    assert summarize([3.0, 1.0, 2.0]) == {"count": 3, "p50": 2.0, "p95": 3.0, "p99": 3.0}


def test_ratios_ages_and_liveness_bound() -> None:
    assert ratio(0, 0) is None and ratio(2, 3) == 0.6667 and ratio(3, 3) == 1.0
    now = datetime(2026, 12, 1, tzinfo=timezone.utc)
    assert age_seconds(now, None) is None
    assert age_seconds(now, now + timedelta(seconds=2)) == 0.0  # another host's clock ahead of ours
    assert age_seconds(now, now - timedelta(milliseconds=1500)) == 1.5
    assert alive_bound_seconds(1) == 30 and alive_bound_seconds(20) == 60


def test_a_stopped_poller_is_not_alive_however_fresh_its_heartbeat() -> None:
    now = datetime(2026, 12, 1, tzinfo=timezone.utc)
    row = {"id": "p", "hostname": "h", "pid": 1, "started_at": now, "heartbeat_at": now, "stopped_at": None, "ticks": 0}
    assert poller_view(row, now, 30)["alive"] is True
    assert poller_view({**row, "stopped_at": now}, now, 30)["alive"] is False
    assert poller_view({**row, "heartbeat_at": now - timedelta(seconds=30)}, now, 30)["alive"] is False


def test_counts_fill_every_key_and_count_reasons_of_the_queue_only() -> None:
    tally = [
        {"status": "manual_review", "review_reason": "ambiguous_match", "resolved_via": "system", "resolution": None, "n": 2},
        {"status": "resolved", "review_reason": "no_booking_found", "resolved_via": "operator", "resolution": "synced", "n": 1},
        {"status": "pending", "review_reason": None, "resolved_via": None, "resolution": None, "n": 5},
    ]
    by = counts(tally)
    assert by["status"] == {"pending": 5, "verified": 0, "manual_review": 2, "resolved": 1}
    assert by["review_reason"]["ambiguous_match"] == 2 and by["review_reason"]["no_booking_found"] == 0
    assert by["resolved_via"] == {"webhook": 0, "poll": 0, "guard": 0, "operator": 1, "system": 2}
    assert by["resolution"] == {"synced": 1, "failed": 0}
