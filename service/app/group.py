"""Loading a group: the pending verifications that compete with the ones concerned, however long the chain.

Two verifications compete when one untagged booking is eligible for a phase of each. The group of
a verification is the transitive closure of that relation; deciding on part of it would be a
guess. Loading starts from the time windows of the verifications concerned and widens, doubling
its margin each round, only where a member's booking could reach a verification outside what is
loaded — so a chain of 200 takes a few rounds, not 200. Past the bound the groups still reaching
out are marked incomplete and are not decided.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from service.core.bookings import Booking
from service.core.plan import closure, targets_of
from service.core.times import merge_windows
from service.store.connector import Tx
from service.store.queries import observations as observation_store
from service.store.queries import verifications as verification_store
from service.store.queries.accounts import Account

MAX_GROUP = 400  # verifications decided together at most; a larger group waits for an operator
MAX_ROUNDS = 12


@dataclass
class Group:
    """Pending verifications with every booking that could concern them.

    `incomplete`: members whose competitors were not all loaded (the loading bound was reached);
    the group of such a member is not decided.
    """

    rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    phases: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    bookings: dict[tuple[str, str], observation_store.Available] = field(default_factory=dict)
    incomplete: set[int] = field(default_factory=set)
    converted: dict[tuple[str, str], Booking] = field(default_factory=dict)  # the matcher's view of `bookings`

    def windows(self, tolerance: timedelta) -> list[tuple[datetime, datetime]]:
        """Where the members' bookings may start (what a check must ask Cal.com about)."""
        return merge_windows((row["window_start_at"] - tolerance, row["window_end_at"] + tolerance) for row in self.rows.values())


def _covered(window: tuple[datetime, datetime], loaded: list[tuple[datetime, datetime]]) -> bool:
    return any(lo <= window[0] and window[1] <= hi for lo, hi in loaded)


def as_booking(account: str, b: observation_store.Available) -> Booking:
    return Booking(
        account=account,
        uid=b.uid,
        seat=b.seat,
        start=b.start_at,
        booking_id=b.booking_id,
        event_type_id=b.event_type_id,
        hosts=frozenset(b.hosts),
        attendees=frozenset(b.attendees),
        phones=frozenset(b.phones),
        appointment_tag=b.appointment_tag,
        phase_tag=b.phase_tag,
        verifier_tag=b.verifier_ref,
        source=b.source,
    )


Windows = list[tuple[datetime, datetime]]


async def seeds(
    tx: Tx, account: Account, *, seqs: Iterable[int] = (), near: Iterable[datetime] = (), tags: Iterable[str] = ()
) -> tuple[set[int], Windows]:
    """Pending verifications concerned by new evidence: named, near changed bookings, or tagged;
    and the windows probed for them (every pending verification with a phase inside is among them).

    `tags` are appointment ids; a booking the guard created without one names its verification
    as `guard:<verifier_ref>` (`evidence_tags`).
    """
    tolerance = timedelta(seconds=account.match_tolerance_seconds)
    found = set(seqs)
    probed = merge_windows((t - tolerance, t + tolerance) for t in near)
    found |= await verification_store.pending_near(tx, account.id, probed)
    found |= await verification_store.pending_for_appointments(tx, account.id, sorted(set(tags)))
    return found, probed


async def load_group(
    tx: Tx, account: Account, start: set[int], *, limit: int | None = None, probed: Iterable[tuple[datetime, datetime]] = ()
) -> Group:
    """The pending verifications in `start` and every one that competes with them, transitively.

    `probed`: windows whose pending verifications are all in `start` already (not probed again).
    """
    done = list(probed)
    limit = MAX_GROUP if limit is None else limit
    tolerance = timedelta(seconds=account.match_tolerance_seconds)
    tolerance_ms = account.match_tolerance_seconds * 1000
    rows, phases = await load_pending(tx, start)
    bookings = await _load_bookings(tx, account, rows, phases, tolerance)
    converted: dict[tuple[str, str], Booking] = {}
    loaded = merge_windows(
        (p["start_at"] - tolerance, p["start_at"] + tolerance) for seq in rows for p in phases[seq] if p["staff_required"]
    )
    margin = 4 * tolerance  # wide enough that a typical chain is loaded in one or two rounds
    outside: list[tuple[datetime, datetime]] = []
    for _ in range(MAX_ROUNDS):
        # Only what no earlier probe covered: each window's pending verifications are loaded by then.
        fresh = [w for w in loaded if not _covered(w, done)]
        near = await verification_store.pending_near(tx, account.id, fresh) - set(rows)
        done = merge_windows([*done, *fresh])
        if near:
            more_rows, more_phases = await load_pending(tx, near)
            rows.update(more_rows)
            phases.update(more_phases)
            bookings.update(await _load_bookings(tx, account, more_rows, more_phases, tolerance))
        for key, b in bookings.items():
            if key not in converted:
                converted[key] = as_booking(account.id, b)
        targets = targets_of(rows, phases, account.time_only_matching)
        members, links = closure(set(rows) & start, targets, converted.values(), tolerance_ms)
        needed = merge_windows((b.start - tolerance, b.start + tolerance) for found in links.values() for b in found)
        outside = [w for w in needed if not _covered(w, loaded)]
        if not outside or len(members) > len(start) + limit:
            break
        loaded = merge_windows([*loaded, *((lo - margin, hi + margin) for lo, hi in outside)])
        margin *= 2
    group = Group(bookings=bookings, converted=converted)
    group.rows = {seq: rows[seq] for seq in members}
    group.phases = {seq: phases[seq] for seq in members}
    if outside:  # the loading stopped early: groups that still reach out are not complete
        reaching = {
            members[seq]
            for seq, found in links.items()
            if any(not _covered((b.start - tolerance, b.start + tolerance), loaded) for b in found)
        }
        group.incomplete = {seq for seq, component in members.items() if component in reaching}
    return group


async def load_pending(tx: Tx, seqs: Iterable[int]) -> tuple[dict[int, dict[str, Any]], dict[int, list[dict[str, Any]]]]:
    found = [r for r in await verification_store.by_seqs(tx, sorted(seqs)) if r["status"] == "pending"]
    rows = {r["seq"]: r for r in found}
    return rows, await verification_store.phases_of(tx, list(rows))


async def _load_bookings(
    tx: Tx,
    account: Account,
    rows: dict[int, dict[str, Any]],
    phases: dict[int, list[dict[str, Any]]],
    tolerance: timedelta,
) -> dict[tuple[str, str], observation_store.Available]:
    starts = [p["start_at"] for seq in rows for p in phases[seq] if p["staff_required"]]
    windows = merge_windows((t - tolerance, t + tolerance) for t in starts)
    appointment_ids = sorted({row["appointment_id"] for row in rows.values()})
    refs = sorted({row["verifier_ref"] for row in rows.values() if row.get("verifier_ref")})
    return {(b.uid, b.seat): b for b in await observation_store.available_for(tx, account.id, windows, appointment_ids, refs)}


def evidence_tags(observations: Iterable[Any]) -> list[str]:
    """The appointment ids new observations are tagged with, and `guard:<ref>` for the guard's creates."""
    listed = list(observations)
    found = {o.appointment_tag for o in listed if o.appointment_tag}
    found |= {guard_appointment(o.verifier_ref) for o in listed if o.verifier_ref}
    return sorted(found)


def guard_appointment(verifier_ref: str) -> str:
    """The appointment id of a guard verification whose create named none."""
    return f"guard:{verifier_ref}"
