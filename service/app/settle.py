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
from datetime import datetime
from typing import Any

from service.app import group as groups
from service.app.apply import Applied, apply
from service.app.group import guard_appointment, load_group, seeds
from service.core import duplicates
from service.core.plan import Context, Mode, Plan, decide, undecided_at_deadline
from service.errors import DatabaseUnavailable
from service.store.connector import Tx
from service.store.queries import counters
from service.store.queries import duplicates as duplicate_store
from service.store.queries.accounts import Account

log = logging.getLogger("service.app.settle")
MATCH_BUDGET = 50_000  # search steps per component (a few tens of ms); past it the matcher gives up visibly


@dataclass
class Settled:
    """What one settle() call decided: what reached a final state (as written), and every outcome."""

    applied: Applied = field(default_factory=Applied)
    plan: Plan = field(default_factory=Plan)

    @property
    def resolved(self) -> list[str]:
        """The ids that reached a final state."""
        return self.applied.resolved


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
    probed: Iterable[tuple[datetime, datetime]] = (),
) -> Settled:
    """Decide the groups concerned by new evidence (or named by the caller) and apply the plan.

    `mode` "instant" (intake, webhook) verifies only with tagged or uncontested bookings; "check"
    (a scheduled check) decides contested ones too. `finalize`: verifications at their deadline;
    `answered`: those whose check just got a complete Cal.com answer. `probed`: windows the caller
    already probed for pending verifications, all of them among `seqs`.
    """
    tags = sorted(set(tags))
    start, near_probed = await seeds(tx, account, seqs=seqs, near=near, tags=tags)
    if not start:
        await _duplicates(tx, account, tags, now)
        return Settled()
    group = await load_group(tx, account, start, probed=[*probed, *near_probed])
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
    bookings = list(group.converted.values())
    seen_at = {key: b.updated_at for key, b in group.bookings.items()}
    plan = decide(group.rows, group.phases, bookings, ctx, seen_at=seen_at, incomplete=group.incomplete, max_group=groups.MAX_GROUP)
    if plan.too_large:
        log.warning(
            "competing verifications form a group too large to decide; leaving them to their deadline",
            extra={"event": "group_too_large", "account": account.id, "verifications": len(plan.too_large), "limit": groups.MAX_GROUP},
        )
        await counters.bump(tx, "group_too_large")
    if plan.gave_up:
        log.warning(
            "matcher gave up on a group within its budget; nothing in it is decided",
            extra={"event": "matcher_gave_up", "account": account.id, "verifications": len(plan.gave_up)},
        )
        await counters.bump(tx, "matcher_gave_up")
    applied = await apply(tx, account, plan, now)
    decided = {group.rows[v.seq]["appointment_id"] for v in plan.verdicts if v.seq in group.rows}
    decided |= {
        guard_appointment(group.rows[v.seq]["verifier_ref"]) for v in plan.verdicts if group.rows.get(v.seq, {}).get("verifier_ref")
    }
    await _duplicates(tx, account, sorted(set(tags) | decided), now)
    return Settled(applied, plan)


async def _duplicates(tx: Tx, account: Account, tags: list[str], now: datetime) -> None:
    """Record bookings tagged like one already claimed (they never change a verdict)."""
    found = await _find_duplicates(tx, account, tags)
    if found:
        await _add_duplicates(tx, account, found, now)


async def note_duplicates(tx: Tx, account: Account, tags: list[str], now: datetime) -> None:
    """`_duplicates` outside a settle, for tags with nothing pending: recording them may fail without
    taking the caller's evidence along (the write is guarded; the read is one statement)."""
    found = await _find_duplicates(tx, account, tags)
    if not found:
        return
    try:
        async with tx.savepoint():
            await _add_duplicates(tx, account, found, now)
    except DatabaseUnavailable:
        raise
    except Exception:
        log.exception("duplicate bookings could not be recorded", extra={"event": "duplicates_failed", "account": account.id})


async def _find_duplicates(tx: Tx, account: Account, tags: list[str]) -> list[dict[str, Any]]:
    if not tags:
        return []
    refs = [t.removeprefix("guard:") for t in tags if t.startswith("guard:")]
    appointments = [t for t in tags if not t.startswith("guard:")]
    return duplicates.find(await duplicate_store.tagged(tx, account.id, appointments, refs))


async def _add_duplicates(tx: Tx, account: Account, found: list[dict[str, Any]], now: datetime) -> None:
    await duplicate_store.add(tx, account.id, found, now)
    log.warning(
        "duplicate booking in Cal.com: tagged like a booking already claimed; cancel it there",
        extra={"event": "duplicate_booking", "account": account.id, "uids": [d["uid"] for d in found]},
    )


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
        log.exception(
            "matching failed; the evidence is kept and the next check retries", extra={"event": "settle_failed", "account": account.id}
        )
    await counters.bump(tx, "settle_failed")
    finalize = sorted(set(kwargs.get("finalize", ())))
    if not finalize:
        return Settled()
    rows, phases = await groups.load_pending(tx, finalize)
    ctx = Context(
        now=now,
        mode="check",
        trigger="poll",
        settle_seconds=0,
        tolerance_seconds=account.match_tolerance_seconds,
        answered=frozenset(kwargs.get("answered", ())),
    )
    plan = Plan()
    for seq in sorted(rows):
        plan.extend(undecided_at_deadline(rows[seq], phases[seq], ctx))
    return Settled(await apply(tx, account, plan, now), plan)
