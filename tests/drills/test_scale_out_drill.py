"""Drill 3: the scale-out mode — 2 web + 2 pollers on one PostgreSQL, 1,000 verifications.

Webhooks and polls mixed (booking only via webhook, only in Cal.com, in neither, composites with one
phase each way, partial composites), duplicates (the same body to both web processes, the same
intake twice) and out-of-order events, with a callback receiver counting deliveries by webhook-id.

SPEC §2 (several web/poller processes: no verification resolved twice, no verdict event sent twice
except as a retry with the same webhook-id), §4 webhook semantics (duplicates, createdAt order,
accounts apart), §5 (atomic, exactly-once resolution), §7 (one outbox event per verdict), §4
Operations (/status counts equal the database truth).
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from ..helpers import API_KEY, CALLBACK_SECRET, booking_event, signed
from ..processes import fake_calcom, free_port, wait_until
from .support import AUTH, callback_receiver, put_account, query, secrets_in, services, wait_healthy, web_env

T = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
CREATED = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)  # createdAt of the webhook events
ACCOUNTS = 4
PER_ACCOUNT = 250
SETTINGS = {
    "SETTLE_SECONDS": "1",
    "CHECK_SCHEDULE": "2,4",
    "POLL_INTERVAL_SECONDS": "0.2",
    "LEASE_SECONDS": "3",
    "CALLBACK_RETRY_HOURS": "24",
    "CALLBACK_TIMEOUT_SECONDS": "2",
}
VERIFIED_BY_WEBHOOK = ("verified", None, {"webhook"})
NO_BOOKING = ("manual_review", "no_booking_found", {"system"})
EXPECTED = {
    "webhook": VERIFIED_BY_WEBHOOK,
    "webhook_dup": VERIFIED_BY_WEBHOOK,  # the same body to both web processes
    "webhook_intake_twice": VERIFIED_BY_WEBHOOK,  # the same intake to both web processes
    "poll": ("verified", None, {"poll"}),
    "poll_2": ("verified", None, {"poll"}),
    "neither": NO_BOOKING,
    "composite": ("verified", None, {"poll", "webhook"}),  # A by webhook, B only in Cal.com
    "composite_partial": ("manual_review", "partial_match", {"system"}),  # A by webhook, B nowhere
    "cancel_first": NO_BOOKING,  # CANCELLED (newer) arrives before CREATED (older)
    # CREATED, then a CANCELLED stamped earlier (Cal.com's clocks disagree): a cancellation is final.
    "stale_cancel": NO_BOOKING,
    "late_created": NO_BOOKING,  # CREATED, CANCELLED, then a late older CREATED
}
KINDS = [
    "webhook_dup",
    "webhook_intake_twice",
    "webhook",
    "poll",
    "poll_2",
    "neither",
    "composite",
    "composite_partial",
    None,
    "late_created",
]


@dataclass
class Appointment:
    account: str
    api_key: str
    index: int
    kind: str

    @property
    def id(self) -> str:
        return f"a{self.index}"

    @property
    def start(self) -> datetime:
        return T + timedelta(hours=self.index)

    def uid(self, phase: str = "A") -> str:
        return f"{self.account}-bk-{self.index}-{phase}"

    def intake(self) -> dict[str, Any]:
        s = self.start
        if self.kind.startswith("composite"):
            phases = [
                {"key": "A", "start": s.isoformat(), "end": (s + timedelta(minutes=20)).isoformat(), "attendee_email": "kunde@example.com"},
                {
                    "key": "B",
                    "start": (s + timedelta(minutes=25)).isoformat(),
                    "end": (s + timedelta(minutes=45)).isoformat(),
                    "attendee_email": "kunde@example.com",
                },
                {"key": "X", "start": (s + timedelta(minutes=45)).isoformat(), "staff_required": False},
            ]
        else:
            phases = [
                {"key": "A", "start": s.isoformat(), "end": (s + timedelta(minutes=30)).isoformat(), "attendee_email": "kunde@example.com"}
            ]
        return {"account": self.account, "appointment_id": self.id, "service": "drill", "sync_error": "Cal.com HTTP 400", "phases": phases}

    def event(self, trigger: str, minutes: int) -> Any:
        return signed(
            booking_event(
                trigger,
                uid=self.uid(),
                start=self.start,
                minutes=20 if self.kind.startswith("composite") else 30,
                created_at=CREATED + timedelta(minutes=minutes),
            )
        )


def _plan() -> list[Appointment]:
    plan = []
    for a in range(ACCOUNTS):
        for i in range(PER_ACCOUNT):  # the same start times in every account: accounts must stay apart
            kind = KINDS[i % 10] or ("cancel_first" if (i // 10) % 2 == 0 else "stale_cancel")
            plan.append(Appointment(f"salon-{a}", f"{API_KEY}-{a}", i, kind))
    return plan


def _out_of_order(app: Appointment) -> list[Any]:
    """The webhook sequences sent before the failure is recorded, in the order Cal.com's deliveries arrive."""
    if app.kind == "cancel_first":
        return [app.event("BOOKING_CANCELLED", 2), app.event("BOOKING_CREATED", 1)]
    if app.kind == "stale_cancel":
        return [app.event("BOOKING_CREATED", 2), app.event("BOOKING_CANCELLED", 1)]
    if app.kind == "late_created":
        return [app.event("BOOKING_CREATED", 1), app.event("BOOKING_CANCELLED", 2), app.event("BOOKING_CREATED", 0)]
    return []


class Sender:
    def __init__(self, bases: list[str]) -> None:
        self.clients = [httpx.AsyncClient(base_url=b, timeout=30, limits=httpx.Limits(max_connections=32)) for b in bases]
        self.answers: Counter[str] = Counter()
        self.latencies: list[float] = []

    async def webhook(self, web: int, app: Appointment, request: Any) -> None:
        started = time.monotonic()
        response = await self.clients[web].post(f"/webhooks/calcom/{app.account}", content=request.body, headers=request.headers)
        self.latencies.append(time.monotonic() - started)
        body = response.json()
        self.answers[f"webhook {response.status_code}{' duplicate' if body.get('duplicate') else ''}"] += 1
        assert response.status_code == 200, response.text

    async def intake(self, web: int, app: Appointment) -> None:
        response = await self.clients[web].post("/api/verifications", json=app.intake(), headers=AUTH)
        self.answers[f"intake {response.status_code}"] += 1
        assert response.status_code in (200, 201), response.text

    async def close(self) -> None:
        for client in self.clients:
            await client.aclose()


async def _drive(bases: list[str], plan: list[Appointment], rng: random.Random) -> Sender:
    sender = Sender(bases)
    try:
        # 1. Out-of-order sequences, each in order but alternating between the two web processes.
        async def sequence(app: Appointment) -> None:
            for n, request in enumerate(_out_of_order(app)):
                await sender.webhook((app.index + n) % 2, app, request)

        gate = asyncio.Semaphore(16)

        async def bounded(coroutine: Any) -> None:
            async with gate:
                await coroutine

        await asyncio.gather(*(bounded(sequence(a)) for a in plan if _out_of_order(a)))

        # 2. Intakes, webhooks and duplicates mixed, shuffled within chunks, spread over both web processes.
        def jobs(app: Appointment) -> list[Any]:
            web = app.index % 2
            out = [sender.intake(web, app)]
            if app.kind == "webhook_intake_twice":
                out.append(sender.intake(1 - web, app))
            if app.kind in ("webhook", "webhook_dup", "webhook_intake_twice", "composite", "composite_partial"):
                created = app.event("BOOKING_CREATED", 1)
                out.append(sender.webhook(rng.randrange(2), app, created))
                if app.kind == "webhook_dup":
                    out.append(sender.webhook(1 - web, app, created))
            return out

        rng.shuffle(plan)
        for chunk in range(0, len(plan), 40):
            batch = [job for app in plan[chunk : chunk + 40] for job in jobs(app)]
            rng.shuffle(batch)
            await asyncio.gather(*(bounded(job) for job in batch))
    finally:
        await sender.close()
    return sender


@pytest.mark.timeout(300)
def test_two_web_and_two_pollers_reach_exactly_one_expected_verdict_and_callback_for_1000_verifications(
    drill_database: str, figures: dict[str, Any]
) -> None:
    plan = _plan()
    rng = random.Random(20261201)
    keys = [f"{API_KEY}-{a}" for a in range(ACCOUNTS)]
    ports = [free_port(), free_port()]
    bases = [f"http://127.0.0.1:{p}" for p in ports]
    with fake_calcom(*keys) as (calcom, control), callback_receiver(CALLBACK_SECRET) as (receiver, hook):
        for app in plan:
            if app.kind in ("poll", "poll_2"):
                booking = {
                    "api_key": app.api_key,
                    "uid": app.uid(),
                    "start": app.start.isoformat(),
                    "end": (app.start + timedelta(minutes=30)).isoformat(),
                    "attendees": ["kunde@example.com"],
                }
                control.post("/_fake/bookings", json=booking).raise_for_status()
            if app.kind == "composite":
                b = app.start + timedelta(minutes=25)
                booking = {
                    "api_key": app.api_key,
                    "uid": app.uid("B"),
                    "start": b.isoformat(),
                    "end": (b + timedelta(minutes=20)).isoformat(),
                    "attendees": ["kunde@example.com"],
                }
                control.post("/_fake/bookings", json=booking).raise_for_status()
        specs = [("web", web_env(drill_database, p, **SETTINGS), f"web-{n}") for n, p in enumerate(ports)]
        specs += [("poll", web_env(drill_database, ports[0], **SETTINGS), f"poller-{n}") for n in range(2)]
        with services(*specs) as running:
            for base in bases:
                wait_healthy(base)
            for a, key in enumerate(keys):
                put_account(
                    bases[a % 2],
                    f"salon-{a}",
                    calcom_api_key=key,
                    calcom_api_base=calcom,
                    callback_url=hook,
                    callback_secret=CALLBACK_SECRET,
                )
            started = time.monotonic()
            sender = asyncio.run(_drive(bases, list(plan), rng))
            figures["requests_sent_s"] = round(time.monotonic() - started, 1)

            def settled() -> list[dict[str, Any]] | None:
                rows = query(drill_database, "SELECT status FROM verifications")
                return rows if len(rows) >= len(plan) and all(r["status"] != "pending" for r in rows) else None

            wait_until(settled, 90, "every verification to reach a verdict", interval=0.5)
            figures["all_verdicts_s"] = round(time.monotonic() - started, 1)
            wait_until(
                lambda: {r["state"] for r in query(drill_database, "SELECT DISTINCT state FROM outbox")} == {"delivered"},
                90,
                "every callback to be delivered",
                interval=0.5,
            )
            figures["all_callbacks_s"] = round(time.monotonic() - started, 1)
            with httpx.Client(timeout=30) as http:
                documents = [http.get(base + "/status").json() for base in bases]
                metrics = [http.get(base + "/metrics").text for base in bases]
            assert all(s.alive() for s in running), "\n".join(s.tail() for s in running)
            logs = "".join(s.output() for s in running)
        calcom_calls = control.get("/_fake/calls").json()["total"]

    rows = query(drill_database, "SELECT seq, id, account, appointment_id, status, review_reason, resolved_via FROM verifications")
    phases = query(drill_database, "SELECT verification_seq, key, status, booking_uid, booking_source FROM phases ORDER BY key")
    outbox = query(drill_database, "SELECT id, verification_seq, state, attempts FROM outbox")
    claims = query(drill_database, "SELECT account, booking_uid, verification_seq, phase_key FROM booking_claims")
    deliveries = receiver.snapshot()
    seen = receiver.ids()

    # Every appointment: exactly one verification, with its expected verdict and its own bookings.
    by_key = {(r["account"], r["appointment_id"]): r for r in rows}
    assert len(rows) == len(plan) == len(by_key), f"{len(rows)} verifications for {len(plan)} appointments"
    phases_of: dict[int, dict[str, dict[str, Any]]] = {}
    for p in phases:
        phases_of.setdefault(p["verification_seq"], {})[p["key"]] = p
    wrong = []
    for app in plan:
        row = by_key[(app.account, app.id)]
        status, reason, via = EXPECTED[app.kind]
        booked = {k: p["booking_uid"] for k, p in phases_of[row["seq"]].items() if p["booking_uid"]}
        want = {"composite": {"A": app.uid("A"), "B": app.uid("B")}, "composite_partial": {"A": app.uid("A")}}.get(
            app.kind, {"A": app.uid()} if status == "verified" else {}
        )
        if (row["status"], row["review_reason"]) != (status, reason) or row["resolved_via"] not in via or booked != want:
            wrong.append((app.kind, app.account, app.id, row["status"], row["review_reason"], row["resolved_via"], booked))
    figures["verdicts"] = dict(Counter(f"{r['status']}/{r['review_reason'] or r['resolved_via']}" for r in rows))
    figures["kinds"] = dict(Counter(a.kind for a in plan))
    assert not wrong, f"{len(wrong)} unexpected verdicts, e.g. {wrong[:5]}"
    # A booking is claimed once, by the verification it belongs to.
    assert len({(c["account"], c["booking_uid"]) for c in claims}) == len(claims)
    assert all(c["booking_uid"].startswith(c["account"] + "-") for c in claims)

    # Exactly one verdict event per verification, every one delivered, and only ever under its own webhook-id.
    per = Counter(o["verification_seq"] for o in outbox)
    assert set(per) == {r["seq"] for r in rows} and set(per.values()) == {1}, "not exactly one outbox row per verdict"
    assert {o["state"] for o in outbox} == {"delivered"}
    assert set(seen) == {o["id"] for o in outbox}, "the receiver did not see exactly the outbox's webhook-ids"
    ids_per_verification: dict[str, set[str]] = {}
    for d in deliveries:
        ids_per_verification.setdefault(str(d.verification_id), set()).add(d.webhook_id)
    assert len(ids_per_verification) == len(rows) and all(len(v) == 1 for v in ids_per_verification.values())
    assert all(d.signature_ok for d in deliveries)
    final_in_callback = {d.verification_id: (d.status, d.review_reason) for d in deliveries}
    assert all(final_in_callback[r["id"]] == (r["status"], r["review_reason"]) for r in rows), "a callback carried another verdict"

    # /status on both web processes equals the database truth: nothing double-counted.
    truth_status = Counter(r["status"] for r in rows)
    truth_via = Counter(r["resolved_via"] for r in rows)
    truth_reason = Counter(r["review_reason"] for r in rows if r["status"] == "manual_review")
    for document in documents:
        by_status = document["verifications"]["by_status"]
        assert sum(by_status.values()) == len(plan) == document["verifications"]["total"]
        assert {k: v for k, v in by_status.items() if v} == dict(truth_status)
        assert {k: v for k, v in document["resolved_via"].items() if v} == dict(truth_via)
        assert sum(document["resolved_via"].values()) == len(rows)
        assert {k: v for k, v in document["verifications"]["by_review_reason"].items() if v} == dict(truth_reason)
        assert document["callbacks"]["delivered"] == len(rows) and document["callbacks"]["backlog"] == 0
        assert document["review_queue"]["size"] == truth_status["manual_review"]
    for text in metrics:
        for status, n in truth_status.items():
            assert re.search(rf'^calcom_verifier_verifications\{{status="{status}"\}} {n}(\.0)?$', text, re.M), status

    figures.update(
        verifications=len(rows),
        requests=dict(sender.answers),
        webhook_latency_max_ms=round(max(sender.latencies) * 1000, 1),
        callback_posts=len(deliveries),
        callback_retries_same_id=len(deliveries) - len(seen),
        outbox_rows=len(outbox),
        claims=len(claims),
        calcom_calls=calcom_calls,
        status_by_status=documents[0]["verifications"]["by_status"],
        status_resolved_via=documents[0]["resolved_via"],
    )
    assert not secrets_in(logs)
