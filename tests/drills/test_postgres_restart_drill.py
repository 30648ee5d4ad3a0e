"""Drill 1: PostgreSQL stopped (`pg_ctl stop -m fast`) and restarted under webhook load.

SPEC §9 "DB down during a webhook → 503, nothing half-written"; §8 "a webhook answered 200 is on
disk"; §2 "no lost work when a process is killed" (here the database, not the process, goes away).
The web and poller processes are never restarted: they must recover by themselves.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from ..helpers import API_KEY, CALLBACK_SECRET, booking_event, signed
from ..processes import fake_calcom, free_port, wait_until
from .support import AUTH, PrivateCluster, callback_receiver, percentile, put_account, query, secrets_in, services, wait_healthy, web_env

T = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
RATE = 80  # webhooks per second
DURATION = 20.0  # seconds of load
STOP_AT = 6.0  # seconds into the load
DOWN_FOR = 3.0  # seconds the database stays stopped (the drill's parameter, not a wait for an event)
MAX_LATENCY = 5.0  # "no hangs longer than a few seconds"


@dataclass
class Answer:
    kind: str
    key: str
    sent_at: float  # seconds since the load started
    status: int | str
    latency: float


async def _send(http: httpx.AsyncClient, kind: str, key: str, start: float, method: str, url: str, **kwargs: Any) -> Answer:
    sent = time.monotonic()
    try:
        response = await http.request(method, url, **kwargs)
        status: int | str = response.status_code
    except httpx.HTTPError as exc:
        status = type(exc).__name__
    return Answer(kind, key, sent - start, status, time.monotonic() - sent)


async def _probe_readyz(http: httpx.AsyncClient, start: float, marks: dict[str, float], done: asyncio.Event) -> None:
    """/readyz every 100 ms: when it first fails, and when it is 200 again after the restart."""
    while not done.is_set():
        try:
            ready = (await http.get("/readyz", timeout=5)).status_code == 200
        except httpx.HTTPError:
            ready = False
        now = time.monotonic() - start
        if not ready and "readyz_down" not in marks:
            marks["readyz_down"] = now
        if ready and "restarted" in marks and "readyz_up" not in marks:
            marks["readyz_up"] = now
        await asyncio.sleep(0.1)


async def _outage(cluster: PrivateCluster, start: float, marks: dict[str, float]) -> None:
    await asyncio.sleep(max(0.0, start + STOP_AT - time.monotonic()))
    marks["stop_requested"] = time.monotonic() - start
    await asyncio.to_thread(cluster.stop, "fast")
    marks["stopped"] = time.monotonic() - start
    await asyncio.sleep(DOWN_FOR)
    await asyncio.to_thread(cluster.start)
    marks["restarted"] = time.monotonic() - start


def _webhook(uid: str, minutes: int) -> Any:
    return signed(booking_event(uid=uid, start=T + timedelta(minutes=minutes)))


def _summary(answers: list[Answer], marks: dict[str, float]) -> dict[str, Any]:
    statuses: dict[str, int] = {}
    for a in answers:
        statuses[str(a.status)] = statuses.get(str(a.status), 0) + 1
    latencies = [a.latency for a in answers]
    after = [a.sent_at for a in answers if a.status == 200 and a.sent_at > marks.get("restarted", 1e9)]
    refused = [a.sent_at for a in answers if a.status == 503]
    return {
        "sent": len(answers),
        "answers": statuses,
        "latency_max_s": round(max(latencies), 3),
        "latency_p99_s": round(percentile(latencies, 99), 3),
        "outage_s": f"stop requested at {marks.get('stop_requested', 0):.1f} s, down at {marks.get('stopped', 0):.1f} s, "
        f"up again at {marks.get('restarted', 0):.1f} s",
        "first_200_after_restart_s": round(min(after) - marks["restarted"], 3) if after else None,
        "503s_sent_between_s": f"{min(refused):.2f} and {max(refused):.2f}" if refused else None,
        "readyz_200_after_restart_s": round(marks["readyz_up"] - marks["restarted"], 3) if "readyz_up" in marks else None,
    }


def _check_answers(answers: list[Answer], marks: dict[str, float], figures: dict[str, Any], logs: str) -> None:
    unexpected = [a for a in answers if a.status not in (200, 201, 503)]
    assert not unexpected, f"answers other than 2xx/503: {unexpected[:5]}\n{logs}"
    slow = [a for a in answers if a.latency > MAX_LATENCY]
    assert not slow, f"requests hung longer than {MAX_LATENCY} s: {slow[:5]}"
    assert any(a.status == 503 for a in answers), f"the outage never showed: {figures}"
    assert figures["first_200_after_restart_s"] is not None, f"no 200 after the restart: {figures}"
    # 503 only while the database is away: none before the stop, none a few seconds after the restart.
    refused = [a.sent_at for a in answers if a.status == 503]
    assert "readyz_down" in marks and figures["readyz_200_after_restart_s"] is not None, f"/readyz did not follow the outage: {marks}"
    assert refused and min(refused) >= marks["stop_requested"] - 0.5 and max(refused) <= marks["restarted"] + 3.0, figures


@pytest.mark.timeout(240)
def test_webhooks_answered_200_survive_a_postgres_restart_and_the_rest_get_503(
    private_cluster: PrivateCluster, drill_database: str, figures: dict[str, Any]
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with services(("web", web_env(drill_database, port), "web")) as (web,):
        wait_healthy(base)
        put_account(base, "salon-1")
        pid = web.pid

        async def load() -> tuple[list[Answer], dict[str, float], float]:
            marks: dict[str, float] = {}
            limits = httpx.Limits(max_connections=400, max_keepalive_connections=100)
            async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as http:
                start = time.monotonic()
                outage = asyncio.create_task(_outage(private_cluster, start, marks))
                done = asyncio.Event()
                probe = asyncio.create_task(_probe_readyz(http, start, marks, done))
                tasks = []
                for i in range(int(RATE * DURATION)):
                    await asyncio.sleep(max(0.0, start + i / RATE - time.monotonic()))  # the load's pace
                    request = _webhook(f"load-{i}", i)
                    tasks.append(
                        asyncio.create_task(
                            _send(
                                http,
                                "webhook",
                                f"load-{i}",
                                start,
                                "POST",
                                "/webhooks/calcom/salon-1",
                                content=request.body,
                                headers=request.headers,
                            )
                        )
                    )
                answers = list(await asyncio.gather(*tasks))
                await outage
                ready_since = time.monotonic()
                while "readyz_up" not in marks:
                    assert time.monotonic() - ready_since < 30, "/readyz did not come back within 30 s"
                    await asyncio.sleep(0.1)
                done.set()
                await probe
                # After the restart, without restarting the web process: every webhook is a 200 again.
                for j in range(20):
                    request = _webhook(f"after-{j}", 100_000 + j)
                    answers.append(
                        await _send(
                            http,
                            "after",
                            f"after-{j}",
                            start,
                            "POST",
                            "/webhooks/calcom/salon-1",
                            content=request.body,
                            headers=request.headers,
                        )
                    )
            return answers, marks

        answers, marks = asyncio.run(load())
        assert web.alive() and web.pid == pid, "the web process died or was replaced\n" + web.tail()
        logs = web.tail()
        log_text = web.output()

    figures.update(_summary(answers, marks))
    stored = {r["booking_uid"] for r in query(drill_database, "SELECT booking_uid FROM webhook_events")}
    observed = {r["uid"] for r in query(drill_database, "SELECT uid FROM booking_observations")}
    ok = {a.key for a in answers if a.status == 200}
    refused = {a.key for a in answers if a.status == 503}
    figures["answered_200"] = len(ok)
    figures["answered_200_and_stored"] = len(ok & stored)
    figures["answered_503_but_stored_anyway"] = len(refused & stored)
    figures["web_log_lines_about_the_outage"] = sum(
        log_text.count(e) for e in ("notify_listen_lost", "notify_listen_failed", "database_unavailable")
    )

    _check_answers(answers, marks, figures, logs)
    assert all(a.status == 200 for a in answers if a.kind == "after"), f"not recovered: {figures}"
    assert ok <= stored, f"answered 200 but not stored: {sorted(ok - stored)[:10]} ({figures})"
    # Nothing half-written: every stored event has its observation and vice versa.
    assert stored == observed, f"events without observations: {sorted(stored ^ observed)[:10]}"
    assert not secrets_in(log_text)


FAST = {
    "SETTLE_SECONDS": "0",
    "CHECK_SCHEDULE": "1,2",
    "POLL_INTERVAL_SECONDS": "0.2",
    "LEASE_SECONDS": "3",
    "CALLBACK_RETRY_HOURS": "24",
    "CALLBACK_TIMEOUT_SECONDS": "2",
    "CALCOM_TIMEOUT_SECONDS": "5",
}
INTAKES_PER_SECOND = 10


def _intake(appointment: str, start: datetime) -> dict[str, Any]:
    return {
        "account": "salon-1",
        "appointment_id": appointment,
        "service": "Herrenhaarschnitt",
        "sync_error": "Cal.com HTTP 500",
        "phases": [
            {
                "key": "A",
                "start": start.isoformat(),
                "end": (start + timedelta(minutes=30)).isoformat(),
                "attendee_email": "kunde@example.com",
            }
        ],
    }


@pytest.mark.timeout(240)
def test_poller_and_web_ride_out_a_postgres_restart_and_finish_their_work(
    private_cluster: PrivateCluster, drill_database: str, figures: dict[str, Any]
) -> None:
    """Failures recorded continuously (a third verified by webhook, a third by poll, a third in
    neither) while the database is stopped for 3 s: every recorded verification reaches its
    expected verdict and its callback, with the same web and poller processes."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = web_env(drill_database, port, **FAST)
    with fake_calcom(API_KEY) as (calcom, control), callback_receiver(CALLBACK_SECRET) as (receiver, hook):
        control.post("/_fake/delay", json={"seconds": 0.2}).raise_for_status()  # a tick is often in flight
        with services(("web", env, "web"), ("poll", env, "poller")) as (web, poller):
            wait_healthy(base)
            put_account(base, "salon-1", calcom_api_base=calcom, callback_url=hook, callback_secret=CALLBACK_SECRET)
            pids = (web.pid, poller.pid)

            async def stream() -> tuple[list[Answer], dict[str, float], dict[str, str]]:
                marks: dict[str, float] = {}
                kinds: dict[str, str] = {}
                async with httpx.AsyncClient(base_url=base, timeout=30) as http, httpx.AsyncClient(base_url=calcom, timeout=10) as fake:
                    start = time.monotonic()
                    outage = asyncio.create_task(_outage(private_cluster, start, marks))
                    done = asyncio.Event()
                    probe = asyncio.create_task(_probe_readyz(http, start, marks, done))

                    async def one(i: int) -> list[Answer]:
                        appointment, at = f"a{i}", T + timedelta(hours=i)
                        kind = ("webhook", "poll", "none")[i % 3]
                        kinds[appointment] = kind
                        answers = []
                        if kind == "poll":
                            booking = {
                                "api_key": API_KEY,
                                "uid": f"bk-{i}",
                                "start": at.isoformat(),
                                "end": (at + timedelta(minutes=30)).isoformat(),
                                "attendees": ["kunde@example.com"],
                            }
                            (await fake.post("/_fake/bookings", json=booking)).raise_for_status()
                        if kind == "webhook":
                            request = _webhook(f"bk-{i}", i * 60)
                            answers.append(
                                await _send(
                                    http,
                                    "webhook",
                                    f"bk-{i}",
                                    start,
                                    "POST",
                                    "/webhooks/calcom/salon-1",
                                    content=request.body,
                                    headers=request.headers,
                                )
                            )
                        answers.append(
                            await _send(
                                http,
                                "intake",
                                appointment,
                                start,
                                "POST",
                                "/api/verifications",
                                json=_intake(appointment, at),
                                headers=AUTH,
                            )
                        )
                        return answers

                    tasks = []
                    for i in range(int(INTAKES_PER_SECOND * DURATION)):
                        await asyncio.sleep(max(0.0, start + i / INTAKES_PER_SECOND - time.monotonic()))
                        tasks.append(asyncio.create_task(one(i)))
                    answers = [a for group in await asyncio.gather(*tasks) for a in group]
                    await outage
                    waited = time.monotonic()
                    while "readyz_up" not in marks and time.monotonic() - waited < 30:
                        await asyncio.sleep(0.1)
                    done.set()
                    await probe
                return answers, marks, kinds

            answers, marks, kinds = asyncio.run(stream())
            figures.update(_summary(answers, marks))
            recorded = {a.key for a in answers if a.kind == "intake" and a.status in (200, 201)}

            def settled() -> list[dict[str, Any]] | None:
                rows = query(drill_database, "SELECT appointment_id, status, review_reason, resolved_via, checks FROM verifications")
                return rows if rows and all(r["status"] != "pending" for r in rows) else None

            began = time.monotonic()
            rows = wait_until(settled, 60, "every recorded verification to reach a verdict", interval=0.5)
            figures["verdicts_all_in_s_after_load"] = round(time.monotonic() - began, 1)
            outbox = query(drill_database, "SELECT id, verification_seq, state FROM outbox")
            wait_until(lambda: set(receiver.ids()) >= {o["id"] for o in outbox}, 60, "every verdict's callback to arrive", interval=0.3)
            assert web.alive() and poller.alive() and (web.pid, poller.pid) == pids, web.tail() + poller.tail()
            poller_log, web_log = poller.output(), web.output()
            diagnostics = web.tail() + "\n" + poller.tail()

    stored = {r["booking_uid"] for r in query(drill_database, "SELECT booking_uid FROM webhook_events")}
    figures["recorded_201"] = len(recorded)
    figures["verifications"] = len(rows)
    figures["poller_ticks_failed_during_outage"] = poller_log.count("poll_tick_failed") + poller_log.count("poll_failed")
    figures["callbacks_delivered"] = len(set(receiver.ids()))
    _check_answers(answers, marks, figures, diagnostics)
    assert {a.key for a in answers if a.kind == "webhook" and a.status == 200} <= stored
    by_appointment = {r["appointment_id"]: r for r in rows}
    assert recorded <= set(by_appointment), f"recorded (201) but missing: {sorted(recorded - set(by_appointment))[:10]}"
    wrong = []
    for appointment, row in by_appointment.items():
        i = int(appointment[1:])
        kind = kinds[appointment]
        if kind == "poll" or (kind == "webhook" and f"bk-{i}" in stored):
            expected = ("verified", None, "webhook" if kind == "webhook" else "poll")
        else:
            expected = ("manual_review", "no_booking_found", "system")
        if (row["status"], row["review_reason"], row["resolved_via"]) != expected:
            wrong.append((appointment, kind, row, expected))
    assert not wrong, f"{len(wrong)} unexpected verdicts, e.g. {wrong[:5]}"
    per_verification: dict[int, int] = {}
    for o in outbox:
        per_verification[o["verification_seq"]] = per_verification.get(o["verification_seq"], 0) + 1
    assert len(per_verification) == len(rows) and set(per_verification.values()) == {1}, "not exactly one verdict event each"
    assert not secrets_in(poller_log + web_log)
