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
    credentials: Annotated[Literal["ok", "broken"], Field(description="broken: Cal.com refused the API key (401/403)")]
    webhook_path: Annotated[str, Field(description="where to point this account's Cal.com webhook subscription")]
    created_at: Instant
    updated_at: Instant


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


VERIFICATION: TypeAdapter[VerificationOut] = TypeAdapter(VerificationOut)
ACCOUNT: TypeAdapter[AccountOut] = TypeAdapter(AccountOut)


@with_config(_CLOSED)
class AccountList(TypedDict):
    """Every account, ordered by id."""

    items: list[AccountOut]
