"""Settling verifications: gather the whole group that competes, plan its verdicts, apply the plan.

Every path that may produce a verdict — an intake call, a webhook batch, a poll, the deadline —
calls `settle()` inside its write transaction while holding the account's lock, so two paths racing
for one verification serialise and the second sees the first one's verdict (the update is also
guarded by the expected state, and claims by a unique key).

The group is the transitive closure of pending verifications that share an eligible untagged
booking, however long the chain; it is bounded, and a group over the bound is not decided at all
(logged and counted) rather than decided in part. `settle_guarded()` keeps the evidence when
deciding fails: its writes are undone, the caller's stored events and checks are kept, and the
next check tries again from the stored observations.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .apply import apply
from .db import Tx
from .errors import DatabaseUnavailable
from .matching import Booking, eligible
from .plan import Context, Mode, Plan, decide, phase_specs, targets_of, undecided_at_deadline
from .store import counters
from .store import observations as observation_store
from .store import verifications as verification_store
from .store.accounts import Account

log = logging.getLogger("service.verdicts")
MAX_GROUP = 400  # verifications decided together at most; a larger group waits for an operator
MATCH_BUDGET = 50_000  # search steps per component (a few tens of ms); past it the matcher gives up visibly


@dataclass
class Settled:
    """What one settle() call decided: ids that reached a final state, and every outcome."""

    resolved: list[str] = field(default_factory=list)
    plan: Plan = field(default_factory=Plan)


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

    def windows(self, tolerance: timedelta) -> list[tuple[datetime, datetime]]:
        """Where the members' bookings may start (what a check must ask Cal.com about)."""
        return merge_windows((row["window_start_at"] - tolerance, row["window_end_at"] + tolerance) for row in self.rows.values())


def merge_windows(points: Iterable[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    merged: list[tuple[datetime, datetime]] = []
    for lo, hi in sorted(points):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


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
        source=b.source,
    )


async def seeds(tx: Tx, account: Account, *, seqs: Iterable[int] = (), near: Iterable[datetime] = (), tags: Iterable[str] = ()) -> set[int]:
    """Pending verifications concerned by new evidence: named, near changed bookings, or tagged."""
    tolerance = timedelta(seconds=account.match_tolerance_seconds)
    found = set(seqs)
    found |= await verification_store.pending_near(tx, account.id, merge_windows((t - tolerance, t + tolerance) for t in near))
    found |= await verification_store.pending_for_appointments(tx, account.id, sorted(set(tags)))
    return found


async def load_group(tx: Tx, account: Account, start: set[int], *, limit: int | None = None) -> Group:
    """The pending verifications in `start` and every one that shares an eligible untagged booking.

    Loading stops once `limit` verifications beyond `start` have joined; the ones reached last are
    marked incomplete (their own competitors were not followed).
    """
    limit = MAX_GROUP if limit is None else limit
    tolerance = timedelta(seconds=account.match_tolerance_seconds)
    tolerance_ms = account.match_tolerance_seconds * 1000
    group = Group()
    frontier, linking = set(start), list[Booking]()
    while frontier:
        rows, phases = await _load_pending(tx, frontier)
        if linking:  # candidates reached through a shared booking join only if they can use it
            rows = {seq: row for seq, row in rows.items() if seq in start or _can_use(phases[seq], linking, tolerance_ms)}
        group.rows.update(rows)
        group.phases.update({seq: phases[seq] for seq in rows})
        if len(group.rows) > len(start) + limit:
            group.incomplete = set(rows)
            return group
        new = await _load_bookings(tx, account, rows, phases, tolerance)
        fresh = {key: b for key, b in new.items() if key not in group.bookings}
        group.bookings.update(fresh)
        targets = targets_of(rows, phases, account.time_only_matching)
        linking = [
            booking
            for booking in (as_booking(account.id, b) for b in fresh.values() if b.appointment_tag is None)
            if any(eligible(p, booking, tolerance_ms) for t in targets for p in t.phases)
        ]
        windows = merge_windows((b.start - tolerance, b.start + tolerance) for b in linking)
        frontier = await verification_store.pending_near(tx, account.id, windows) - set(group.rows)
    return group


def _can_use(phases: list[dict[str, Any]], bookings: list[Booking], tolerance_ms: int) -> bool:
    return any(eligible(p, b, tolerance_ms) for p in phase_specs(phases) for b in bookings)


async def settle(
    tx: Tx,
    account: Account,
    now: datetime,
    *,
    mode: Mode,
    trigger: str,
    settle_seconds: float,
    seqs: Iterable[int] = (),
    near: Iterable[datetime] = (),
    tags: Iterable[str] = (),
    finalize: Iterable[int] = (),
    answered: Iterable[int] = (),
) -> Settled:
    """Decide the groups concerned by new evidence (or named by the caller) and apply the plan.

    `mode` "instant" (intake, webhook) verifies only with tagged or uncontested bookings; "check"
    (a scheduled check) decides contested ones too. `finalize`: verifications at their deadline;
    `answered`: those whose check just got a complete Cal.com answer.
    """
    start = await seeds(tx, account, seqs=seqs, near=near, tags=tags)
    if not start:
        return Settled()
    group = await load_group(tx, account, start)
    ctx = Context(
        now=now,
        mode=mode,
        trigger=trigger,
        settle_seconds=settle_seconds,
        tolerance_seconds=account.match_tolerance_seconds,
        time_only=account.time_only_matching,
        finalize=frozenset(finalize),
        answered=frozenset(answered),
        max_nodes=MATCH_BUDGET,
    )
    bookings = [as_booking(account.id, b) for b in group.bookings.values()]
    seen_at = {key: b.updated_at for key, b in group.bookings.items()}
    plan = decide(group.rows, group.phases, bookings, ctx, seen_at=seen_at, incomplete=group.incomplete, max_group=MAX_GROUP)
    if plan.too_large:
        log.warning(
            "competing verifications form a group too large to decide; leaving them to their deadline",
            extra={"event": "group_too_large", "account": account.id, "verifications": len(plan.too_large), "limit": MAX_GROUP},
        )
        await counters.bump(tx, "group_too_large")
    if plan.gave_up:
        log.warning(
            "matcher gave up on a group within its budget; nothing in it is decided",
            extra={"event": "matcher_gave_up", "account": account.id, "verifications": len(plan.gave_up)},
        )
        await counters.bump(tx, "matcher_gave_up")
    return Settled(await apply(tx, account, plan, now), plan)


async def settle_guarded(tx: Tx, account: Account, now: datetime, **kwargs: Any) -> Settled:
    """settle(), but a failure to decide undoes only the decision: the caller's evidence is kept.

    At a deadline the verifications still go to review (never pending forever); the next check
    otherwise retries from the stored observations.
    """
    try:
        async with tx.savepoint():
            return await settle(tx, account, now, **kwargs)
    except DatabaseUnavailable:
        raise
    except Exception:
        log.exception("matching failed; the evidence is kept and the next check retries", extra={"event": "settle_failed", "account": account.id})
    await counters.bump(tx, "settle_failed")
    finalize = sorted(set(kwargs.get("finalize", ())))
    if not finalize:
        return Settled()
    rows, phases = await _load_pending(tx, finalize)
    ctx = Context(now=now, mode="check", trigger="poll", settle_seconds=0, tolerance_seconds=account.match_tolerance_seconds,
                  answered=frozenset(kwargs.get("answered", ())))
    plan = Plan()
    for seq in sorted(rows):
        plan.extend(undecided_at_deadline(rows[seq], phases[seq], ctx))
    return Settled(await apply(tx, account, plan, now), plan)


async def _load_pending(tx: Tx, seqs: Iterable[int]) -> tuple[dict[int, dict[str, Any]], dict[int, list[dict[str, Any]]]]:
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
    found: dict[tuple[str, str], observation_store.Available] = {}
    for b in await observation_store.available_between(tx, account.id, merge_windows((t - tolerance, t + tolerance) for t in starts)):
        found[(b.uid, b.seat)] = b
    appointment_ids = sorted({row["appointment_id"] for row in rows.values()})
    for b in await observation_store.available_tagged(tx, account.id, appointment_ids):
        found[(b.uid, b.seat)] = b
    return found
