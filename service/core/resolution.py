"""An operator's resolution as a plan: pure (the same `Plan` the matcher's decisions use)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from service.core.plan import BookingRef, Claim, PhaseChange, Plan, Verdict


def operator(
    row: Mapping[str, Any],
    phases: Sequence[Mapping[str, Any]],
    held: Mapping[str, tuple[str, str]],
    named: Mapping[str, BookingRef],
    resolution: str,
    note: str | None,
    resolved_by: str | None = None,
) -> Plan:
    """An operator closes a verification: named bookings are claimed, unclaimed candidates cleared.

    `held` are the claims the verification already has (phase key -> unit). Resolving an
    `unconfirmed_match` as synced without naming other bookings confirms the candidates shown.
    """
    seq = row["seq"]
    plan = Plan(
        verdicts=[Verdict(seq, row["id"], row["status"], "resolved", "operator", resolution=resolution, note=note, resolved_by=resolved_by)]
    )
    confirm = resolution == "synced" and row["review_reason"] == "unconfirmed_match"
    for p in phases:
        key = p["key"]
        if not p["staff_required"]:
            continue
        if key in named:
            ref = named[key]
            if held.get(key) != (ref.uid, ref.seat):
                if key in held:
                    plan.releases.append((seq, key))
                plan.claims.append(Claim(seq, key, ref.uid, ref.seat))
            plan.phases.append(PhaseChange(seq, key, "matched", False, ref, "operator"))
        elif key in held:
            continue
        elif p["status"] == "matched" and p["booking_uid"] and confirm:
            ref = BookingRef(p["booking_uid"], p["booking_seat"] or "", p["booking_id"], p["booking_start_at"], p["booking_source"])
            plan.claims.append(Claim(seq, key, ref.uid, ref.seat))
            plan.phases.append(PhaseChange(seq, key, "matched", False, ref, "operator"))
        elif p["status"] in ("matched", "pending"):
            plan.phases.append(PhaseChange(seq, key, "missing", False))
    return plan
