"""The pure matcher: rules by example, then properties over generated inputs (hypothesis)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.core.bookings import Booking, PhaseSpec, Target, distance_ms, eligible
from service.core.matching import match

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def target(ref: object, *starts: float, appointment: str | None = None, account: str = "a", **constraints: object) -> Target:
    keys = "ABCDEFGH"
    return Target(ref, account, appointment or f"appt-{ref}", tuple(PhaseSpec(keys[i], at(s), **constraints) for i, s in enumerate(starts)))  # type: ignore[arg-type]


def booking(uid: str, minutes: float, account: str = "a", **fields: object) -> Booking:
    return Booking(account=account, uid=uid, start=at(minutes), **fields)  # type: ignore[arg-type]


def uids(outcome) -> dict[str, str]:
    return {key: b.uid for key, b in outcome.matched.items()}


# --- rules by example -------------------------------------------------------------------------


def test_single_phase_matches_the_booking_within_tolerance() -> None:
    result = match([target(1, 0)], [booking("x", 4)], 300)[1]
    assert result.complete and uids(result) == {"A": "x"}


def test_booking_outside_tolerance_does_not_match() -> None:
    result = match([target(1, 0)], [booking("x", 5.5)], 300)[1]
    assert not result.complete and result.missing == {"A"}


def test_gone_booking_never_matches() -> None:
    result = match([target(1, 0)], [booking("x", 0, gone=True)], 300)[1]
    assert not result.complete and result.missing == {"A"}


def test_two_indistinguishable_bookings_are_not_guessed() -> None:
    result = match([target(1, 0)], [booking("x", 0), booking("y", 0)], 300)[1]
    assert not result.complete and result.ambiguous == {"A"} and not result.matched
    symmetric = match([target(1, 0)], [booking("x", -2), booking("y", 2)], 300)[1]
    assert not symmetric.complete and symmetric.ambiguous == {"A"}


def test_the_nearer_booking_wins_when_distances_differ() -> None:
    result = match([target(1, 0)], [booking("far", 4), booking("near", 1)], 300)[1]
    assert result.complete and uids(result) == {"A": "near"}


def test_constraints_tell_bookings_apart_case_insensitively() -> None:
    t = target(1, 0, host_email="Anna@Salon.example")
    result = match(
        [t], [booking("bob", 0, hosts=frozenset({"bob@salon.example"})), booking("anna", 0, hosts=frozenset({"ANNA@salon.example"}))], 300
    )[1]
    assert result.complete and uids(result) == {"A": "anna"}


def test_each_constraint_must_agree() -> None:
    p = PhaseSpec("A", at(0), event_type_id=7, host_email="h@x.de", attendee_email="k@x.de")
    ok = booking("x", 0, event_type_id=7, hosts=frozenset({"h@x.de"}), attendees=frozenset({"k@x.de", "g@x.de"}))
    assert eligible(p, ok, 300_000)
    assert not eligible(p, booking("x", 0, event_type_id=8, hosts=frozenset({"h@x.de"}), attendees=frozenset({"k@x.de"})), 300_000)
    assert not eligible(p, booking("x", 0, event_type_id=7, hosts=frozenset({"o@x.de"}), attendees=frozenset({"k@x.de"})), 300_000)
    assert not eligible(p, booking("x", 0, event_type_id=7, hosts=frozenset({"h@x.de"}), attendees=frozenset({"o@x.de"})), 300_000)
    assert not eligible(p, booking("x", 0, hosts=frozenset({"h@x.de"}), attendees=frozenset({"k@x.de"})), 300_000)


def test_composite_needs_every_phase() -> None:
    t = target(1, 0, 30, 75, 120)
    partial = match([t], [booking("a", 0), booking("b", 30), booking("d", 120)], 300)[1]
    assert not partial.complete
    assert uids(partial) == {"A": "a", "B": "b", "D": "d"} and partial.missing == {"C"}
    full = match([t], [booking("a", 0), booking("b", 30), booking("c", 75), booking("d", 120)], 300)[1]
    assert full.complete and uids(full) == {"A": "a", "B": "b", "C": "c", "D": "d"}


def test_close_phases_take_the_assignment_with_the_smallest_total_distance() -> None:
    result = match([target(1, 0, 4)], [booking("y", 4), booking("x", 0)], 300)[1]
    assert result.complete and uids(result) == {"A": "x", "B": "y"}


def test_tagged_booking_beats_a_closer_untagged_one_whatever_the_distance() -> None:
    t = target(1, 0, appointment="762")
    result = match([t], [booking("near", 0), booking("tagged", 180, appointment_tag="762")], 300)[1]
    assert result.complete and uids(result) == {"A": "tagged"}


def test_tagged_booking_goes_to_its_named_phase_or_the_nearest() -> None:
    t = target(1, 0, 30, appointment="762")
    named = match(
        [t], [booking("p", 0, appointment_tag="762", phase_tag="B"), booking("q", 30, appointment_tag="762", phase_tag="A")], 300
    )[1]
    assert uids(named) == {"A": "q", "B": "p"}
    nearest = match([t], [booking("p", 29, appointment_tag="762"), booking("q", 1, appointment_tag="762")], 300)[1]
    assert uids(nearest) == {"A": "q", "B": "p"}


def test_foreign_metadata_never_matches() -> None:
    result = match([target(1, 0, appointment="762")], [booking("other", 0, appointment_tag="999")], 300)[1]
    assert not result.complete and result.missing == {"A"}


def test_one_booking_satisfies_one_phase_across_verifications() -> None:
    result = match([target(1, 0), target(2, 3)], [booking("x", 0)], 300)
    assert result[1].complete and uids(result[1]) == {"A": "x"}
    assert not result[2].complete and result[2].missing == {"A"}


def test_equal_claims_from_two_verifications_are_not_guessed() -> None:
    result = match([target(1, 0), target(2, 0)], [booking("x", 0)], 300)
    assert not result[1].complete and not result[2].complete
    assert result[1].ambiguous == {"A"} and result[2].ambiguous == {"A"}


def test_joint_assignment_avoids_the_swap_of_greedy_matching() -> None:
    result = match([target(1, 3), target(2, 0)], [booking("x", 1), booking("y", 4)], 300)
    assert uids(result[1]) == {"A": "y"} and uids(result[2]) == {"A": "x"}


def test_seats_are_claimable_units_told_apart_by_attendee() -> None:
    seats = [
        booking("slot", 0, seat="s1", attendees=frozenset({"eva@x.de"})),
        booking("slot", 0, seat="s2", attendees=frozenset({"tom@x.de"})),
    ]
    result = match([target(1, 0, attendee_email="tom@x.de"), target(2, 0, attendee_email="eva@x.de")], seats, 300)
    assert result[1].matched["A"].seat == "s2" and result[2].matched["A"].seat == "s1"


def test_bookings_of_another_account_never_match() -> None:
    result = match([target(1, 0, account="a")], [booking("x", 0, account="b")], 300)[1]
    assert not result.complete


def test_search_budget_exhaustion_decides_nothing_rather_than_guess() -> None:
    targets = [target(i, 0, 0.5, 1, 1.5) for i in range(6)]
    bookings = [booking(f"b{i}", i * 0.1) for i in range(24)]
    result = match(targets, bookings, 300, max_nodes=500)
    assert not any(o.complete for o in result.values())
    assert all(o.ambiguous for o in result.values())


# --- properties ----------------------------------------------------------------------------------

MINUTES = st.integers(min_value=-30, max_value=150)


@st.composite
def scenarios(draw):
    n_targets = draw(st.integers(1, 4))
    targets = []
    for i in range(n_targets):
        starts = sorted(draw(st.lists(MINUTES, min_size=1, max_size=3, unique=True)))
        account = draw(st.sampled_from(["a", "b"]))
        host = draw(st.sampled_from([None, "h1@x.de", "h2@x.de"]))
        targets.append(target(i, *starts, account=account, appointment=f"ap{i}", host_email=host))
    bookings = []
    for j in range(draw(st.integers(0, 8))):
        tag = draw(st.sampled_from([None, None, None, "ap0", "ap1", "zz"]))
        bookings.append(
            booking(
                f"u{j}",
                draw(MINUTES),
                account=draw(st.sampled_from(["a", "b"])),
                hosts=frozenset({draw(st.sampled_from(["h1@x.de", "h2@x.de"]))}),
                appointment_tag=tag,
                gone=draw(st.booleans()) if j % 4 == 0 else False,
            )
        )
    tolerance = draw(st.sampled_from([0, 60, 300, 900]))
    return targets, bookings, tolerance


PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(scenarios())
def test_no_booking_is_assigned_twice(scenario) -> None:
    targets, bookings, tolerance = scenario
    used = [(b.account, b.uid, b.seat) for o in match(targets, bookings, tolerance).values() for b in o.matched.values()]
    assert len(used) == len(set(used))


@PROPERTY
@given(scenarios())
def test_never_across_accounts(scenario) -> None:
    targets, bookings, tolerance = scenario
    by_ref = {t.ref: t for t in targets}
    for ref, outcome in match(targets, bookings, tolerance).items():
        assert all(b.account == by_ref[ref].account for b in outcome.matched.values())


@PROPERTY
@given(scenarios(), st.randoms(use_true_random=False))
def test_result_does_not_depend_on_input_order(scenario, rnd: random.Random) -> None:
    targets, bookings, tolerance = scenario
    expected = match(targets, bookings, tolerance)
    shuffled_targets, shuffled_bookings = targets[:], bookings[:]
    rnd.shuffle(shuffled_targets)
    rnd.shuffle(shuffled_bookings)
    assert match(shuffled_targets, shuffled_bookings, tolerance) == expected


@PROPERTY
@given(scenarios())
def test_untagged_matches_are_within_tolerance_and_constraints(scenario) -> None:
    targets, bookings, tolerance = scenario
    by_ref = {t.ref: t for t in targets}
    for ref, outcome in match(targets, bookings, tolerance).items():
        phases = {p.key: p for p in by_ref[ref].phases}
        for key, b in outcome.matched.items():
            assert not b.gone
            if b.appointment_tag is None:
                assert eligible(phases[key], b, tolerance * 1000)
            else:
                assert b.appointment_tag == by_ref[ref].appointment_id


@PROPERTY
@given(scenarios())
def test_complete_means_every_phase_has_its_own_booking(scenario) -> None:
    targets, bookings, tolerance = scenario
    by_ref = {t.ref: t for t in targets}
    for ref, outcome in match(targets, bookings, tolerance).items():
        keys = {p.key for p in by_ref[ref].phases}
        assert outcome.complete == (set(outcome.matched) == keys)
        assert set(outcome.matched) | outcome.ambiguous | outcome.missing == keys
        assert not (set(outcome.matched) & (outcome.ambiguous | outcome.missing))


@PROPERTY
@given(scenarios())
def test_a_complete_single_phase_choice_is_never_a_tie(scenario) -> None:
    targets, bookings, tolerance = scenario
    for t in targets:
        result = match([t], bookings, tolerance)[t.ref]
        if result.complete and len(t.phases) == 1 and result.matched["A"].appointment_tag is None:
            chosen = result.matched["A"]
            rivals = [
                b
                for b in bookings
                if b is not chosen
                and not b.gone
                and b.appointment_tag is None
                and b.account == t.account
                and eligible(t.phases[0], b, tolerance * 1000)
            ]
            assert all(distance_ms(t.phases[0], b) > distance_ms(t.phases[0], chosen) for b in rivals)
