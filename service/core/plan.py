"""Deciding a group of competing verifications: a pure plan of claims, verdicts and phase changes.

Pure: stored rows and booking observations in, a `Plan` out (`apply.py` writes it). The rules:

* A verification is verified when every staff-required phase has its own booking and each of
  those bookings is tied to its phase by a tag or by a person the phase names (or the account
  accepts time-only matches). Where a phase found its booking by time alone, the verification goes
  to review as `unconfirmed_match` with the candidate shown, for an operator to confirm.
* Never early: an intake call or a webhook decides only with bookings that are tagged for the
  verification or that no other pending verification could take (uncontested). Contested bookings
  are decided at the scheduled checks, over the whole group of verifications that share them,
  once every member of that group has had its settle window; at a verification's deadline its
  group is decided whatever remains.
* At the deadline a verification without a verdict goes to review with the reason the evidence
  gives: `calcom_unavailable` (Cal.com never answered completely: unmatched phases are unknown),
  `ambiguous_match`, `partial_match` or `no_booking_found`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from service.core.bookings import Booking, Outcome, PhaseSpec, Target
from service.core.candidates import competitors
from service.core.matching import match

Mode = Literal["instant", "check"]


@dataclass(frozen=True)
class Context:
    """What a decision depends on besides the rows: when, why, and the account's matching rules."""

    now: datetime
    mode: Mode
    trigger: str  # the path deciding: intake, webhook, poll, guard
    settle_seconds: float
    tolerance_seconds: float
    time_only: bool = False
    finalize: frozenset[int] = frozenset()  # verifications at their deadline
    answered: frozenset[int] = frozenset()  # verifications whose check got a complete answer just now
    max_nodes: int = 50_000


@dataclass(frozen=True)
class Claim:
    seq: int
    key: str
    uid: str
    seat: str


@dataclass(frozen=True)
class BookingRef:
    uid: str
    seat: str
    booking_id: int | None
    start: datetime | None
    source: str


@dataclass(frozen=True)
class PhaseChange:
    seq: int
    key: str
    status: str
    active: bool
    booking: BookingRef | None = None
    identity: str | None = None


@dataclass(frozen=True)
class Verdict:
    """A move to a final state, applied only if the verification is still in `expected`."""

    seq: int
    id: str
    expected: str
    status: str
    resolved_via: str
    review_reason: str | None = None
    resolution: str | None = None
    note: str | None = None
    resolved_by: str | None = None


@dataclass
class Plan:
    claims: list[Claim] = field(default_factory=list)
    releases: list[tuple[int, str]] = field(default_factory=list)  # (seq, phase key) claims to give back
    verdicts: list[Verdict] = field(default_factory=list)
    phases: list[PhaseChange] = field(default_factory=list)
    gave_up: list[int] = field(default_factory=list)  # verifications the matcher could not decide in budget
    too_large: list[int] = field(default_factory=list)  # verifications in a group over the size bound
    outcomes: dict[int, Outcome] = field(default_factory=dict)

    def extend(self, other: Plan) -> None:
        self.claims += other.claims
        self.releases += other.releases
        self.verdicts += other.verdicts
        self.phases += other.phases
        self.gave_up += other.gave_up
        self.too_large += other.too_large
        self.outcomes.update(other.outcomes)


def ref_of(booking: Booking) -> BookingRef:
    return BookingRef(booking.uid, booking.seat, booking.booking_id, booking.start, booking.source)


def phase_specs(phases: Iterable[Mapping[str, Any]]) -> tuple[PhaseSpec, ...]:
    """The matcher's view of stored phases: the staff-required ones with their constraints."""
    return tuple(
        PhaseSpec(p["key"], p["start_at"], p["event_type_id"], p["host_email"], p["attendee_email"], p.get("attendee_phone"))
        for p in phases
        if p["staff_required"]
    )


def targets_of(rows: Mapping[int, Mapping[str, Any]], phases: Mapping[int, Sequence[Mapping[str, Any]]], time_only: bool) -> list[Target]:
    """The matcher's view of pending verifications."""
    return [
        Target(seq, row["account"], row["appointment_id"], phase_specs(phases[seq]), time_only, row.get("verifier_ref"))
        for seq, row in rows.items()
    ]


def decide(
    rows: Mapping[int, Mapping[str, Any]],
    phases: Mapping[int, Sequence[Mapping[str, Any]]],
    bookings: Iterable[Booking],
    ctx: Context,
    *,
    seen_at: Mapping[tuple[str, str], datetime] | None = None,
    incomplete: Iterable[int] = (),
    max_group: int | None = None,
) -> Plan:
    """The plan for pending verifications and every booking that could concern them.

    Verifications compete in groups (the matcher's components). A group larger than `max_group`,
    or one with an `incomplete` member (not all its competitors were loaded), is not decided:
    its members wait, and at their deadline go to review as `ambiguous_match`.
    """
    outcomes = match(targets_of(rows, phases, ctx.time_only), bookings, ctx.tolerance_seconds, max_nodes=ctx.max_nodes)
    settle = timedelta(seconds=ctx.settle_seconds)
    unsettled = {outcomes[seq].component for seq, row in rows.items() if ctx.now < row["created_at"] + settle}
    sizes = Counter(outcome.component for outcome in outcomes.values())
    undecidable = {outcomes[seq].component for seq in incomplete if seq in outcomes}
    if max_group is not None:
        undecidable |= {component for component, size in sizes.items() if size > max_group}
    plan = Plan(outcomes={int(ref): outcome for ref, outcome in outcomes.items()})  # type: ignore[call-overload]
    for seq in sorted(rows):
        row, outcome = rows[seq], outcomes[seq]
        if outcome.component in undecidable:
            plan.too_large.append(seq)
            if seq in ctx.finalize:
                plan.extend(undecided_at_deadline(row, phases[seq], ctx))
            continue
        if outcome.gave_up:
            plan.gave_up.append(seq)
        ready = ctx.mode == "check" and outcome.component not in unsettled
        final = seq in ctx.finalize
        if outcome.complete and not outcome.gave_up and (ready or final or not outcome.contested):
            if outcome.unconfirmed and not ctx.time_only:
                plan.extend(_review(row, phases[seq], outcome, "unconfirmed_match", ctx))
            else:
                plan.extend(_verified(row, phases[seq], outcome, _via(outcome, ctx, seen_at or {})))
        elif final:
            plan.extend(_review(row, phases[seq], outcome, _reason(row, outcome, ctx), ctx))
        else:
            plan.extend(_provisional(row, phases[seq], outcome))
    return plan


def _reason(row: Mapping[str, Any], outcome: Outcome, ctx: Context) -> str:
    if row["complete_checks"] <= 0 and row["seq"] not in ctx.answered:
        return "calcom_unavailable"
    if outcome.gave_up or outcome.ambiguous:
        return "ambiguous_match"
    if outcome.matched:
        return "partial_match"
    return "no_booking_found"


def _via(outcome: Outcome, ctx: Context, seen_at: Mapping[tuple[str, str], datetime]) -> str:
    """The source of the evidence that completed the match."""
    if ctx.trigger in ("webhook", "guard"):
        return ctx.trigger
    latest = max(outcome.matched.values(), key=lambda b: (seen_at.get(b.key) or b.start, b.source))
    return latest.source


def _confirmed(outcome: Outcome, key: str, ctx: Context) -> bool:
    return outcome.identity.get(key) != "time" or ctx.time_only


def _verified(row: Mapping[str, Any], phases: Sequence[Mapping[str, Any]], outcome: Outcome, via: str) -> Plan:
    seq = row["seq"]
    plan = Plan(verdicts=[Verdict(seq, row["id"], "pending", "verified", via)])
    for p in phases:
        key = p["key"]
        if not p["staff_required"]:
            plan.phases.append(PhaseChange(seq, key, "not_required", False))
            continue
        booking = outcome.matched[key]
        plan.claims.append(Claim(seq, key, booking.uid, booking.seat))
        plan.phases.append(PhaseChange(seq, key, "matched", False, ref_of(booking), outcome.identity[key]))
    return plan


def _review(row: Mapping[str, Any], phases: Sequence[Mapping[str, Any]], outcome: Outcome, reason: str, ctx: Context) -> Plan:
    """Final without a verdict of `verified`: identified bookings stay claimed, candidates are shown."""
    seq = row["seq"]
    plan = Plan(verdicts=[Verdict(seq, row["id"], "pending", "manual_review", "system", review_reason=reason)])
    unknown = "unknown" if reason == "calcom_unavailable" else "missing"
    for p in phases:
        key = p["key"]
        if not p["staff_required"]:
            plan.phases.append(PhaseChange(seq, key, "not_required", False))
        elif key in outcome.matched:
            booking = outcome.matched[key]
            if _confirmed(outcome, key, ctx):
                plan.claims.append(Claim(seq, key, booking.uid, booking.seat))
            plan.phases.append(PhaseChange(seq, key, "matched", False, ref_of(booking), outcome.identity[key]))
        else:
            plan.phases.append(PhaseChange(seq, key, "ambiguous" if key in outcome.ambiguous else unknown, False))
    return plan


def _provisional(row: Mapping[str, Any], phases: Sequence[Mapping[str, Any]], outcome: Outcome) -> Plan:
    """Show the best evidence so far on a still-pending verification (nothing is claimed yet)."""
    plan = Plan()
    for p in phases:
        if not p["staff_required"]:
            continue
        booking = outcome.matched.get(p["key"])
        status = "matched" if booking else "pending"
        identity = outcome.identity.get(p["key"]) if booking else None
        if (
            p["status"] != status
            or p["booking_uid"] != (booking.uid if booking else None)
            or (booking is not None and p["booking_seat"] != booking.seat)
            or p.get("booking_identity") != identity
        ):
            plan.phases.append(PhaseChange(row["seq"], p["key"], status, True, ref_of(booking) if booking else None, identity))
    return plan


def undecided_at_deadline(row: Mapping[str, Any], phases: Sequence[Mapping[str, Any]], ctx: Context) -> Plan:
    """The deadline came but the group could not be decided (too large, or matching failed)."""
    keys = frozenset(p["key"] for p in phases if p["staff_required"])
    if _reason(row, Outcome(complete=False), ctx) == "calcom_unavailable":
        return _review(row, phases, Outcome(complete=False, missing=keys, gave_up=True), "calcom_unavailable", ctx)
    return _review(row, phases, Outcome(complete=False, ambiguous=keys, gave_up=True), "ambiguous_match", ctx)


def disabled(row: Mapping[str, Any], phases: Sequence[Mapping[str, Any]]) -> Plan:
    """Verification switched off (globally or for the account): straight to the review queue."""
    seq = row["seq"]
    return Plan(
        verdicts=[Verdict(seq, row["id"], "pending", "manual_review", "system", review_reason="verification_disabled")],
        phases=[PhaseChange(seq, p["key"], "pending" if p["staff_required"] else "not_required", False) for p in phases],
    )


def closure(
    seeds: Iterable[int], targets: Iterable[Target], bookings: Iterable[Booking], tolerance_ms: int
) -> tuple[dict[int, int], dict[int, list[Booking]]]:
    """Who competes with the starting members, however long the chain: member -> component, and each member's links.

    Two verifications compete when one untagged booking is eligible for a phase of each; a
    component is everything reachable from one starting member that way.
    """
    links = competitors(targets, bookings, tolerance_ms)
    wanted_by: dict[tuple[str, str], list[int]] = {}
    for ref, found in links.items():
        for b in found:
            wanted_by.setdefault(b.key, []).append(int(ref))  # type: ignore[call-overload]
    component_of: dict[int, int] = {}
    number = -1
    for seed in sorted(seeds):
        if seed in component_of or seed not in links:
            continue
        number, queue = number + 1, [seed]
        component_of[seed] = number
        while queue:
            ref = queue.pop()
            for b in links[ref]:
                for other in wanted_by[b.key]:
                    if other not in component_of:
                        component_of[other] = number
                        queue.append(other)
    return component_of, {int(ref): found for ref, found in links.items() if int(ref) in component_of}  # type: ignore[call-overload]
