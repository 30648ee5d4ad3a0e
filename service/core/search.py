"""The exact search behind matching: every optimal assignment of candidates to phases, per slot.

Pure. A *slot* is one phase of one verification with its eligible candidates (distance, unit).
Slots that share a candidate form a component; components are decided independently.

Within a component the slots are taken in start-time order and decided by dynamic programming
over cuts: at each cut the state is only what the earlier slots leave behind for the later ones
(the units already used that later slots could still want, and the verifications already known
to be incomplete). A chain of verifications that compete pairwise therefore costs a few states
per slot however long it is, and the search needs neither recursion nor luck with the order.

A forward pass computes the best prefix score of every state and a backward pass the best
suffix; a choice at a slot belongs to some optimal assignment exactly when prefix + choice +
suffix equals the optimum. Scores are (verifications completed, phases matched, -distance),
compared in that order. Past its budget a component is given up: nothing in it is decided.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

Score = tuple[int, int, int]
_State = tuple[frozenset[Any], frozenset[Hashable]]
_ZERO: Score = (0, 0, 0)


@dataclass(frozen=True)
class Slot:
    """One phase to fill: its verification, key, start and candidates as (distance_ms, unit)."""

    ref: Hashable
    key: str
    start: datetime
    options: Sequence[tuple[int, Any]]


@dataclass
class Decision:
    """Per slot, the set of values it takes across all optimal assignments (None = unmatched)."""

    values: dict[tuple[Hashable, str], set[Any]] = field(default_factory=dict)
    component_of: dict[Hashable, int] = field(default_factory=dict)
    gave_up: set[Hashable] = field(default_factory=set)


def decide_components(slots: Sequence[Slot], max_nodes: int) -> Decision:
    """Split the slots into independent components and decide each one exactly (or give up)."""
    decision = Decision()
    for number, component in enumerate(_components(slots)):
        ordered = sorted(component, key=lambda s: (s.start, str(s.ref), s.key))
        found = _decide(ordered, max_nodes)
        for slot in ordered:
            decision.component_of[slot.ref] = number
            if found is None:
                decision.values[(slot.ref, slot.key)] = {None, *(unit for _, unit in slot.options)}
                decision.gave_up.add(slot.ref)
            else:
                decision.values[(slot.ref, slot.key)] = found.get((slot.ref, slot.key), {None})
    return decision


def _components(slots: Sequence[Slot]) -> list[list[Slot]]:
    parent: dict[Hashable, Hashable] = {s.ref: s.ref for s in slots}

    def find(ref: Hashable) -> Hashable:
        while parent[ref] != ref:
            parent[ref] = parent[parent[ref]]
            ref = parent[ref]
        return ref

    first_seen: dict[Any, Hashable] = {}
    for slot in slots:
        for _, unit in slot.options:
            a, b = find(first_seen.setdefault(unit, slot.ref)), find(slot.ref)
            if a != b:
                parent[b] = a
    groups: dict[Hashable, list[Slot]] = defaultdict(list)
    for slot in slots:
        groups[find(slot.ref)].append(slot)
    return sorted(groups.values(), key=lambda group: min((s.start, str(s.ref)) for s in group))


def _add(a: Score, b: Score) -> Score:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2])


def _decide(slots: list[Slot], max_nodes: int) -> dict[tuple[Hashable, str], set[Any]] | None:
    """Exact per-slot optimal values for one component; None when the budget runs out."""
    last_use: dict[Any, int] = {}
    last_of_ref: dict[Hashable, int] = {}
    for i, slot in enumerate(slots):
        last_of_ref[slot.ref] = i
        for _, unit in slot.options:
            last_use[unit] = i

    start: _State = (frozenset(), frozenset())
    forward: list[dict[_State, Score]] = [{start: _ZERO}]
    edges: list[list[tuple[_State, Any, _State, Score]]] = []
    work = 0
    for i, slot in enumerate(slots):
        closes = last_of_ref[slot.ref] == i
        layer: dict[_State, Score] = {}
        moves: list[tuple[_State, Any, _State, Score]] = []
        for state, score in forward[i].items():
            used, failed = state
            work += len(slot.options) + 1
            if work > max_nodes:
                return None
            keep = frozenset(u for u in used if last_use[u] > i)
            for distance, unit in [*slot.options, (0, None)]:
                if unit is not None and unit in used:
                    continue
                if unit is None:
                    next_used = keep
                    next_failed = failed if closes else failed | {slot.ref}
                    gain: Score = _ZERO
                else:
                    next_used = keep | {unit} if last_use[unit] > i else keep
                    next_failed = failed
                    gain = (1 if closes and slot.ref not in failed else 0, 1, -distance)
                if closes:
                    next_failed = next_failed - {slot.ref}
                target = (next_used, next_failed)
                total = _add(score, gain)
                if target not in layer or total > layer[target]:
                    layer[target] = total
                moves.append((state, unit, target, gain))
        forward.append(layer)
        edges.append(moves)

    backward: dict[_State, Score] = dict.fromkeys(forward[-1], _ZERO)
    suffixes: list[dict[_State, Score]] = [backward]
    for i in range(len(slots) - 1, -1, -1):
        current: dict[_State, Score] = {}
        for state, _, target, gain in edges[i]:
            value = _add(gain, suffixes[-1][target])
            if state not in current or value > current[state]:
                current[state] = value
        suffixes.append(current)
    suffixes.reverse()  # suffixes[i]: best score of slots i.. from each state at cut i
    optimum = suffixes[0][start]

    values: dict[tuple[Hashable, str], set[Any]] = defaultdict(set)
    for i, slot in enumerate(slots):
        for state, unit, target, gain in edges[i]:
            if _add(_add(forward[i][state], gain), suffixes[i + 1][target]) == optimum:
                values[(slot.ref, slot.key)].add(unit)
    return values
