"""Writing plans: the one place that claims bookings, writes final states, outbox events and wake-ups.

Every path that reaches a verdict — intake, webhook, poll, deadline, kill switch, operator — builds
a `Plan` (plan.py) and hands it here, inside its write transaction. Claims are taken first (a
unique key makes each booking unit claimable once), then each verdict is written only if the
verification is still in the state the plan expected; either failing aborts the whole plan.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from service.core.plan import PhaseChange, Plan, Verdict
from service.core.views import render
from service.errors import Conflict
from service.store.connector import Tx
from service.store.queries import claims as claim_store
from service.store.queries import duplicates as duplicate_store
from service.store.queries import outbox as outbox_store
from service.store.queries import verifications as verification_store
from service.store.queries.accounts import Account

log = logging.getLogger("service.app.settle")
EVENT_TYPE = "verification.resolved"
_PENDING_CALLBACK = {"state": "pending", "attempts": 0, "last_error": None}


@dataclass
class Applied:
    """What a plan wrote: the ids it brought to a final state, and those verifications as written
    (rows and phases, read back once for their announcement; a view of them needs no second read)."""

    resolved: list[str] = field(default_factory=list)
    rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    phases: dict[int, list[dict[str, Any]]] = field(default_factory=dict)


class ClaimTaken(Conflict):
    """A booking the plan claims already belongs to another verification."""

    def __init__(self, uid: str, owner_id: str | None) -> None:
        held_by = f"verification {owner_id}" if owner_id else "another verification"
        super().__init__(f"booking {uid} is already claimed by {held_by}")
        self.uid = uid
        self.owner_id = owner_id


class StaleVerdict(Conflict):
    """The verification left the state the plan expected (someone else decided it first)."""


async def apply(tx: Tx, account: Account, plan: Plan, now: datetime) -> Applied:
    """Write one plan; answer the verifications it brought to a final state."""
    for seq, key in plan.releases:
        await claim_store.release(tx, account.id, seq, key)
    if plan.claims:
        units = [(c.uid, c.seat, c.seq, c.key) for c in plan.claims]
        owners = await claim_store.claim_many(tx, account.id, units, now)
        for claim in plan.claims:
            owner = owners.get((claim.uid, claim.seat))
            if owner != claim.seq:
                both = {row["seq"]: row for row in await verification_store.by_seqs(tx, [claim.seq] + ([owner] if owner else []))}
                if owner in both and both[owner]["appointment_id"] == both[claim.seq]["appointment_id"]:
                    continue  # claims are shared within one appointment id (the guard's and the platform's record)
                raise ClaimTaken(claim.uid, both[owner]["id"] if owner in both else None)
    alike: dict[tuple[Any, ...], list[Verdict]] = {}
    for verdict in plan.verdicts:
        same_update = (
            verdict.expected,
            verdict.status,
            verdict.resolved_via,
            verdict.review_reason,
            verdict.resolution,
            verdict.note,
            verdict.resolved_by,
        )
        alike.setdefault(same_update, []).append(verdict)
    for (expected, status, via, reason, resolution, note, by), same in alike.items():
        moved = await verification_store.resolve_many(
            tx,
            [v.seq for v in same],
            expected=expected,
            status=status,
            now=now,
            resolved_via=via,
            review_reason=reason,
            resolution=resolution,
            note=note,
            resolved_by=by,
        )
        stale = [v.id for v in same if v.seq not in moved]
        if stale:
            raise StaleVerdict(f"verification {stale[0]} is no longer {expected}; read it again")
    await verification_store.set_phases(tx, [_phase_row(change) for change in plan.phases])
    if not plan.verdicts:
        return Applied()
    rows, phases = await _announce(tx, account, plan.verdicts, now)
    return Applied([verdict.id for verdict in plan.verdicts], rows, phases)


def _phase_row(change: PhaseChange) -> dict[str, Any]:
    booking = change.booking
    return {
        "verification_seq": change.seq,
        "key": change.key,
        "status": change.status,
        "active": change.active,
        "booking_uid": booking.uid if booking else None,
        "booking_seat": booking.seat if booking else None,
        "booking_id": booking.booking_id if booking else None,
        "booking_start_at": booking.start if booking else None,
        "booking_source": booking.source if booking else None,
        "booking_identity": change.identity if booking else None,
    }


async def _announce(
    tx: Tx, account: Account, verdicts: list[Verdict], now: datetime
) -> tuple[dict[int, dict[str, Any]], dict[int, list[dict[str, Any]]]]:
    """Wake waiting callers (after commit), write each verdict's callback event, and log it; answer their rows and phases."""
    seqs = [v.seq for v in verdicts]
    rows = {row["seq"]: row for row in await verification_store.by_seqs(tx, seqs)}
    phases = await verification_store.phases_of(tx, seqs)
    for verdict in verdicts:
        row = rows[verdict.seq]
        await tx.notify("verdicts", row["id"])
        if account.callback_url:
            await write_event(tx, account.id, row, phases[verdict.seq], now)
        _log_verdict(account, row, phases[verdict.seq])
    return rows, phases


async def write_event(tx: Tx, account_id: str, row: dict[str, Any], phases: list[dict[str, Any]], now: datetime) -> None:
    """Write a verdict event for the callback URL, in the verdict's own transaction."""
    duplicates = (await duplicate_store.of_verifications(tx, [row["seq"]]))[row["seq"]]
    payload = json.dumps({"type": EVENT_TYPE, "verification": render(row, phases, _PENDING_CALLBACK, duplicates)}, separators=(",", ":"))
    await outbox_store.add(
        tx,
        event_id=f"msg_{uuid.uuid4().hex}",
        verification_seq=row["seq"],
        account=account_id,
        event_type=EVENT_TYPE,
        payload=payload,
        now=now,
    )


def _log_verdict(account: Account, row: dict[str, Any], phases: list[dict[str, Any]]) -> None:
    ids = {"verification_id": row["id"], "account": account.id, "appointment_id": row["appointment_id"]}
    status, reason = row["status"], row["review_reason"]
    if status == "verified":
        for p in phases:
            if p["status"] == "matched":
                log.info(
                    "Verified phase booking in Cal.com",
                    extra={
                        "event": "phase_verified",
                        **ids,
                        "phase": p["key"],
                        "booking_id": p["booking_id"],
                        "booking_uid": p["booking_uid"],
                    },
                )
        log.info(
            "post-sync verification: bookings found, marking as synced",
            extra={"event": "verification_verified", **ids, "resolved_via": row["resolved_via"]},
        )
    elif status == "resolved":
        log.info("verification resolved by operator", extra={"event": "verification_resolved", **ids, "resolution": row["resolution"]})
    elif reason == "calcom_unavailable":
        log.warning(
            "post-sync verification: Cal.com gave no complete answer, outcome unknown; queued for manual review",
            extra={"event": "verification_outcome_unknown", **ids, "review_reason": reason},
        )
    elif reason == "unconfirmed_match":
        log.warning(
            "post-sync verification: bookings found by time alone, queued for an operator to confirm",
            extra={"event": "verification_unconfirmed", **ids, "review_reason": reason},
        )
    elif reason == "verification_disabled":
        log.info("post-sync verification disabled: queued for manual review", extra={"event": "verification_disabled", **ids})
    else:
        missing = [p["key"] for p in phases if p["status"] in ("missing", "ambiguous")]
        log.warning(
            "post-sync verification: no matching booking found, queued for manual review",
            extra={"event": "verification_manual_review", **ids, "review_reason": reason, "missing_phases": missing},
        )
