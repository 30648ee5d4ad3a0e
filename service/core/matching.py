"""The matching engine: pending phases and booking observations in, an assignment out.

Pure: no I/O, no clock. Rules, in the order they apply:

1. A booking tagged `metadata.appointment_id` belongs to that appointment whatever its time or
   other attributes: to the phase named by `metadata.phase`, else to the nearest phase by start.
   Tagged bookings are assigned first; a tag naming another appointment never matches.
2. An untagged booking can satisfy a staff-required phase when it is not gone, starts within the
   tolerance and agrees with every constraint the phase gives (event type, host, attendee e-mail,
   attendee phone).
3. Identity: a phase that names a person (host, attendee e-mail or phone) identifies its booking;
   a phase that gives only times and an event type does not, unless its account opted into
   time-only matching. Identifying phases choose among the untagged bookings before the others;
   the others only find *candidates* among what is left (`identity == "time"`), which never
   verify on their own.
4. A booking satisfies at most one phase. Among all ways to assign the untagged candidates we
   prefer, in this order: more verifications complete, more phases matched, smaller total time
   distance. Where optimal assignments disagree about a phase, that phase is ambiguous: never
   guessed. The search (`search.py`) decides each independent component exactly or, past its
   budget, gives up visibly and decides nothing there.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping

from service.core.bookings import Booking, Outcome, PhaseSpec, Target, distance_ms, eligible
from service.core.candidates import TimeIndex
from service.core.search import Slot, decide_components


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
    pool = sorted((b for b in live.values() if not b.gone), key=lambda b: (b.account, b.start, b.uid, b.seat))
    tolerance_ms = int(round(tolerance_seconds * 1000))

    fixed, used = _assign_tagged(ordered, pool)
    untagged = [b for b in pool if b.appointment_tag is None and b.verifier_tag is None and (b.account, b.uid, b.seat) not in used]
    options = _options(ordered, fixed, untagged, tolerance_ms)

    # Who could take each untagged booking: two or more verifications make it contested.
    wanted_by: dict[tuple[str, str, str], set[Hashable]] = defaultdict(set)
    for (ref, _), found in options.items():
        for _, b in found:
            wanted_by[(b.account, b.uid, b.seat)].add(ref)

    identifying = [(t, p) for t in ordered for p in t.phases if p.key not in fixed[t.ref] and (t.time_only or p.names_someone)]
    first = decide_components([Slot(t.ref, p.key, p.start, options[(t.ref, p.key)]) for t, p in identifying], max_nodes)
    # Time-only phases look only at what the identifying phases cannot take.
    taken = {(b.account, b.uid, b.seat) for values in first.values.values() for b in values if b is not None}
    rest = [(t, p) for t in ordered for p in t.phases if p.key not in fixed[t.ref] and not (t.time_only or p.names_someone)]
    second = decide_components(
        [
            Slot(t.ref, p.key, p.start, [(d, b) for d, b in options[(t.ref, p.key)] if (b.account, b.uid, b.seat) not in taken])
            for t, p in rest
        ],
        max_nodes,
    )
    values = {**first.values, **second.values}
    components = _merge_components(ordered, first.component_of, second.component_of, wanted_by)
    gave_up = first.gave_up | second.gave_up

    outcomes: dict[Hashable, Outcome] = {}
    for target in ordered:
        matched: dict[str, Booking] = dict(fixed[target.ref])
        identity = dict.fromkeys(matched, "tag")
        ambiguous: set[str] = set()
        missing: set[str] = set()
        contested: set[str] = set()
        for phase in target.phases:
            if phase.key in matched:
                continue
            chosen = values.get((target.ref, phase.key), {None})
            if len(chosen) > 1:
                ambiguous.add(phase.key)
            elif chosen == {None}:
                missing.add(phase.key)
            else:
                booking = next(iter(chosen))
                assert booking is not None
                matched[phase.key] = booking
                identity[phase.key] = "person" if phase.names_someone else "time"
                if len(wanted_by[(booking.account, booking.uid, booking.seat)]) > 1:
                    contested.add(phase.key)
        outcomes[target.ref] = Outcome(
            complete=not ambiguous and not missing,
            matched=matched,
            ambiguous=frozenset(ambiguous),
            missing=frozenset(missing),
            identity=identity,
            contested=frozenset(contested),
            component=components[target.ref],
            gave_up=target.ref in gave_up,
        )
    return outcomes


def _options(
    targets: list[Target], fixed: dict[Hashable, dict[str, Booking]], untagged: list[Booking], tolerance_ms: int
) -> dict[tuple[Hashable, str], list[tuple[int, Booking]]]:
    """For each phase not settled by a tag: its eligible untagged bookings, nearest first."""
    index = TimeIndex(untagged)
    found: dict[tuple[Hashable, str], list[tuple[int, Booking]]] = {}
    for target in targets:
        for phase in target.phases:
            if phase.key in fixed[target.ref]:
                continue
            found[(target.ref, phase.key)] = sorted(
                (
                    (distance_ms(phase, b), b)
                    for b in index.near(target.account, phase.start, tolerance_ms)
                    if eligible(phase, b, tolerance_ms)
                ),
                key=lambda item: (item[0], item[1].uid, item[1].seat),
            )
    return found


def _merge_components(
    targets: list[Target],
    first: Mapping[Hashable, int],
    second: Mapping[Hashable, int],
    wanted_by: Mapping[tuple[str, str, str], set[Hashable]],
) -> dict[Hashable, int]:
    """One number per group of verifications that share a candidate booking (in either tier)."""
    parent: dict[Hashable, Hashable] = {t.ref: t.ref for t in targets}

    def find(ref: Hashable) -> Hashable:
        while parent[ref] != ref:
            parent[ref] = parent[parent[ref]]
            ref = parent[ref]
        return ref

    def union(a: Hashable, b: Hashable) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[rb] = ra

    for mapping in (first, second):
        leader: dict[int, Hashable] = {}
        for ref, component in mapping.items():
            union(leader.setdefault(component, ref), ref)
    for refs in wanted_by.values():
        listed = sorted(refs, key=str)
        for ref in listed[1:]:
            union(listed[0], ref)
    numbers: dict[Hashable, int] = {}
    return {t.ref: numbers.setdefault(find(t.ref), len(numbers)) for t in targets}


def _assign_tagged(targets: list[Target], pool: list[Booking]) -> tuple[dict[Hashable, dict[str, Booking]], set[tuple[str, str, str]]]:
    """Rule 1: tagged bookings go to their own appointment, nearest first when several compete.

    A booking the guard created (`verifier_tag`) is its create's verification's; it is also the
    booking of the platform's own verification of that appointment (claims are shared within one
    appointment id), never of another create's verification.
    """
    by_ref = {(t.account, t.verifier_ref): t for t in targets if t.verifier_ref}
    platform: dict[tuple[str, str], list[Target]] = defaultdict(list)
    for target in targets:
        if not target.verifier_ref:
            platform[(target.account, target.appointment_id)].append(target)
    claims: dict[tuple[Hashable, str], list[tuple[int, str, str, Booking]]] = defaultdict(list)
    for booking in pool:
        owners = list(platform.get((booking.account, booking.appointment_tag), ())) if booking.appointment_tag else []
        created_for = by_ref.get((booking.account, booking.verifier_tag)) if booking.verifier_tag else None
        if created_for is not None:
            owners.append(created_for)
        for owner in owners:
            phase = _tagged_phase(owner, booking)
            if phase is not None:
                claims[(owner.ref, phase.key)].append((distance_ms(phase, booking), booking.uid, booking.seat, booking))
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
