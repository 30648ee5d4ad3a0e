"""Request bodies of the HTTP API, validated strictly (wrong types are a 422 naming the field)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from datetime import datetime, timezone
from typing import Any, Literal, Optional
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from service.core.bookings import phone_digits
from service.core.times import EARLIEST_YEAR, LATEST_YEAR
from service.errors import ValidationFailed

ACCOUNT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
_PHONE = re.compile(r"^\+?[0-9 ().\-/]+$")
STATUSES = ("pending", "verified", "manual_review", "resolved")
REVIEW_REASONS = (
    "no_booking_found",
    "partial_match",
    "ambiguous_match",
    "unconfirmed_match",
    "calcom_unavailable",
    "verification_disabled",
)


BIGINT_MAX = 2**63 - 1
SYNC_ERROR_MAX = 4000
TRUNCATED = " …[truncated]"


def validate_http_url(value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http(s) URL such as https://api.cal.com")
    return value.strip().rstrip("/")


def no_nul(value: Any) -> Any:
    """Refuse U+0000 anywhere in a string (PostgreSQL text cannot hold it, and no real input has one)."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("must not contain NUL characters")
    if isinstance(value, dict):
        for key, item in value.items():
            no_nul(key)
            no_nul(item)
    return value


def sane_time(value: datetime | None) -> datetime | None:
    if value is not None and not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
        raise ValueError(f"must lie between the years {EARLIEST_YEAR} and {LATEST_YEAR}")
    return value


class _Strict(BaseModel):
    # Unknown fields are refused: a typo such as `staff_requried` must not pass silently.
    model_config = ConfigDict(strict=True, extra="forbid", str_strip_whitespace=True)

    _no_nul = field_validator("*")(no_nul)


def _email(value: str | None) -> str | None:
    if value is None:
        return None
    if not _EMAIL.match(value):
        raise ValueError("must be an e-mail address")
    return value.lower()


def _phone(value: str | None) -> str | None:
    if value is None:
        return None
    if not _PHONE.match(value) or sum(c.isdigit() for c in value) < 4:
        raise ValueError("must be a phone number: digits, optionally with +, spaces, dots, dashes, slashes or parentheses")
    return value


class PhaseIn(_Strict):
    key: str = Field(min_length=1, max_length=64)
    start: AwareDatetime
    end: AwareDatetime | None = None
    event_type_id: int | None = Field(default=None, ge=0, le=BIGINT_MAX)
    host_email: str | None = Field(default=None, max_length=320)
    attendee_email: str | None = Field(default=None, max_length=320)
    attendee_phone: str | None = Field(default=None, max_length=64)
    staff_required: bool = True

    _emails = field_validator("host_email", "attendee_email")(_email)
    _phone = field_validator("attendee_phone")(_phone)
    _times = field_validator("start", "end")(sane_time)

    @model_validator(mode="after")
    def _end_after_start(self) -> PhaseIn:
        if self.end is not None and self.end < self.start:
            raise ValueError("end must not be before start")
        return self


class VerificationIn(_Strict):
    account: str
    appointment_id: str | int
    service: str | None = Field(default=None, max_length=200)
    sync_error: str | None = Field(default=None, max_length=SYNC_ERROR_MAX)
    phases: list[PhaseIn] = Field(min_length=1, max_length=50)

    @field_validator("sync_error", mode="before")
    @classmethod
    def _truncate(cls, value: Any) -> Any:
        """An over-long error text is cut with a marker: losing the record would be worse."""
        if isinstance(value, str) and len(value) > SYNC_ERROR_MAX:
            return value[: SYNC_ERROR_MAX - len(TRUNCATED)] + TRUNCATED
        return value

    @field_validator("account")
    @classmethod
    def _account(cls, value: str) -> str:
        if not ACCOUNT_ID.match(value):
            raise ValueError("must match [a-z0-9][a-z0-9_-]{0,62}")
        return value

    @field_validator("appointment_id")
    @classmethod
    def _appointment(cls, value: str | int) -> str:
        text = str(value).strip()
        if not text or len(text) > 128:
            raise ValueError("must be 1 to 128 characters")
        return text

    @field_validator("phases")
    @classmethod
    def _phases(cls, phases: list[PhaseIn]) -> list[PhaseIn]:
        keys = [p.key for p in phases]
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise ValueError(f"phase keys must be unique; repeated: {', '.join(duplicates)}")
        if not any(p.staff_required for p in phases):
            raise ValueError("at least one phase must be staff_required (only those become Cal.com bookings)")
        return phases

    def fingerprint(self) -> str:
        """Identity of the phases for idempotency: same keys, instants (UTC), constraints, any order."""
        canonical = sorted(
            (
                p.key,
                _utc_ms(p.start),
                _utc_ms(p.end) if p.end else None,
                p.event_type_id,
                p.host_email,
                p.attendee_email,
                p.staff_required,
            )
            # Appended only when given, so fingerprints recorded before phones existed still match.
            + ((phone_digits(p.attendee_phone),) if p.attendee_phone else ())
            for p in self.phases
        )
        return hashlib.sha256(json.dumps(canonical, separators=(",", ":")).encode()).hexdigest()


def _utc_ms(value: datetime) -> int:
    return int(value.astimezone(timezone.utc).timestamp() * 1000)


class AccountIn(_Strict):
    calcom_api_key: str = Field(min_length=1, max_length=500)
    webhook_secret: str = Field(min_length=1, max_length=500)
    calcom_api_base: str | None = None
    callback_url: str | None = Field(default=None, max_length=2000)
    callback_secret: str | None = None
    match_tolerance_seconds: int | None = Field(default=None, ge=0, le=3600)
    enabled: bool = True
    time_only_matching: bool = False
    guard: bool = True
    # The console shows times in UTC and in this zone (an IANA name such as Europe/Berlin).
    time_zone: str = Field(default="UTC", min_length=1, max_length=64)
    # With a new webhook_secret: the old one stays accepted until then (rotation without refusals).
    webhook_secret_previous_until: AwareDatetime | None = None

    _previous_until = field_validator("webhook_secret_previous_until")(sane_time)

    @field_validator("calcom_api_key")
    @classmethod
    def _api_key(cls, value: str) -> str:
        # It travels in an HTTP header: visible ASCII only (Cal.com's keys are cal_live_… / cal_…).
        if not all("!" <= char <= "~" for char in value):
            raise ValueError("must be visible ASCII characters without spaces, as Cal.com's API keys are (cal_live_…)")
        return value

    @field_validator("time_zone")
    @classmethod
    def _time_zone(cls, value: str) -> str:
        return valid_time_zone(value)

    @field_validator("calcom_api_base", "callback_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return validate_http_url(value) if value else None

    @field_validator("callback_secret")
    @classmethod
    def _callback_secret(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            raw = base64.b64decode(value.removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if not value.startswith("whsec_") or not 24 <= len(raw) <= 64:
            raise ValueError("must be a Standard Webhooks secret: whsec_ + base64 of 24 to 64 random bytes")
        return value

    @model_validator(mode="after")
    def _callback_pair(self) -> AccountIn:
        if self.callback_url and not self.callback_secret:
            raise ValueError("callback_secret is required when callback_url is set")
        return self


def valid_time_zone(value: str) -> str:
    """The name itself when it is a known IANA time zone (case as in the database, e.g. Europe/Berlin)."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError("must be an IANA time zone name, e.g. Europe/Berlin or UTC") from None
    return value


def _patch_of(model: type[_Strict]) -> type[_Strict]:
    """Every field of `model`, optional and unset by default: a PATCH body. Its values are checked again
    (limits, pairs) when merged with the stored ones and validated as `model`."""
    fields: dict[str, Any] = {name: (Optional[info.annotation], None) for name, info in model.model_fields.items()}  # noqa: UP045
    patch: type[_Strict] = create_model(f"{model.__name__.removesuffix('In')}Patch", __base__=_Strict, **fields)
    return patch


# PATCH /api/accounts/{account}: only the fields sent change (null clears an optional one).
AccountPatch = _patch_of(AccountIn)


class ResolveIn(_Strict):
    outcome: Literal["synced", "failed"]
    note: str | None = Field(default=None, max_length=2000)
    bookings: dict[str, str] | None = None


def parse(model: type[_Strict], body: bytes) -> Any:
    """Validate a JSON body; any problem is a 422 that names the field (never echoes values)."""
    try:
        return model.model_validate_json(body or b"")
    except ValidationError as exc:
        raise _failed(exc) from None


def validate(model: type[_Strict], values: dict[str, Any]) -> Any:
    """Validate values already read (e.g. stored fields merged with a PATCH); problems are a 422 like parse()'s."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise _failed(exc) from None


def _failed(exc: ValidationError) -> ValidationFailed:
    """The 422 for a validation error: each field named, no value echoed."""
    details = []
    for error in exc.errors(include_input=False, include_url=False):
        field = ".".join(str(part) for part in error["loc"]) or "body"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "json_invalid":
            field, message = "body", "the body is not valid JSON"
        elif error["type"] == "timezone_aware":
            message = "must carry a UTC offset, e.g. 2026-12-01T10:00:00+01:00"
        elif error["type"] == "extra_forbidden":
            message = "unknown field (check its spelling; unknown fields are refused, not ignored)"
        details.append({"field": field, "message": message})
    summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
    return ValidationFailed(f"invalid request: {summary}", details=details)
