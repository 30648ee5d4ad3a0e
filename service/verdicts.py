"""Settling verifications: gather what can compete, run the matcher, write verdicts exactly once.

Every path that may produce a verdict — an intake call, a webhook batch, a poll, the deadline —
calls `settle()` inside its write transaction while holding the account's lock, so two paths racing
for one verification serialise and the second sees the first one's verdict (the update is also
guarded by the expected state, and claims by a unique key).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .db import Tx
from .matching import Booking, Outcome, PhaseSpec, Target, match
from .store import observations as observation_store
from .store import outbox as outbox_store
from .store import verifications as verification_store
from .store.accounts import Account
from .views import render

log = logging.getLogger("service.verdicts")
EVENT_TYPE = "verification.resolved"
_PENDING_CALLBACK = {"state": "pending", "attempts": 0, "last_error": None}


@dataclass
class Settled:
    """What one settle() call decided: ids that reached a final state, and every outcome."""

    resolved: list[str] = field(default_factory=list)
    outcomes: dict[int, Outcome] = field(default_factory=dict)


def merge_windows(points: Iterable[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    merged: list[tuple[datetime, datetime]] = []
    for lo, hi in sorted(points):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


async def settle(
    tx: Tx,
    account: Account,
    now: datetime,
    *,
    trigger: str,
    near: Iterable[datetime] = (),
    tags: Iterable[str] = (),
    seqs: Iterable[int] = (),
    finalize: Iterable[int] = (),
    answered: Iterable[int] = (),
) -> Settled:
    """Match the pending verifications concerned by new evidence (or by the caller) and apply verdicts.

    `near`: booking starts that changed; `tags`: appointment ids named by bookings; `seqs`: verifications
    to look at anyway; `finalize`: verifications whose deadline has come (incomplete → manual review);
    `answered`: those that got a complete Cal.com answer in this tick.
    """
    tolerance = timedelta(seconds=account.match_tolerance_seconds)
    wanted = set(seqs)
    wanted |= await verification_store.pending_near(tx, account.id, merge_windows((t - tolerance, t + tolerance) for t in near))
    wanted |= await verification_store.pending_for_appointments(tx, account.id, sorted(set(tags)))
    if not wanted:
        return Settled()

    rows, phases = await _load_pending(tx, wanted)
    available = await _load_bookings(tx, account, rows, phases, tolerance)
    # One hop outwards: verifications that compete for these bookings are decided together.
    untagged = [b.start_at for b in available.values() if b.appointment_tag is None]
    extra = await verification_store.pending_near(tx, account.id, merge_windows((t - tolerance, t + tolerance) for t in untagged))
    extra -= set(rows)
    if extra:
        more_rows, more_phases = await _load_pending(tx, extra)
        rows.update(more_rows)
        phases.update(more_phases)
        available.update(await _load_bookings(tx, account, more_rows, more_phases, tolerance))

    targets = [
        Target(
            ref=seq,
            account=account.id,
            appointment_id=row["appointment_id"],
            phases=tuple(
                PhaseSpec(p["key"], p["start_at"], p["event_type_id"], p["host_email"], p["attendee_email"])
                for p in phases[seq]
                if p["staff_required"]
            ),
        )
        for seq, row in rows.items()
    ]
    bookings = [
        Booking(
            account=account.id,
            uid=b.uid,
            seat=b.seat,
            start=b.start_at,
            booking_id=b.booking_id,
            event_type_id=b.event_type_id,
            hosts=frozenset(b.hosts),
            attendees=frozenset(b.attendees),
            appointment_tag=b.appointment_tag,
            phase_tag=b.phase_tag,
            source=b.source,
        )
        for b in available.values()
    ]
    outcomes = match(targets, bookings, account.match_tolerance_seconds)
    settled = Settled(outcomes=outcomes)
    finalize, answered = set(finalize), set(answered)
    for seq in sorted(rows):
        outcome, row = outcomes[seq], rows[seq]
        if outcome.complete:
            via = trigger if trigger in ("webhook", "poll") else _latest_source(outcome, available)
            await _verified(tx, account, row, phases[seq], outcome, now, via)
            settled.resolved.append(row["id"])
        elif seq in finalize:
            ever_answered = row["complete_checks"] > 0 or seq in answered
            await _manual_review(tx, account, row, phases[seq], outcome, now, ever_answered)
            settled.resolved.append(row["id"])
        else:
            await _provisional(tx, phases[seq], outcome)
    return settled


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


def _latest_source(outcome: Outcome, available: dict[tuple[str, str], observation_store.Available]) -> str:
    latest = max((available[(b.uid, b.seat)] for b in outcome.matched.values()), key=lambda b: b.updated_at)
    return latest.source


def _phase_update(phase: dict[str, Any], status: str, booking: Booking | None, active: bool) -> dict[str, Any]:
    return {
        "verification_seq": phase["verification_seq"],
        "key": phase["key"],
        "status": status,
        "active": active,
        "booking_uid": booking.uid if booking else None,
        "booking_seat": booking.seat if booking else None,
        "booking_id": booking.booking_id if booking else None,
        "booking_start_at": booking.start if booking else None,
        "booking_source": booking.source if booking else None,
    }


async def _claim_all(tx: Tx, account: Account, seq: int, matched: dict[str, Booking], now: datetime) -> dict[str, Booking]:
    """Claim each matched booking for its phase; answer the ones this verification now holds."""
    held: dict[str, Booking] = {}
    for key, booking in sorted(matched.items()):
        if await observation_store.claim(tx, account.id, booking.uid, booking.seat, seq, key, now):
            held[key] = booking
    return held


async def _verified(
    tx: Tx, account: Account, row: dict[str, Any], phases: list[dict[str, Any]], outcome: Outcome, now: datetime, via: str
) -> None:
    held = await _claim_all(tx, account, row["seq"], dict(outcome.matched), now)
    if len(held) != len(outcome.matched):
        # Cannot happen while the account lock is held; refuse rather than verify on a lost claim.
        raise RuntimeError(f"claim conflict while verifying {row['id']}")
    if not await verification_store.resolve(tx, row["seq"], expected="pending", status="verified", now=now, resolved_via=via):
        raise RuntimeError(f"verification {row['id']} changed under its account lock")
    updates = [
        _phase_update(p, "matched", held[p["key"]], False) if p["staff_required"] else _phase_update(p, "not_required", None, False)
        for p in phases
    ]
    await verification_store.set_phases(tx, updates)
    final = {**row, "status": "verified", "resolved_via": via, "resolved_at": now}
    await _announce(tx, account, final, phases, updates, now)
    for p in updates:
        if p["status"] == "matched":
            log.info(
                "Verified phase booking in Cal.com",
                extra={
                    "event": "phase_verified",
                    "verification_id": row["id"],
                    "appointment_id": row["appointment_id"],
                    "phase": p["key"],
                    "booking_id": p["booking_id"],
                    "booking_uid": p["booking_uid"],
                },
            )
    log.info(
        "post-sync verification: bookings found, marking as synced",
        extra={
            "event": "verification_verified",
            "verification_id": row["id"],
            "account": account.id,
            "appointment_id": row["appointment_id"],
            "resolved_via": via,
        },
    )


async def _manual_review(
    tx: Tx,
    account: Account,
    row: dict[str, Any],
    phases: list[dict[str, Any]],
    outcome: Outcome,
    now: datetime,
    ever_answered: bool,
) -> None:
    held = await _claim_all(tx, account, row["seq"], dict(outcome.matched), now)
    ambiguous = set(outcome.ambiguous)
    if not ever_answered:
        reason = "calcom_unavailable"
    elif ambiguous:
        reason = "ambiguous_match"
    elif held:
        reason = "partial_match"
    else:
        reason = "no_booking_found"
    if not await verification_store.resolve(
        tx, row["seq"], expected="pending", status="manual_review", now=now, resolved_via="system", review_reason=reason
    ):
        raise RuntimeError(f"verification {row['id']} changed under its account lock")
    updates = []
    for p in phases:
        key = p["key"]
        if not p["staff_required"]:
            updates.append(_phase_update(p, "not_required", None, False))
        elif key in held:
            updates.append(_phase_update(p, "matched", held[key], False))
        else:
            updates.append(_phase_update(p, "ambiguous" if key in ambiguous else "missing", None, False))
    await verification_store.set_phases(tx, updates)
    final = {**row, "status": "manual_review", "review_reason": reason, "resolved_via": "system", "resolved_at": now}
    await _announce(tx, account, final, phases, updates, now)
    missing = [u["key"] for u in updates if u["status"] in ("missing", "ambiguous")]
    log.warning(
        "post-sync verification: no matching booking found, queued for manual review",
        extra={
            "event": "verification_manual_review",
            "verification_id": row["id"],
            "account": account.id,
            "appointment_id": row["appointment_id"],
            "review_reason": reason,
            "missing_phases": missing,
        },
    )


async def _provisional(tx: Tx, phases: list[dict[str, Any]], outcome: Outcome) -> None:
    """Show the best evidence so far on a still-pending verification (nothing is claimed yet)."""
    updates = []
    for p in phases:
        if not p["staff_required"]:
            continue
        booking = outcome.matched.get(p["key"])
        status = "matched" if booking else "pending"
        if p["status"] != status or p["booking_uid"] != (booking.uid if booking else None) or (
            booking and p["booking_seat"] != booking.seat
        ):
            updates.append(_phase_update(p, status, booking, True))
    if updates:
        await verification_store.set_phases(tx, updates)


async def _announce(
    tx: Tx, account: Account, row: dict[str, Any], phases: list[dict[str, Any]], updates: list[dict[str, Any]], now: datetime
) -> None:
    """Tell waiting callers (after commit) and, with a callback URL, write the outbox event."""
    await tx.notify("verdicts", row["id"])
    if not account.callback_url:
        return
    merged = [{**p, **u} for p, u in zip(phases, updates)]
    await write_event(tx, account.id, row, merged, now)


async def write_event(tx: Tx, account_id: str, row: dict[str, Any], phases: list[dict[str, Any]], now: datetime) -> None:
    """Write a verdict event for the callback URL, in the verdict's own transaction."""
    payload = json.dumps({"type": EVENT_TYPE, "verification": render(row, phases, _PENDING_CALLBACK)}, separators=(",", ":"))
    await outbox_store.add(
        tx,
        event_id=f"msg_{uuid.uuid4().hex}",
        verification_seq=row["seq"],
        account=account_id,
        event_type=EVENT_TYPE,
        payload=payload,
        now=now,
    )
