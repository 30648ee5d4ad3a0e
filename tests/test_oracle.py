"""The service's verdicts, through the real store and poller, equal a brute force of the matching rules.

For many small random groups of pending verifications and bookings, every verification is recorded,
Cal.com holds every booking, and one check (the deadline: an empty check schedule) decides the
whole group. A brute force written from the rules, without the service's code, tries every
assignment and says what each verification must end as:

* a booking tagged with an appointment id belongs to that appointment (its named phase, or the
  nearest); a tag naming another appointment never matches;
* an untagged booking can fill a staff-required phase when it is not cancelled, starts within the
  tolerance and agrees with every constraint the phase gives;
* phases that name a person (or every phase, when the account accepts time-only matches) choose
  first; the other phases only see the bookings those cannot take;
* among all assignments (each booking at most once) the best have the most verifications
  complete, then the most phases filled, then the least total distance; a phase on which the best
  assignments disagree is ambiguous;
* complete with every booking tied by tag or person: verified; complete with one found by time
  alone: review, unconfirmed_match; else review: ambiguous_match, partial_match, no_booking_found.
"""

from __future__ import annotations

import itertools
import os
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from service.clients.calcom import CalcomClient
from service.settings import Settings
from service.store.connector import Database
from service.testing.fakecalcom import FakeCalcom
from service.web.app import create_app
from service.workers.poller import Poller

from .helpers import API_TOKEN, AUTH, WEBHOOK_SECRET, FakeClock, booking_event, post_webhook

T = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
TOLERANCE_MIN = 5
HOSTS = ["h1@salon.example", "h2@salon.example"]
PEOPLE = ["k1@example.com", "k2@example.com"]


@dataclass(frozen=True)
class Phase:
    key: str
    minute: int
    host: str | None
    attendee: str | None

    @property
    def names_someone(self) -> bool:
        return bool(self.host or self.attendee)


@dataclass(frozen=True)
class Appointment:
    id: str
    phases: tuple[Phase, ...]


@dataclass(frozen=True)
class Bk:
    uid: str
    minute: int
    host: str
    attendee: str
    tag: str | None = None
    tag_phase: str | None = None
    cancelled: bool = False


# --- the brute force --------------------------------------------------------------------------


def fits(p: Phase, b: Bk) -> bool:
    return (
        not b.cancelled
        and b.tag is None
        and abs(b.minute - p.minute) <= TOLERANCE_MIN
        and (p.host is None or p.host == b.host)
        and (p.attendee is None or p.attendee == b.attendee)
    )


def best_values(slots: list[tuple[str, Phase]], pool: list[Bk]) -> dict[tuple[str, str], set[str | None]]:
    """Every assignment of `pool` to `slots`; the per-slot values of the best ones."""
    choices = [[None, *(b for b in pool if fits(p, b))] for _, p in slots]
    best: tuple[int, int, int] | None = None
    winners: list[tuple[Bk | None, ...]] = []
    for pick in itertools.product(*choices):
        used = [b.uid for b in pick if b is not None]
        if len(used) != len(set(used)):
            continue
        filled: dict[str, bool] = {}
        for (appointment, _), b in zip(slots, pick):
            filled[appointment] = filled.get(appointment, True) and b is not None
        distance = sum(abs(b.minute - p.minute) for (_, p), b in zip(slots, pick) if b is not None)
        score = (sum(filled.values()), len(used), -distance)
        if best is None or score > best:
            best, winners = score, [pick]
        elif score == best:
            winners.append(pick)
    values: dict[tuple[str, str], set[str | None]] = defaultdict(set)
    for pick in winners:
        for (appointment, p), b in zip(slots, pick):
            values[(appointment, p.key)].add(b.uid if b else None)
    return values


def expected(appointments: list[Appointment], bookings: list[Bk], time_only: bool) -> dict[str, dict[str, Any]]:
    tagged: dict[tuple[str, str], str] = {}
    for b in bookings:
        owner = next((a for a in appointments if a.id == b.tag), None)
        if owner is None or b.cancelled:
            continue
        if b.tag_phase is not None:
            target = next((p for p in owner.phases if p.key == b.tag_phase), None)
        else:
            target = min(owner.phases, key=lambda p: abs(p.minute - b.minute))
        if target is not None:
            tagged[(owner.id, target.key)] = b.uid
    open_slots = [(a.id, p) for a in appointments for p in a.phases if (a.id, p.key) not in tagged]
    first = best_values([(a, p) for a, p in open_slots if p.names_someone or time_only], bookings)
    taken = {uid for values in first.values() for uid in values if uid}
    second = best_values([(a, p) for a, p in open_slots if not (p.names_someone or time_only)], [b for b in bookings if b.uid not in taken])
    values = {**first, **second}
    result = {}
    for a in appointments:
        phases, unconfirmed = {}, False
        for p in a.phases:
            if (a.id, p.key) in tagged:
                phases[p.key] = ("matched", tagged[(a.id, p.key)])
                continue
            found = values[(a.id, p.key)]
            if len(found) > 1:
                phases[p.key] = ("ambiguous", None)
            elif found == {None}:
                phases[p.key] = ("missing", None)
            else:
                phases[p.key] = ("matched", next(iter(found)))
                unconfirmed |= not (p.names_someone or time_only)
        states = {state for state, _ in phases.values()}
        if states == {"matched"}:
            verdict = ("manual_review", "unconfirmed_match") if unconfirmed else ("verified", None)
        elif "ambiguous" in states:
            verdict = ("manual_review", "ambiguous_match")
        elif "matched" in states:
            verdict = ("manual_review", "partial_match")
        else:
            verdict = ("manual_review", "no_booking_found")
        result[a.id] = {"verdict": verdict, "phases": phases}
    return result


# --- generated groups -------------------------------------------------------------------------

MINUTE = st.integers(0, 12)


@st.composite
def groups(draw: st.DrawFn) -> tuple[list[Appointment], list[Bk], bool]:
    appointments = []
    total_phases = 0
    for n in range(draw(st.integers(1, 4))):
        count = draw(st.integers(1, min(2, 5 - total_phases))) if total_phases < 5 else 0
        if not count:
            break
        total_phases += count
        phases = tuple(
            Phase(key, draw(MINUTE), draw(st.sampled_from([None, *HOSTS])), draw(st.sampled_from([None, None, *PEOPLE])))
            for key in "AB"[:count]
        )
        appointments.append(Appointment(f"a{n}", phases))
    bookings = []
    tagged_appointments: set[str] = set()
    for j in range(draw(st.integers(0, 5))):
        tag = draw(st.sampled_from([None, None, None, None, "a0", "a1", "zz"]))
        if tag in tagged_appointments:
            tag = None  # at most one tagged booking per appointment (nearest-of-several is a tie rule, not a principle)
        if tag:
            tagged_appointments.add(tag)
        bookings.append(
            Bk(
                f"u{j}",
                draw(MINUTE),
                draw(st.sampled_from(HOSTS)),
                draw(st.sampled_from(PEOPLE)),
                tag=tag,
                tag_phase=draw(st.sampled_from([None, "A", "B"])) if tag else None,
                cancelled=draw(st.booleans()) if j % 3 == 2 else False,
            )
        )
    return appointments, bookings, draw(st.booleans())


# --- the service ------------------------------------------------------------------------------


class World:
    """One database, one fake Cal.com; each example gets its own account and hour."""

    def __init__(self, url: str) -> None:
        self.clock = FakeClock(datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc))
        self.settings = Settings(_env_file=None, database_url=url, api_token=API_TOKEN, settle_seconds=2, check_schedule=())
        self.fake = FakeCalcom(clock=self.clock)
        self.examples = 0

    async def run(self, client: httpx.AsyncClient, poller: Poller, case: tuple[list[Appointment], list[Bk], bool]) -> dict[str, Any]:
        appointments, bookings, time_only = case
        self.examples += 1
        n = self.examples
        key, account = f"cal_live_oracle_{n}", f"oracle-{n}"
        self.fake.add_api_key(key)
        base = T + timedelta(days=n)
        body = {
            "calcom_api_key": key,
            "webhook_secret": WEBHOOK_SECRET,
            "calcom_api_base": "http://calcom.test",
            "match_tolerance_seconds": TOLERANCE_MIN * 60,
            "time_only_matching": time_only,
        }
        assert (await client.put(f"/api/accounts/{account}", json=body, headers=AUTH)).status_code == 201
        for b in bookings:
            start = base + timedelta(minutes=b.minute)
            metadata = {"appointment_id": f"{n}-{b.tag}", **({"phase": b.tag_phase} if b.tag_phase else {})} if b.tag else None
            self.fake.add_booking(
                key,
                uid=f"{n}-{b.uid}",
                start=start,
                end=start + timedelta(minutes=30),
                hosts=[b.host],
                attendees=[b.attendee],
                metadata=metadata,
                status="cancelled" if b.cancelled else "accepted",
            )
            if b.tag and not b.cancelled:
                # Tagged bookings arrive by webhook (the check only asks Cal.com about the phases'
                # time window, and a tag counts whatever the time).
                event = booking_event(uid=f"{n}-{b.uid}", start=start, organizer=b.host, attendees=(b.attendee,), metadata=metadata)
                assert (await post_webhook(client, event, account=account)).status_code == 200
        self.clock.now = self.clock.now + timedelta(hours=1)
        started = self.clock.now
        ids = {}
        for a in appointments:
            phases = []
            for p in a.phases:
                start = base + timedelta(minutes=p.minute)
                phase = {"key": p.key, "start": start.isoformat(), "end": (start + timedelta(minutes=30)).isoformat()}
                phase.update({k: v for k, v in (("host_email", p.host), ("attendee_email", p.attendee)) if v})
                phases.append(phase)
            response = await client.post(
                "/api/verifications", json={"account": account, "appointment_id": f"{n}-{a.id}", "phases": phases}, headers=AUTH
            )
            assert response.status_code == 201, response.text
            ids[a.id] = response.json()["id"]
        self.clock.now = started + timedelta(seconds=2)
        await poller.tick(self.clock())
        views = {a: (await client.get(f"/api/verifications/{i}", headers=AUTH)).json() for a, i in ids.items()}
        return {
            a: {
                "verdict": (v["status"], v["review_reason"]),
                "phases": {p["key"]: (p["status"], p["booking"]["uid"].split("-", 1)[1] if p["booking"] else None) for p in v["phases"]},
            }
            for a, v in views.items()
        }


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[tuple[World, httpx.AsyncClient, Poller]]:
    world = World(database_url)
    app = create_app(world.settings, clock=world.clock)
    db = Database(database_url)
    await db.connect()
    async with app.router.lifespan_context(app):
        api = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://verifier.test")
        calcom = httpx.AsyncClient(transport=httpx.ASGITransport(app=world.fake.app), base_url="http://calcom.test")
        async with api, calcom:
            poller = Poller(db, world.settings, CalcomClient(calcom, clock=world.clock), clock=world.clock, owner="oracle")
            yield world, api, poller
    await db.disconnect()


ORACLE = settings(
    max_examples=int(os.environ.get("ORACLE_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


@ORACLE
@given(case=groups())
async def test_verdicts_equal_a_brute_force_of_the_rules(world: tuple[World, httpx.AsyncClient, Poller], case: Any) -> None:
    service, client, poller = world
    appointments, bookings, time_only = case
    want = expected(appointments, bookings, time_only)
    for verdict in sorted({str(v["verdict"]) for v in want.values()}):
        event(verdict)
    assert await service.run(client, poller, case) == want
