"""Why each booking near a phase did or did not match it: the evidence an operator reads. Pure.

Computed from stored rows only (phases, booking observations near them with the claim each
holds): reading evidence never changes anything. For each staff-required phase every booking
observation within three tolerances of its start (and every one tagged for the appointment) is
listed with one reason, the first that applies:

* `matched` — the booking the phase holds;
* `cancelled` — Cal.com cancelled, rejected or rescheduled it away;
* `claimed` — another verification (or another phase of this one) holds it;
* `tagged_elsewhere` — its metadata names another appointment;
* `outside_tolerance` — it starts further from the phase than the account's tolerance;
* `constraint_mismatch` — event type, host, attendee e-mail or phone disagree (named);
* `ambiguous` — it would fit, but so would others, and the matcher never guesses;
* `time_only` — it fits by time alone: a candidate an operator must confirm;
* `eligible` — it fits, and nothing took it (e.g. it arrived after the verdict).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from service.core.bookings import phone_digits
from service.core.responses import CandidateOut, EvidenceOut, PhaseEvidenceOut
from service.core.times import iso

REASONS = (
    "matched", "cancelled", "claimed", "tagged_elsewhere", "outside_tolerance",
    "constraint_mismatch", "ambiguous", "time_only", "eligible",
)  # fmt: skip
SPAN = 3  # observations within this many tolerances of a phase's start are shown


def window(start: datetime, tolerance_seconds: int) -> tuple[datetime, datetime]:
    """Where to look for evidence around a phase start."""
    reach = timedelta(seconds=SPAN * max(tolerance_seconds, 60))
    return start - reach, start + reach


def mismatches(phase: Mapping[str, Any], obs: Mapping[str, Any]) -> list[str]:
    """The constraints of the phase this booking disagrees with (empty when it agrees with all)."""
    found: list[str] = []
    hosts = {h.strip().lower() for h in obs["hosts"]}
    attendees = {a.strip().lower() for a in obs["attendees"]}
    phones = {phone_digits(p) for p in obs["phones"]}
    if phase.get("event_type_id") is not None and obs.get("event_type_id") != phase["event_type_id"]:
        found.append(f"event type {obs.get('event_type_id')} is not {phase['event_type_id']}")
    host = (phase.get("host_email") or "").strip().lower()
    if host and host not in hosts:
        found.append("host is not the phase's host")
    email = (phase.get("attendee_email") or "").strip().lower()
    if email and email not in attendees:
        found.append("attendee e-mail is not the phase's")
    phone = phone_digits(phase.get("attendee_phone"))
    if phone and phone not in phones:
        found.append("attendee phone is not the phase's")
    return found


def phase_evidence(
    verification: Mapping[str, Any],
    phase: Mapping[str, Any],
    observations: Sequence[Mapping[str, Any]],
    tolerance_seconds: int,
) -> PhaseEvidenceOut:
    """The evidence of one staff-required phase.

    `observations` rows carry the stored booking unit and `claimed_by` (the id of the verification
    holding it, or None) with `claimed_phase`.
    """
    start: datetime = phase["start_at"]
    lo, hi = window(start, tolerance_seconds)
    appointment = str(verification["appointment_id"])
    near = [o for o in observations if lo <= o["start_at"] <= hi or o.get("appointment_tag") == appointment]
    held = (phase.get("booking_uid"), phase.get("booking_seat") or "")
    reasons: list[tuple[Mapping[str, Any], str, str]] = []
    for obs in sorted(near, key=lambda o: (abs((o["start_at"] - start).total_seconds()), o["uid"], o["seat"])):
        reasons.append((obs, *_reason(verification, phase, obs, held, tolerance_seconds)))
    fitting = [o["uid"] + (f"/{o['seat']}" if o["seat"] else "") for o, reason, _ in reasons if reason == "ambiguous"]
    candidates: list[CandidateOut] = []
    for obs, reason, why in reasons:
        unit = obs["uid"] + (f"/{obs['seat']}" if obs["seat"] else "")
        others = [u for u in fitting if u != unit] if reason == "ambiguous" else []
        if others:
            why = f"{why}: ambiguous with {', '.join(others)}"
        candidates.append(
            {
                "uid": obs["uid"],
                "seat_uid": obs["seat"] or None,
                "unit": unit,
                "booking_id": obs.get("booking_id"),
                "start": iso(obs["start_at"]) or "",
                "distance_seconds": int((obs["start_at"] - start).total_seconds()),
                "source": obs["source"],
                "state": obs["state"],
                "calcom_status": obs.get("calcom_status"),
                "hosts": sorted(obs["hosts"]),
                "attendees": sorted(obs["attendees"]),
                "appointment_tag": obs.get("appointment_tag"),
                "phase_tag": obs.get("phase_tag"),
                "claimed_by": obs.get("claimed_by"),
                "reason": reason,  # type: ignore[typeddict-item]
                "explanation": why,
                "ambiguous_with": others,
            }
        )
    return {
        "key": phase["key"],
        "start": iso(start) or "",
        "status": phase["status"],
        "booking_uid": phase.get("booking_uid"),
        "window_start": iso(lo) or "",
        "window_end": iso(hi) or "",
        "candidates": candidates,
    }


def _reason(
    verification: Mapping[str, Any], phase: Mapping[str, Any], obs: Mapping[str, Any], held: tuple[Any, str], tolerance_seconds: int
) -> tuple[str, str]:
    if (obs["uid"], obs["seat"]) == held:
        return "matched", "the booking this phase holds"
    if obs["state"] == "gone":
        return "cancelled", f"Cal.com says {obs.get('calcom_status') or 'cancelled'}"
    claimed_by = obs.get("claimed_by")
    if claimed_by is not None:
        if claimed_by == verification["id"]:
            return "claimed", f"held by phase {obs.get('claimed_phase')} of this verification"
        return "claimed", f"claimed by verification {claimed_by}"
    tag = obs.get("appointment_tag")
    appointment = str(verification["appointment_id"])
    if tag is not None and tag != appointment:
        return "tagged_elsewhere", f"tagged for appointment {tag}"
    if tag == appointment:
        if obs.get("phase_tag") not in (None, phase["key"]):
            return "tagged_elsewhere", f"tagged for phase {obs.get('phase_tag')} of this appointment"
        return "eligible", "tagged for this appointment"
    distance = abs((obs["start_at"] - phase["start_at"]).total_seconds())
    if distance > tolerance_seconds:
        return "outside_tolerance", f"starts {int(distance)} s from the phase, more than the tolerance of {tolerance_seconds} s"
    wrong = mismatches(phase, obs)
    if wrong:
        return "constraint_mismatch", "; ".join(wrong)
    if phase["status"] == "ambiguous":
        return "ambiguous", "fits this phase"
    names_someone = bool(phase.get("host_email") or phase.get("attendee_email") or phase.get("attendee_phone"))
    if not names_someone:
        return "time_only", "fits by time (and event type) alone: the phase names no person to confirm it"
    return "eligible", "fits this phase and nothing holds it"


def evidence(
    verification: Mapping[str, Any],
    phases: Sequence[Mapping[str, Any]],
    observations: Sequence[Mapping[str, Any]],
    tolerance_seconds: int,
) -> EvidenceOut:
    """The evidence of every staff-required phase of a verification."""
    return {
        "verification_id": verification["id"],
        "account": verification["account"],
        "status": verification["status"],
        "review_reason": verification["review_reason"],
        "tolerance_seconds": tolerance_seconds,
        "phases": [phase_evidence(verification, p, observations, tolerance_seconds) for p in phases if p["staff_required"]],
    }
