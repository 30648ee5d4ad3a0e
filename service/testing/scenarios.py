"""The first version's three test scenarios, each told against the simulated world."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from service.testing.world import (
    ACCOUNT,
    CALCOM_ANSWER,
    DAY,
    SCHEDULE,
    SETTLE,
    SYNC_ERROR,
    World,
    parse_instant,
    verdict_after,
    verdict_text,
)


@dataclass
class Outcome:
    scenario: str
    appointment_id: str
    expected: str
    got: str
    via: str | None
    verdict_after: str
    calcom_calls: int


def _at(hour: int, minute: int = 0) -> datetime:
    return DAY.replace(hour=hour, minute=minute)


def _phase(key: str, start: datetime, minutes: int, host: str | None, event_type: int | None = None) -> dict[str, Any]:
    phase: dict[str, Any] = {"key": key, "start": start.isoformat(), "end": (start + timedelta(minutes=minutes)).isoformat()}
    if host is None:
        phase["staff_required"] = False
    else:
        phase["host_email"] = host
    if event_type is not None:
        phase["event_type_id"] = event_type
    return phase


def _span(phase: dict[str, Any]) -> str:
    return f"{datetime.fromisoformat(phase['start']):%H:%M}–{datetime.fromisoformat(phase['end']):%H:%M}"


def _verified_lines(world: World, view: dict[str, Any]) -> None:
    for p in view["phases"]:
        if p["booking"]:
            world.say(f"  ✅ Verified phase booking in Cal.com (Phase {p['key']}, Booking {p['booking']['id']})")


async def dauerwelle(world: World) -> Outcome:
    """Scenario 1: Cal.com creates four bookings and answers 400; the webhooks settle it inside the intake call."""
    world.say("━━ 1/3 Dauerwelle — appointment 762: staff phases A–D, plus a processing time without staff ━━")
    host = "anna@salon.example"
    phases = [
        _phase("A", _at(10), 30, host),
        _phase("B", _at(10, 30), 45, host),
        _phase("Einwirkzeit", _at(11, 15), 20, None),
        _phase("C", _at(11, 35), 30, host),
        _phase("D", _at(12, 5), 30, host),
    ]
    calls = world.fake.calls
    for p in phases:
        if p.get("staff_required") is False:
            world.say(f"  phase {p['key']} {_span(p)}: no staff, not a Cal.com booking")
            continue
        envelope = world.create_booking("762", p["key"], parse_instant(p["start"]), parse_instant(p["end"]), host, 101, tag=True)
        status, ms = await world.deliver_webhook(envelope)
        world.say(
            f"  platform → Cal.com   POST /v2/bookings phase {p['key']} {_span(p)}: booking {envelope['payload']['bookingId']} created;"
        )
        world.say(f"    Cal.com → verifier BOOKING_CREATED (signed, inside the create call) → {status} in {ms:.1f} ms")
    world.say(f"  Cal.com → platform   {CALCOM_ANSWER}")
    world.say("  platform             marks the sync failed and records it: POST /api/verifications?wait=5")
    body = {"account": ACCOUNT, "appointment_id": "762", "service": "Dauerwelle", "sync_error": SYNC_ERROR, "phases": phases}
    began = time.perf_counter()
    response = await world.api("POST", "/api/verifications", params={"wait": "5"}, json=body)
    elapsed = (time.perf_counter() - began) * 1000
    view = response.json()
    world.say(f"  verifier → platform  {response.status_code} {view['status']} (resolved_via {view['resolved_via']}) in {elapsed:.1f} ms")
    if view["status"] == "verified":
        _verified_lines(world, view)
        world.say("  ✅ POST-SYNC VERIFICATION SUCCESS: All composite bookings verified")
        world.say(
            f'     the caller hears "booked" while still on the line ({elapsed:.0f} ms; the first version slept 2 s and needed ≥ 2.6 s)'
        )
    seen = len(world.platform.received)
    await world.tick()  # the poller's callback round
    world.report_callbacks(seen)
    return Outcome(
        "Dauerwelle",
        "762",
        "verified",
        verdict_text(view),
        view["resolved_via"],
        f"in the call ({elapsed:.0f} ms)",
        world.fake.calls - calls,
    )


async def herrenhaarschnitt(world: World) -> Outcome:
    """Scenario 2: one booking, the failure recorded first, the webhook lost: the poller finds it."""
    world.say("━━ 2/3 Herrenhaarschnitt — appointment 763: one phase; the webhook is lost ━━")
    world.clock.now += timedelta(minutes=5)
    host = "ben@salon.example"
    phase = _phase("A", _at(13), 30, host, event_type=102)
    calls, requests = world.fake.calls, len(world.fake.requests)
    envelope = world.create_booking("763", "A", parse_instant(phase["start"]), parse_instant(phase["end"]), host, 102, tag=False)
    world.say(f"  platform → Cal.com   POST /v2/bookings {_span(phase)}: booking {envelope['payload']['bookingId']} created")
    world.say("    Cal.com → verifier BOOKING_CREATED ✗ lost (connection reset; Cal.com does not retry webhooks)")
    world.say(f"  Cal.com → platform   {CALCOM_ANSWER}")
    body = {"account": ACCOUNT, "appointment_id": "763", "service": "Herrenhaarschnitt", "sync_error": SYNC_ERROR, "phases": [phase]}
    response = await world.api("POST", "/api/verifications", json=body)
    view = response.json()
    recorded = world.clock()
    world.say(
        f"  platform → verifier  POST /api/verifications → {response.status_code} {view['status']}, first check at {view['next_check_at']}"
    )
    world.clock.now = recorded + timedelta(seconds=1)
    report = await world.tick()
    world.say(f"  t+1 s  poller tick: {report.due} due, {report.calls} Cal.com calls (settle window {SETTLE:g} s)")
    world.clock.now = recorded + timedelta(seconds=SETTLE)
    seen = len(world.platform.received)
    report = await world.tick()
    world.say(f"  t+{SETTLE:g} s  poller tick: {report.due} due, {report.calls} Cal.com call(s), {report.verdicts} verdict(s)")
    for request in list(world.fake.requests)[requests:]:
        params = "&".join(f"{k}={v}" for k, v in request["params"].items())
        world.say(f"    verifier → Cal.com GET /v2/bookings?{params} (cal-api-version {request['api_version']})")
    view = await world.show(view["id"])
    if view["status"] == "verified":
        _verified_lines(world, view)
        world.say(
            f"  ✅ POST-SYNC VERIFICATION SUCCESS: booking verified via {view['resolved_via']}, {verdict_after(view)} after the failure was recorded"
        )
    world.report_callbacks(seen)
    return Outcome(
        "Herrenhaarschnitt", "763", "verified", verdict_text(view), view["resolved_via"], verdict_after(view), world.fake.calls - calls
    )


async def real_failure(world: World) -> Outcome:
    """Scenario 3: nothing was created; every scheduled check finds nothing; the last one decides."""
    world.say("━━ 3/3 Real failure — appointment 764: the slot really was taken ━━")
    world.clock.now += timedelta(minutes=5)
    phase = _phase("A", _at(15), 30, "ben@salon.example", event_type=102)
    calls = world.fake.calls
    world.say(f"  platform → Cal.com   POST /v2/bookings {_span(phase)}: nothing created, no webhook")
    world.say(f"  Cal.com → platform   {CALCOM_ANSWER}")
    body = {"account": ACCOUNT, "appointment_id": "764", "service": "Herrenhaarschnitt", "sync_error": SYNC_ERROR, "phases": [phase]}
    response = await world.api("POST", "/api/verifications", json=body)
    view = response.json()
    recorded = world.clock()
    world.say(f"  platform → verifier  POST /api/verifications → {response.status_code} {view['status']}")
    total = 1 + len(SCHEDULE)
    seen = len(world.platform.received)
    for check in range(1, total + 2):
        if view["status"] != "pending" or view["next_check_at"] is None:
            break
        world.clock.now = parse_instant(view["next_check_at"])
        report = await world.tick()
        view = await world.show(view["id"])
        offset = (world.clock() - recorded).total_seconds()
        state = view["status"] + (f" ({view['review_reason']})" if view["review_reason"] else "")
        world.say(f"  t+{offset:g} s  check {check}/{total}: {report.calls} Cal.com call(s), no matching booking → {state}")
    if view["status"] == "manual_review":
        world.say("  ⚠️ POST-SYNC VERIFICATION: No matching booking found → manual review")
        world.say("  🚨 Cal.com sync permanently failed after max retries (the platform keeps it failed; an operator looks)")
    world.report_callbacks(seen)
    queue = (await world.api("GET", "/api/verifications", params={"status": "manual_review"})).json()["items"]
    world.say(f"  review queue (GET /api/verifications?status=manual_review): {len(queue)}")
    for item in queue:
        world.say(
            f"    appointment {item['appointment_id']} {item['service']}: {item['review_reason']}, missing phases {', '.join(item['missing_phases'])}, {item['checks']} checks"
        )
    return Outcome(
        "Real failure",
        "764",
        "manual_review (no_booking_found)",
        verdict_text(view),
        view["resolved_via"],
        verdict_after(view),
        world.fake.calls - calls,
    )
