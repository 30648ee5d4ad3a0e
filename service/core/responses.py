"""Response bodies of the HTTP API. Pure.

The views are built through these types (`views.py` validates every one it produces), and the
OpenAPI document derives its response schemas from them: the description and the answers are one
thing and cannot drift apart. They are TypedDicts rather than models because a view is a plain
dict all the way to `json.dumps`, and `NotRequired` says exactly "present only when set" (a
phase's constraints, a booking's seat), which a model with `None` defaults cannot.
"""

from __future__ import annotations

from typing import Annotated, Literal, NotRequired

from pydantic import ConfigDict, Field, TypeAdapter, with_config
from typing_extensions import TypedDict

# Unknown keys are refused and nothing is coerced: a view that does not fit its type is a bug.
_CLOSED = ConfigDict(strict=True, extra="forbid")

Instant = Annotated[
    str,
    Field(
        pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z$",
        json_schema_extra={"format": "date-time"},
        description="UTC with a Z; milliseconds only when there are any",
    ),
]
Status = Literal["pending", "verified", "manual_review", "resolved"]
ReviewReason = Literal[
    "no_booking_found", "partial_match", "ambiguous_match", "unconfirmed_match", "calcom_unavailable", "verification_disabled"
]
ResolvedVia = Literal["webhook", "poll", "guard", "operator", "system"]
PhaseStatus = Literal["pending", "matched", "missing", "unknown", "ambiguous", "not_required"]
BookingSource = Literal["webhook", "poll", "operator"]
Identity = Literal["tag", "person", "time", "operator"]
CallbackState = Literal["none", "pending", "delivered", "failed"]


@with_config(_CLOSED)
class BookingOut(TypedDict):
    """The Cal.com booking (or seat) a phase is matched to."""

    id: int | None
    uid: str
    start: Instant | None
    source: Annotated[BookingSource, Field(description="where the evidence came from; operator: named by hand, never seen")]
    seat_uid: NotRequired[str]
    identity: Annotated[
        Identity | None,
        Field(description="what tied it to the phase: a tag, a person the phase names, the time alone, or an operator"),
    ]


@with_config(_CLOSED)
class PhaseOut(TypedDict):
    key: str
    start: Instant
    end: Instant | None
    staff_required: bool
    status: Annotated[PhaseStatus, Field(description="unknown: unmatched while Cal.com could not be asked completely")]
    booking: BookingOut | None
    event_type_id: NotRequired[int]
    host_email: NotRequired[str]
    attendee_email: NotRequired[str]
    attendee_phone: NotRequired[str]


@with_config(_CLOSED)
class CallbackOut(TypedDict):
    state: Annotated[CallbackState, Field(description="none: the account has no callback_url")]
    attempts: Annotated[int, Field(ge=0, description="POSTs made so far")]
    last_error: str | None


@with_config(_CLOSED)
class DuplicateRef(TypedDict):
    """A duplicate booking, as a verification lists it."""

    uid: str
    seat_uid: NotRequired[str]
    start: Instant
    dismissed: bool


@with_config(_CLOSED)
class VerificationOut(TypedDict):
    """A recorded failed sync and what is known about its bookings."""

    id: str
    account: str
    appointment_id: str
    service: str | None
    status: Status
    review_reason: ReviewReason | None
    resolution: Literal["synced", "failed"] | None
    resolved_via: Annotated[
        ResolvedVia | None, Field(description="the source of the evidence that completed the match; null while pending")
    ]
    resolved_by: Annotated[str | None, Field(description="the operator who resolved it in the console; null otherwise")]
    note: str | None
    created_at: Instant
    resolved_at: Instant | None
    next_check_at: Annotated[Instant | None, Field(description="only while pending")]
    deadline_at: Annotated[Instant | None, Field(description="only while pending")]
    checks: Annotated[int, Field(ge=0, description="Cal.com checks that got a complete answer")]
    attempts: Annotated[int, Field(ge=0, description="every Cal.com check made, failed ones included")]
    sync_error: str | None
    missing_phases: Annotated[list[str], Field(description="keys of the missing or ambiguous phases")]
    phases: list[PhaseOut]
    callback: CallbackOut
    duplicates: NotRequired[
        Annotated[list[DuplicateRef], Field(description="bookings tagged like this verification's own: a retry Cal.com accepted twice")]
    ]


@with_config(_CLOSED)
class VerificationPage(TypedDict):
    """One page of verifications, newest first."""

    items: list[VerificationOut]
    next_cursor: Annotated[str | None, Field(description="pass as ?cursor= for the next page; null on the last")]


Shown = Literal["set"]


@with_config(_CLOSED)
class AccountOut(TypedDict):
    """An account as the API shows it: secrets read "set", never their values."""

    id: str
    account: str
    calcom_api_key: Shown
    webhook_secret: Shown
    calcom_api_base: str | None
    callback_url: str | None
    callback_secret: Shown | None
    match_tolerance_seconds: int
    enabled: bool
    time_only_matching: bool
    guard: bool
    time_zone: Annotated[str, Field(description="IANA time zone name (e.g. Europe/Berlin) the console shows times in beside UTC")]
    credentials: Annotated[Literal["ok", "broken"], Field(description="broken: Cal.com refused the API key (401/403)")]
    webhook_path: Annotated[str, Field(description="where to point this account's Cal.com webhook subscription")]
    created_at: Instant
    updated_at: Instant
    webhook_secret_previous_until: Annotated[
        Instant | None, Field(description="the previous webhook secret is accepted until then (a rotation); null: none kept")
    ]
    callback_secret_previous_until: Annotated[
        Instant | None, Field(description="callbacks are signed with the previous callback secret too until then (24 h after a change)")
    ]


@with_config(_CLOSED)
class FieldError(TypedDict):
    field: str
    message: str


@with_config(_CLOSED)
class ErrorInfo(TypedDict):
    code: str
    message: str
    details: NotRequired[list[FieldError]]


@with_config(_CLOSED)
class ErrorOut(TypedDict):
    """Every error answer of the API."""

    error: ErrorInfo


@with_config(_CLOSED)
class DuplicateOut(TypedDict):
    """An open duplicate booking: cancel it in Cal.com, then dismiss it here."""

    account: str
    uid: str
    seat_uid: NotRequired[str]
    start: Instant
    duplicate_of: Annotated[str, Field(description="uid of the booking the verification holds")]
    verification_id: str
    found_at: Instant


@with_config(_CLOSED)
class DuplicateList(TypedDict):
    """Open duplicate bookings, oldest finding first."""

    items: list[DuplicateOut]


@with_config(_CLOSED)
class DismissedOut(TypedDict):
    uid: str
    dismissed: Annotated[int, Field(ge=0, description="booking units marked handled by this call")]


VERIFICATION: TypeAdapter[VerificationOut] = TypeAdapter(VerificationOut)
ACCOUNT: TypeAdapter[AccountOut] = TypeAdapter(AccountOut)


@with_config(_CLOSED)
class AccountList(TypedDict):
    """Every account, ordered by id."""

    items: list[AccountOut]


EvidenceReason = Literal[
    "matched", "cancelled", "claimed", "tagged_elsewhere", "outside_tolerance", "constraint_mismatch", "ambiguous", "time_only", "eligible"
]


@with_config(_CLOSED)
class CandidateOut(TypedDict):
    """One stored booking observation near a phase, and why it did or did not match it."""

    uid: str
    seat_uid: str | None
    unit: Annotated[str, Field(description="uid, or uid/seat uid for a seat: what to name when resolving")]
    booking_id: int | None
    start: Instant
    distance_seconds: Annotated[int, Field(description="booking start minus phase start")]
    source: str
    state: Literal["exists", "gone"]
    calcom_status: str | None
    hosts: list[str]
    attendees: list[str]
    appointment_tag: str | None
    phase_tag: str | None
    claimed_by: Annotated[str | None, Field(description="the verification holding this booking, if any")]
    reason: EvidenceReason
    explanation: str
    ambiguous_with: list[str]


@with_config(_CLOSED)
class PhaseEvidenceOut(TypedDict):
    key: str
    start: Instant
    status: PhaseStatus
    booking_uid: str | None
    window_start: Instant
    window_end: Instant
    candidates: list[CandidateOut]


@with_config(_CLOSED)
class EvidenceOut(TypedDict):
    """Per staff-required phase, the booking observations near it and why each did or did not match."""

    verification_id: str
    account: str
    status: Status
    review_reason: ReviewReason | None
    tolerance_seconds: int
    phases: list[PhaseEvidenceOut]


EVIDENCE: TypeAdapter[EvidenceOut] = TypeAdapter(EvidenceOut)


@with_config(_CLOSED)
class TokenOut(TypedDict):
    """A platform token, issued: the token itself is shown this once (only its hash is kept)."""

    id: Annotated[str, Field(description="names the token for DELETE /api/accounts/{account}/tokens/{id}")]
    account: str
    token: Annotated[str, Field(description="Authorization: Bearer <token>; record, read and resolve this account's verifications")]


@with_config(_CLOSED)
class TokenRevokedOut(TypedDict):
    """A platform token, revoked: it answers 401 from now on."""

    id: str
    account: str
    revoked: Literal[True]
