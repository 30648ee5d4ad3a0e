"""Competing verifications decided together and never early; identity before verification.

Each test drives the real service (intake, webhooks, the poller against the fake Cal.com) on the
real database with the injected clock.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from service.app import group
from service.app import settle as verdicts
from service.store.connector import Database, sql
from service.testing.fakecalcom import FakeCalcom
from service.workers.poller import Poller

from .helpers import AUTH, FakeClock, booking_event, create_account, failure, phase, post_webhook, record
from .test_poller import CALCOM, CHECKS, booked, calcom_http, fake, poller, run_schedule  # noqa: F401 (fixtures)

T = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
ANNA = "anna@salon.example"


def at(minutes: float) -> datetime:
    return T + timedelta(minutes=minutes)


async def show(client: httpx.AsyncClient, verification_id: str) -> dict:
    return (await client.get(f"/api/verifications/{verification_id}", headers=AUTH)).json()


async def booking_everywhere(client: httpx.AsyncClient, fake: FakeCalcom, uid: str, minutes: float, **people: object) -> None:
    """A booking Cal.com holds and announced by webhook (the same hosts and attendees in both)."""
    hosts = list(people.get("hosts", [ANNA]))  # type: ignore[call-overload]
    attendees = list(people.get("attendees", ["kunde@example.com"]))  # type: ignore[call-overload]
    booked(fake, uid=uid, start=at(minutes), hosts=hosts, attendees=attendees)
    await post_webhook(client, booking_event(uid=uid, start=at(minutes), organizer=hosts[0], attendees=tuple(attendees)))


async def test_a_partial_group_is_never_verified_in_part(client, fake: FakeCalcom, poller: Poller, clock: FakeClock) -> None:
    """Appointments at 0, 5, 15, 25 min, bookings at 2.5, 10, 20 (tolerance 5 min): every assignment
    that completes three of them is as good as any other, so none of the four may be verified."""
    await create_account(client, calcom_api_base=CALCOM)
    start = clock()
    ids = []
    for n, minute in enumerate((0, 5, 15, 25)):
        body = failure(appointment_id=f"g{n}", phases=[phase("A", at(minute), who=None, host_email=ANNA)])
        ids.append((await record(client, body)).json()["id"])
    for uid, minute in (("b1", 2.5), ("b2", 10), ("b3", 20)):
        await booking_everywhere(client, fake, uid, minute)
    assert [(await show(client, i))["status"] for i in ids] == ["pending"] * 4  # contested: nothing decided on arrival
    await run_schedule(poller, clock, start)
    final = [await show(client, i) for i in ids]
    assert [(v["status"], v["review_reason"]) for v in final] == [("manual_review", "ambiguous_match")] * 4
    assert all(v["phases"][0]["status"] == "ambiguous" and v["phases"][0]["booking"] is None for v in final)


async def test_a_contested_booking_waits_for_the_check_so_the_perm_keeps_its_own(
    client, fake: FakeCalcom, poller: Poller, clock: FakeClock
) -> None:
    """A perm (0 and 60 min) and a haircut at +4 min, both with Anna. The perm's first booking could
    also complete the haircut; deciding on its arrival would give the haircut a booking that is the
    perm's. Decided at the check, the perm gets both of its bookings and the haircut none."""
    await create_account(client, calcom_api_base=CALCOM)
    start = clock()
    perm = (
        await record(client, failure("perm", [phase("A", at(0), who=None, host_email=ANNA), phase("B", at(60), who=None, host_email=ANNA)]))
    ).json()
    cut = (await record(client, failure("cut", [phase("A", at(4), who=None, host_email=ANNA)]))).json()
    await booking_everywhere(client, fake, "perm-a", 0)
    assert (await show(client, cut["id"]))["status"] == "pending"
    await booking_everywhere(client, fake, "perm-b", 60)
    assert (await show(client, perm["id"]))["status"] == "pending"  # perm-a is still contested until the check
    assert (await show(client, cut["id"]))["status"] == "pending"
    clock.now = start + timedelta(seconds=CHECKS[0])
    await poller.tick(clock())
    decided = await show(client, perm["id"])
    assert decided["status"] == "verified"
    assert {p["key"]: p["booking"]["uid"] for p in decided["phases"]} == {"A": "perm-a", "B": "perm-b"}
    await run_schedule(poller, clock, start)
    haircut = await show(client, cut["id"])
    assert (haircut["status"], haircut["review_reason"]) == ("manual_review", "no_booking_found")


async def test_an_uncontested_identified_booking_still_verifies_inside_the_webhook(client, fake: FakeCalcom) -> None:
    await create_account(client, calcom_api_base=CALCOM)
    pending = (await record(client, failure("762", [phase("A", at(0))]))).json()
    await booking_everywhere(client, fake, "mine", 1)
    verified = await show(client, pending["id"])
    assert verified["status"] == "verified" and verified["resolved_via"] == "webhook"
    assert verified["phases"][0]["booking"]["identity"] == "person"


async def test_a_chain_of_thirty_in_random_order_is_decided_exactly(client, fake: FakeCalcom, poller: Poller, clock: FakeClock) -> None:
    """Thirty single-phase appointments 4 min apart with Anna; each booking is 1 min after its own
    appointment and so also within reach of the next one. Exactly one assignment is best."""
    await create_account(client, calcom_api_base=CALCOM)
    start = clock()
    rnd = random.Random(30)
    order = list(range(30))
    rnd.shuffle(order)
    ids = {}
    for i in order:
        body = failure(appointment_id=f"c{i}", phases=[phase("A", at(4 * i), who=None, host_email=ANNA)])
        ids[i] = (await record(client, body)).json()["id"]
    rnd.shuffle(order)
    for i in order:
        await booking_everywhere(client, fake, f"b{i}", 4 * i + 1)
    clock.now = start + timedelta(seconds=CHECKS[0])
    await poller.tick(clock())
    for i in range(30):
        view = await show(client, ids[i])
        assert view["status"] == "verified", (i, view["status"])
        assert view["phases"][0]["booking"]["uid"] == f"b{i}"
    status = (await client.get("/status")).json()
    assert status["matching"] == {"matcher_gave_up": 0, "group_too_large": 0, "settle_failed": 0}


async def test_a_phase_that_names_no_one_ends_unconfirmed_with_its_candidate(
    client, fake: FakeCalcom, poller: Poller, clock: FakeClock
) -> None:
    await create_account(client, calcom_api_base=CALCOM)
    pending = (await record(client, failure("762", [phase("A", at(0), who=None)]))).json()
    await booking_everywhere(client, fake, "only", 0)
    view = await show(client, pending["id"])
    assert (view["status"], view["review_reason"]) == ("manual_review", "unconfirmed_match")
    candidate = view["phases"][0]
    assert candidate["status"] == "matched" and candidate["booking"]["uid"] == "only" and candidate["booking"]["identity"] == "time"
    # The candidate is shown, not claimed: an appointment that names its customer can still have it.
    other = (await record(client, failure("900", [phase("A", at(0))]))).json()
    assert other["status"] == "verified" and other["phases"][0]["booking"]["uid"] == "only"
    # Confirming the first now would take a booking that belongs to 900: refused, naming it.
    refused = await client.post(f"/api/verifications/{pending['id']}/resolve", json={"outcome": "synced"}, headers=AUTH)
    assert refused.status_code == 409 and other["id"] in refused.json()["error"]["message"]


async def test_an_operator_confirms_an_unconfirmed_match_in_one_step(client, fake: FakeCalcom, db: Database) -> None:
    await create_account(client, calcom_api_base=CALCOM)
    pending = (await record(client, failure("762", [phase("A", at(0), who=None)]))).json()
    await booking_everywhere(client, fake, "only", 0)
    resolved = (await client.post(f"/api/verifications/{pending['id']}/resolve", json={"outcome": "synced"}, headers=AUTH)).json()
    assert resolved["status"] == "resolved" and resolved["resolution"] == "synced"
    assert resolved["phases"][0]["booking"]["uid"] == "only" and resolved["phases"][0]["booking"]["identity"] == "operator"
    async with db.read() as tx:
        owner = await tx.fetch_val(sql("SELECT verification_seq FROM booking_claims WHERE booking_uid = 'only'"))
    assert owner is not None


async def test_an_account_may_accept_time_only_matches(client, fake: FakeCalcom) -> None:
    await create_account(client, calcom_api_base=CALCOM, time_only_matching=True)
    pending = (await record(client, failure("762", [phase("A", at(0), who=None)]))).json()
    await booking_everywhere(client, fake, "only", 0)
    view = await show(client, pending["id"])
    assert view["status"] == "verified" and view["phases"][0]["booking"]["identity"] == "time"


async def test_the_attendee_phone_identifies_a_booking_digits_only(client, fake: FakeCalcom) -> None:
    await create_account(client, calcom_api_base=CALCOM)
    pending = (await record(client, failure("762", [phase("A", at(0), who=None, attendee_phone="+49 (170) 123-4567")]))).json()
    other = booking_event(uid="someone-else", start=at(0), attendees=("x@example.com",))
    other["payload"]["attendees"][0]["phoneNumber"] = "+49 170 7654321"
    await post_webhook(client, other)
    theirs = booking_event(uid="theirs", start=at(1), attendees=("y@example.com",))
    theirs["payload"]["attendees"][0]["phoneNumber"] = "+491701234567"
    await post_webhook(client, theirs)
    view = await show(client, pending["id"])
    assert view["status"] == "verified" and view["phases"][0]["booking"]["uid"] == "theirs"
    assert view["phases"][0]["attendee_phone"] == "+49 (170) 123-4567"


async def test_an_operator_resolve_clears_provisional_bookings_it_does_not_claim(client, fake: FakeCalcom) -> None:
    await create_account(client, calcom_api_base=CALCOM)
    body = failure("762", [phase("A", at(0)), phase("B", at(60))])
    pending = (await record(client, body)).json()
    await booking_everywhere(client, fake, "a-only", 0)
    assert (await show(client, pending["id"]))["phases"][0]["status"] == "matched"  # provisional: B is missing
    resolved = (await client.post(f"/api/verifications/{pending['id']}/resolve", json={"outcome": "failed"}, headers=AUTH)).json()
    assert [(p["status"], p["booking"]) for p in resolved["phases"]] == [("missing", None), ("missing", None)]
    # The booking was never claimed, so another appointment of this customer can still have it.
    assert (await record(client, failure("763", [phase("A", at(0))]))).json()["status"] == "verified"


async def test_a_group_over_the_bound_decides_nothing_and_is_counted(
    client, fake: FakeCalcom, poller: Poller, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(group, "MAX_GROUP", 3)
    await create_account(client, calcom_api_base=CALCOM)
    start = clock()
    ids = [(await record(client, failure(f"c{i}", [phase("A", at(4 * i), who=None, host_email=ANNA)]))).json()["id"] for i in range(5)]
    for i in range(5):
        await booking_everywhere(client, fake, f"b{i}", 4 * i + 1)
    await run_schedule(poller, clock, start)
    final = [await show(client, i) for i in ids]
    assert [(v["status"], v["review_reason"]) for v in final] == [("manual_review", "ambiguous_match")] * 5
    status = (await client.get("/status")).json()
    assert status["matching"]["group_too_large"] > 0
    assert "calcom_verifier_group_too_large_total" in (await client.get("/metrics")).text


async def test_a_matcher_that_gives_up_says_so_and_guesses_nothing(
    client, fake: FakeCalcom, poller: Poller, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(verdicts, "MATCH_BUDGET", 20)
    await create_account(client, calcom_api_base=CALCOM)
    start = clock()
    ids = [(await record(client, failure(f"c{i}", [phase("A", at(4 * i), who=None, host_email=ANNA)]))).json()["id"] for i in range(6)]
    for i in range(6):
        await booking_everywhere(client, fake, f"b{i}", 4 * i + 1)
    await run_schedule(poller, clock, start)
    assert [(await show(client, i))["review_reason"] for i in ids] == ["ambiguous_match"] * 6
    assert any(getattr(r, "event", None) == "matcher_gave_up" for r in caplog.records)
    assert (await client.get("/status")).json()["matching"]["matcher_gave_up"] > 0
