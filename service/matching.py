"""The matching engine (SPEC §5): pending phases and booking observations in, verdicts out.

Pure: no I/O, no clock. Rules, in the order they apply:

1. A booking tagged `metadata.appointment_id` belongs to that appointment whatever its time or
   other attributes: to the phase named by `metadata.phase`, else to the nearest phase by start.
   Tagged bookings are assigned first; a tag naming another appointment never matches.
2. An untagged booking can satisfy a staff-required phase when it is not gone, starts within the
   tolerance and agrees with every constraint the phase gives (event type, host, attendee).
3. A booking satisfies at most one phase. Among all ways to assign the untagged candidates we
   prefer, in this order: more verifications complete, more phases matched, smaller total time
   distance. A verification is complete only if every optimal assignment completes it the same
   way; where optimal assignments disagree about a phase, that phase is ambiguous: never guessed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

BookingKey = tuple[str, str]  # (uid, seat); seat is "" for a booking without seats
_MS = timedelta(milliseconds=1)
_NONE = None


@dataclass(frozen=True)
class PhaseSpec:
    """A staff-required phase as the matcher sees it (e-mails compared case-insensitively)."""

    key: str
    start: datetime
    event_type_id: int | None = None
    host_email: str | None = None
    attendee_email: str | None = None

    def __post_init__(self) -> None:
        for name in ("host_email", "attendee_email"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, value.strip().lower() or None)


@dataclass(frozen=True)
class Target:
    """A pending verification: its staff-required phases, in their recorded order."""

    ref: Hashable
    account: str
    appointment_id: str
    phases: tuple[PhaseSpec, ...]


@dataclass(frozen=True)
class Booking:
    """One claimable Cal.com booking (or one seat of a seated booking)."""

    account: str
    uid: str
    start: datetime
    seat: str = ""
    booking_id: int | None = None
    event_type_id: int | None = None
    hosts: frozenset[str] = frozenset()
    attendees: frozenset[str] = frozenset()
    appointment_tag: str | None = None
    phase_tag: str | None = None
    gone: bool = False
    source: str = "webhook"

    def __post_init__(self) -> None:
        object.__setattr__(self, "hosts", frozenset(h.strip().lower() for h in self.hosts if h))
        object.__setattr__(self, "attendees", frozenset(a.strip().lower() for a in self.attendees if a))
        for name in ("appointment_tag", "phase_tag"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, str(value) if str(value) != "" else None)

    @property
    def key(self) -> BookingKey:
        return (self.uid, self.seat)


@dataclass(frozen=True)
class Outcome:
    """What matching concluded for one verification."""

    complete: bool
    matched: Mapping[str, Booking] = field(default_factory=dict)
    ambiguous: frozenset[str] = frozenset()
    missing: frozenset[str] = frozenset()


def distance_ms(phase: PhaseSpec, booking: Booking) -> int:
    return abs((booking.start - phase.start) // _MS)


def eligible(phase: PhaseSpec, booking: Booking, tolerance_ms: int) -> bool:
    """Can this untagged booking satisfy this phase? (tolerance and every given constraint)"""
    if distance_ms(phase, booking) > tolerance_ms:
        return False
    if phase.event_type_id is not None and booking.event_type_id != phase.event_type_id:
        return False
    if phase.host_email and phase.host_email not in booking.hosts:
        return False
    if phase.attendee_email and phase.attendee_email not in booking.attendees:
        return False
    return True


def match(
    targets: Iterable[Target],
    bookings: Iterable[Booking],
    tolerance_seconds: float,
    *,
    max_nodes: int = 200_000,
) -> dict[Hashable, Outcome]:
    """Decide every target at once; the answer does not depend on the order of the inputs."""
    ordered = sorted(targets, key=lambda t: (t.account, str(t.ref)))
    live: dict[tuple[str, str, str], Booking] = {}
    for booking in sorted(bookings, key=lambda b: (b.account, b.uid, b.seat, b.gone)):
        live.setdefault((booking.account, booking.uid, booking.seat), booking)
    pool = [b for b in live.values() if not b.gone]
    tolerance_ms = int(round(tolerance_seconds * 1000))

    fixed, used = _assign_tagged(ordered, pool)
    slots: list[tuple[Target, PhaseSpec, list[tuple[int, Booking]]]] = []
    for target in ordered:
        for phase in target.phases:
            if phase.key in fixed[target.ref]:
                continue
            options = sorted(
                (
                    (distance_ms(phase, b), b)
                    for b in pool
                    if b.account == target.account
                    and b.appointment_tag is None
                    and (b.account, b.uid, b.seat) not in used
                    and eligible(phase, b, tolerance_ms)
                ),
                key=lambda item: (item[0], item[1].uid, item[1].seat),
            )
            slots.append((target, phase, options))

    decided: dict[tuple[Hashable, str], set[Booking | None]] = {}
    for component in _components(ordered, slots):
        decided.update(_search(component, fixed, max_nodes))

    outcomes: dict[Hashable, Outcome] = {}
    for target in ordered:
        matched: dict[str, Booking] = dict(fixed[target.ref])
        ambiguous: set[str] = set()
        missing: set[str] = set()
        for phase in target.phases:
            if phase.key in matched:
                continue
            values = decided.get((target.ref, phase.key), {_NONE})
            if len(values) > 1:
                ambiguous.add(phase.key)
            elif values == {_NONE}:
                missing.add(phase.key)
            else:
                matched[phase.key] = next(iter(values))  # type: ignore[assignment]
        complete = not ambiguous and not missing
        outcomes[target.ref] = Outcome(complete, matched, frozenset(ambiguous), frozenset(missing))
    return outcomes


def _assign_tagged(
    targets: list[Target], pool: list[Booking]
) -> tuple[dict[Hashable, dict[str, Booking]], set[tuple[str, str, str]]]:
    """Rule 1: tagged bookings go to their own appointment, nearest first when several compete."""
    by_appointment: dict[tuple[str, str], Target] = {}
    for target in targets:
        by_appointment.setdefault((target.account, target.appointment_id), target)
    claims: dict[tuple[Hashable, str], list[tuple[int, str, str, Booking]]] = defaultdict(list)
    for booking in pool:
        if booking.appointment_tag is None:
            continue
        target = by_appointment.get((booking.account, booking.appointment_tag))
        if target is None:
            continue
        phase = _tagged_phase(target, booking)
        if phase is not None:
            claims[(target.ref, phase.key)].append((distance_ms(phase, booking), booking.uid, booking.seat, booking))
    fixed: dict[Hashable, dict[str, Booking]] = {t.ref: {} for t in targets}
    used: set[tuple[str, str, str]] = set()
    for (ref, key), candidates in claims.items():
        booking = min(candidates, key=lambda c: c[:3])[3]
        fixed[ref][key] = booking
        used.add((booking.account, booking.uid, booking.seat))
    return fixed, used


def _tagged_phase(target: Target, booking: Booking) -> PhaseSpec | None:
    if booking.phase_tag is not None:
        return next((p for p in target.phases if p.key == booking.phase_tag), None)
    if not target.phases:
        return None
    return min(target.phases, key=lambda p: distance_ms(p, booking))  # min keeps the first on ties


_Slot = tuple[Target, PhaseSpec, list[tuple[int, Booking]]]


def _components(targets: list[Target], slots: list[_Slot]) -> list[list[_Slot]]:
    """Targets that compete for a booking are decided together; the rest independently."""
    parent: dict[Hashable, Hashable] = {t.ref: t.ref for t in targets}

    def find(ref: Hashable) -> Hashable:
        while parent[ref] != ref:
            parent[ref] = parent[parent[ref]]
            ref = parent[ref]
        return ref

    first_seen: dict[tuple[str, str, str], Hashable] = {}
    for target, _, options in slots:
        for _, booking in options:
            key = (booking.account, booking.uid, booking.seat)
            other = first_seen.setdefault(key, target.ref)
            a, b = find(other), find(target.ref)
            if a != b:
                parent[b] = a
    groups: dict[Hashable, list[_Slot]] = defaultdict(list)
    for slot in slots:
        groups[find(slot[0].ref)].append(slot)
    return list(groups.values())


def _search(
    slots: list[_Slot], fixed: dict[Hashable, dict[str, Booking]], max_nodes: int
) -> dict[tuple[Hashable, str], set[Booking | None]]:
    """Branch and bound over one component; collect, per slot, its value in every optimal solution."""
    count = len(slots)
    last_of_target = {slots[i][0].ref: i for i in range(count)}
    # Upper bounds for what the remaining slots [i:] can still add.
    rest_matched = [0] * (count + 1)
    rest_distance = [0] * (count + 1)
    for i in range(count - 1, -1, -1):
        options = slots[i][2]
        rest_matched[i] = rest_matched[i + 1] + (1 if options else 0)
        rest_distance[i] = rest_distance[i + 1] + (options[0][0] if options else 0)
    rest_complete = [0] * (count + 1)
    completable: dict[Hashable, bool] = {}
    for i in range(count - 1, -1, -1):
        ref = slots[i][0].ref
        completable[ref] = completable.get(ref, True) and bool(slots[i][2])
        rest_complete[i] = rest_complete[i + 1]
        first_of_target = i == 0 or slots[i - 1][0].ref != ref
        if first_of_target and completable[ref]:
            rest_complete[i] += 1

    best: list[tuple[int, int, int] | None] = [None]
    seen: list[list[set[Booking | None]]] = [[set() for _ in range(count)]]
    chosen: list[Booking | None] = [None] * count
    used: set[tuple[str, str, str]] = set()
    nodes = [0]
    aborted = [False]

    def record(score: tuple[int, int, int]) -> None:
        if best[0] is None or score > best[0]:
            best[0] = score
            seen[0] = [{value} for value in chosen]
        elif score == best[0]:
            for i, value in enumerate(chosen):
                seen[0][i].add(value)

    def visit(i: int, completed: int, matched: int, distance: int, target_ok: bool) -> None:
        if aborted[0]:
            return
        nodes[0] += 1
        if nodes[0] > max_nodes:
            aborted[0] = True
            return
        if i == count:
            record((completed, matched, -distance))
            return
        target = slots[i][0]
        starts_target = i == 0 or slots[i - 1][0].ref != target.ref
        ok = True if starts_target else target_ok
        bound_complete = completed + rest_complete[i] + (0 if starts_target or not ok else 1)
        bound = (bound_complete, matched + rest_matched[i], -(distance + rest_distance[i]))
        if best[0] is not None and bound < best[0]:
            return
        closes = last_of_target[target.ref] == i
        for dist, booking in slots[i][2]:
            key = (booking.account, booking.uid, booking.seat)
            if key in used:
                continue
            used.add(key)
            chosen[i] = booking
            done = 1 if (closes and ok) else 0
            visit(i + 1, completed + done, matched + 1, distance + dist, ok)
            used.discard(key)
        chosen[i] = None
        visit(i + 1, completed, matched, distance, False)

    visit(0, 0, 0, 0, True)
    if aborted[0]:
        # Too many ways to tell apart: decide nothing here rather than guess.
        return {
            (target.ref, phase.key): {_NONE, *(b for _, b in options)}
            for target, phase, options in slots
        }
    return {(slots[i][0].ref, slots[i][1].key): seen[0][i] for i in range(count)}
