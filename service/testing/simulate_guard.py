"""`simulate`, second part: the same three salon scenarios with the platform calling Cal.com through the booking guard.

The platform's only change is its Cal.com base URL (`/calcom/salon-1`). Cal.com (the fake) makes
the bookings and then fails the create call the way Cal.com does; the guard answers the truth inside
that call, so the caller hears "booked" (or, for the real failure, "taken") while still on the line,
with no second recording call and no waiting for a poller.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from service.testing.fakecalcom.faults import CONFLICT, ERROR_AFTER_WRITE_400, ERROR_AFTER_WRITE_500, SLOW_ANSWER

if TYPE_CHECKING:
    from service.testing.world import World

ACCOUNT = "salon-1"


@dataclass
class GuardOutcome:
    scenario: str
    expected: str
    got: str
    elapsed_ms: float


async def _create(world: World, body: dict[str, Any], key: str) -> tuple[Any, float]:
    headers = {"Authorization": f"Bearer {world.keys.calcom_api_key}", "cal-api-version": "2024-08-13", "Idempotency-Key": key}
    began = time.perf_counter()
    response = await world.verifier.post(f"/calcom/{ACCOUNT}/v2/bookings", json=body, headers=headers)
    return response, (time.perf_counter() - began) * 1000


def _body(appointment: str, phase: str, start: str, event_type: int, email: str) -> dict[str, Any]:
    return {
        "start": start,
        "eventTypeId": event_type,
        "metadata": {"appointment_id": appointment, "phase": phase},
        "attendee": {"name": "Kunde", "email": email, "timeZone": "Europe/Berlin"},
    }


def _heard(response: Any) -> str:
    if response.status_code == 201:
        return "booked"
    if response.status_code == 502:
        return "being confirmed"
    return "taken"


async def dauerwelle(world: World) -> GuardOutcome:
    world.say("━━ G1/3 Dauerwelle through the guard — appointment 862: phases A–D; every create fails after the row ━━")
    world.fake.set_event_type(201, length=30, hosts=["anna@salon.example"])
    total, heard = 0.0, []
    for n, (phase, start) in enumerate((("A", "10:00"), ("B", "10:30"), ("C", "11:35"), ("D", "12:05"))):
        world.fake.fail_next_create(ERROR_AFTER_WRITE_400 if n % 2 else ERROR_AFTER_WRITE_500)
        response, ms = await _create(
            world, _body("862", phase, f"2026-12-02T{start}:00+01:00", 201, "dauerwelle@example.com"), f"862-{phase}"
        )
        total += ms
        heard.append(_heard(response))
        data = response.json().get("data", {})
        world.say(
            f"  platform → guard → Cal.com  POST /v2/bookings phase {phase}: Cal.com answered "
            f"{response.headers.get('x-verifier-recovered', '?')} after writing booking {data.get('id')}; "
            f"the platform hears {response.status_code} ({_heard(response)}) in {ms:.1f} ms"
        )
    got = "booked" if heard == ["booked"] * 4 else ", ".join(heard)
    if got == "booked":
        world.say(f"  ✅ all four phases booked, heard inside the create calls ({total:.0f} ms in all)")
    return GuardOutcome("Dauerwelle (guard)", "booked", got, total)


async def herrenhaarschnitt(world: World) -> GuardOutcome:
    world.say("━━ G2/3 Herrenhaarschnitt through the guard — appointment 863: Cal.com answers after the client gave up ━━")
    world.fake.set_event_type(202, length=30, hosts=["ben@salon.example"])
    world.fake.fail_next_create(SLOW_ANSWER)
    response, ms = await _create(world, _body("863", "A", "2026-12-02T13:00:00+01:00", 202, "herr@example.com"), "863-A")
    world.fake.release_answers()
    world.say(
        f"  platform → guard → Cal.com  POST /v2/bookings: no answer within GUARD_CALCOM_TIMEOUT_SECONDS; "
        f"the webhook had arrived → {response.status_code} ({_heard(response)}, X-Verifier-Recovered: "
        f"{response.headers.get('x-verifier-recovered')}) in {ms:.0f} ms"
    )
    retry, retry_ms = await _create(world, _body("863", "A", "2026-12-02T13:00:00+01:00", 202, "herr@example.com"), "863-A")
    world.say(
        f"  platform retries with the same Idempotency-Key → {retry.status_code} replayed "
        f"({retry.headers.get('idempotent-replayed') == 'true'}), nothing sent to Cal.com, in {retry_ms:.1f} ms"
    )
    return GuardOutcome("Herrenhaarschnitt (guard)", "booked", _heard(response), ms)


async def real_failure(world: World) -> GuardOutcome:
    world.say("━━ G3/3 Real failure through the guard — appointment 864: the slot really was taken ━━")
    world.fake.fail_next_create(CONFLICT)
    response, ms = await _create(world, _body("864", "A", "2026-12-02T15:00:00+01:00", 202, "spaet@example.com"), "864-A")
    message = response.json().get("error", {}).get("message", "")
    world.say(
        f'  platform → guard → Cal.com  POST /v2/bookings → {response.status_code} "{message}" passed through '
        f"in {ms:.1f} ms: a complete read of Cal.com shows no booking for this create"
    )
    return GuardOutcome("Real failure (guard)", "taken", _heard(response), ms)


async def guard_story(world: World) -> bool:
    """The three scenarios through the guard; True when the caller heard the truth each time."""
    world.say("Now the same salon with the platform's Cal.com base URL pointed at the booking guard:")
    world.say()
    outcomes = []
    for scenario in (dauerwelle, herrenhaarschnitt, real_failure):
        outcomes.append(await scenario(world))
        world.say()
    listed = (await world.api("GET", "/api/duplicates")).json()["items"]
    world.say("━━ Guard summary ━━")
    for o in outcomes:
        world.say(f"  {o.scenario:<26} expected {o.expected:<7} heard {o.got:<7} inside the create call ({o.elapsed_ms:.0f} ms)")
    world.say(f"  bookings Cal.com holds twice: {len(listed)}")
    ok = all(o.expected == o.got for o in outcomes) and not listed
    world.say("  ✅ every caller heard the truth inside the create call" if ok else "  ❌ a caller did not hear the truth")
    return ok
