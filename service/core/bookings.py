"""What matching works on: phases, targets, booking units, outcomes, and the eligibility rule. Pure."""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

BookingKey = tuple[str, str]  # (uid, seat); seat is "" for a booking without seats
_MS = timedelta(milliseconds=1)
_NON_DIGITS = re.compile(r"[^0-9]")


def phone_digits(value: str | None) -> str | None:
    """A phone number reduced to its digits (how phones are compared); None when it has none."""
    if value is None:
        return None
    digits = _NON_DIGITS.sub("", value)
    return digits or None


@dataclass(frozen=True)
class PhaseSpec:
    """A staff-required phase as the matcher sees it (e-mails compared case-insensitively)."""

    key: str
    start: datetime
    event_type_id: int | None = None
    host_email: str | None = None
    attendee_email: str | None = None
    attendee_phone: str | None = None

    def __post_init__(self) -> None:
        for name in ("host_email", "attendee_email"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, value.strip().lower() or None)
        object.__setattr__(self, "attendee_phone", phone_digits(self.attendee_phone))

    @property
    def names_someone(self) -> bool:
        """Does a constraint of this phase name a person (so agreeing with it identifies a booking)?"""
        return bool(self.host_email or self.attendee_email or self.attendee_phone)


@dataclass(frozen=True)
class Target:
    """A pending verification: its staff-required phases, in their recorded order."""

    ref: Hashable
    account: str
    appointment_id: str
    phases: tuple[PhaseSpec, ...]
    time_only: bool = False  # the account accepts a booking identified by its time alone
    verifier_ref: str | None = None  # set for a verification the booking guard recorded for one create


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
    phones: frozenset[str] = frozenset()
    appointment_tag: str | None = None
    phase_tag: str | None = None
    verifier_tag: str | None = None  # `metadata.verifier_ref`: the guard created it for one create
    gone: bool = False
    source: str = "webhook"

    def __post_init__(self) -> None:
        object.__setattr__(self, "hosts", frozenset(h.strip().lower() for h in self.hosts if h))
        object.__setattr__(self, "attendees", frozenset(a.strip().lower() for a in self.attendees if a))
        object.__setattr__(self, "phones", frozenset(d for d in (phone_digits(p) for p in self.phones) if d))
        for name in ("appointment_tag", "phase_tag"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, str(value) if str(value) != "" else None)

    @property
    def key(self) -> BookingKey:
        return (self.uid, self.seat)


@dataclass(frozen=True)
class Outcome:
    """What matching concluded for one verification.

    `identity[key]` says what tied each matched booking to its phase: "tag", "person" (a named
    host/attendee agreed) or "time" (time and event type only). `contested` lists matched phases
    whose untagged booking other pending verifications could also take. `component` names the
    group of verifications decided together; `gave_up` is set when that group was too hard to
    decide within the budget (then nothing in it is decided).
    """

    complete: bool
    matched: Mapping[str, Booking] = field(default_factory=dict)
    ambiguous: frozenset[str] = frozenset()
    missing: frozenset[str] = frozenset()
    identity: Mapping[str, str] = field(default_factory=dict)
    contested: frozenset[str] = frozenset()
    component: int = 0
    gave_up: bool = False

    @property
    def unconfirmed(self) -> frozenset[str]:
        """Matched phases whose booking only its time ties to the phase."""
        return frozenset(key for key, how in self.identity.items() if how == "time")


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
    if phase.attendee_phone and phase.attendee_phone not in booking.phones:
        return False
    return True
