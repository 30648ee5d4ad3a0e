"""The exact search against a brute force that tries every assignment, and on long chains."""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.core.search import Slot, decide_components

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


def brute_force(slots: list[Slot]) -> dict[tuple[object, str], set[object]]:
    """Every assignment (each slot: nothing or one of its candidates, no unit twice); best by score."""
    choices = [[None, *(u for _, u in s.options)] for s in slots]
    distance = [{u: d for d, u in s.options} for s in slots]
    best: tuple[int, int, int] | None = None
    values: dict[tuple[object, str], set[object]] = defaultdict(set)
    winners: list[tuple[object, ...]] = []
    for pick in itertools.product(*choices):
        units = [u for u in pick if u is not None]
        if len(units) != len(set(units)):
            continue
        per_ref: dict[object, bool] = {}
        for slot, unit in zip(slots, pick):
            per_ref[slot.ref] = per_ref.get(slot.ref, True) and unit is not None
        score = (
            sum(per_ref.values()),
            len(units),
            -sum(distance[i][u] for i, u in enumerate(pick) if u is not None),
        )
        if best is None or score > best:
            best, winners = score, [pick]
        elif score == best:
            winners.append(pick)
    for pick in winners:
        for slot, unit in zip(slots, pick):
            values[(slot.ref, slot.key)].add(unit)
    return values


@st.composite
def slot_sets(draw):
    n_refs = draw(st.integers(1, 4))
    units = [f"b{i}" for i in range(draw(st.integers(0, 5)))]
    slots = []
    for ref in range(n_refs):
        for key in "ABC"[: draw(st.integers(1, 3))]:
            chosen = draw(st.lists(st.sampled_from(units), unique=True, max_size=3)) if units else []
            options = [(draw(st.sampled_from([0, 1, 2, 5])), u) for u in chosen]
            slots.append(Slot(ref, key, T0 + timedelta(minutes=draw(st.integers(0, 60))), options))
    return slots


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(slot_sets())
def test_search_equals_brute_force(slots: list[Slot]) -> None:
    decided = decide_components(slots, max_nodes=1_000_000)
    assert not decided.gave_up
    expected = brute_force(slots)
    for slot in slots:
        assert decided.values[(slot.ref, slot.key)] == expected[(slot.ref, slot.key)], slot


def chain(n: int, rnd: random.Random) -> list[Slot]:
    """n single-phase verifications 4 min apart; booking i sits 1 min after verification i, so it is
    also within 5 min of verification i+1: every verification has two candidates, one right answer."""
    slots = []
    for i in range(n):
        options = [(60_000, f"b{i}")] + ([(180_000, f"b{i - 1}")] if i else [])
        slots.append(Slot(i, "A", T0 + timedelta(minutes=4 * i), options))
    rnd.shuffle(slots)
    return slots


def test_a_long_chain_in_random_order_is_decided_exactly() -> None:
    rnd = random.Random(30)
    for n in (30, 200):
        decided = decide_components(chain(n, rnd), max_nodes=200_000)
        assert not decided.gave_up
        assert all(decided.values[(i, "A")] == {f"b{i}"} for i in range(n))


def test_a_component_over_budget_decides_nothing_and_says_so() -> None:
    # Twelve verifications competing for the same twelve indistinguishable units: too many states.
    slots = [Slot(i, "A", T0, [(0, f"u{j}") for j in range(12)]) for i in range(12)]
    lone = Slot("lone", "A", T0 + timedelta(hours=5), [(0, "x")])
    decided = decide_components([*slots, lone], max_nodes=2_000)
    assert decided.gave_up == set(range(12))
    assert all(None in decided.values[(i, "A")] for i in range(12))
    assert decided.values[("lone", "A")] == {"x"}  # an independent component is still decided
