"""Test helpers: a clock, the secrets in play, signed Cal.com webhooks built from real examples."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx

API_TOKEN = "test-api-token-7f3a9c1e5b2d4f60"
API_KEY = "cal_live_test_key_0a1b2c3d4e5f"
WEBHOOK_SECRET = "whk-secret-9d8c7b6a5f4e"
CALLBACK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER_WEBHOOK_SECRET = "other-secret-1234567890"
# The suite's SECRET_KEYS (a Fernet key: 32 bytes in url-safe base64).
TEST_SECRET_KEY = "dGVzdC1zZWNyZXQta2V5LW9mLXRoZS1zdWl0ZS0wMDE="
ALL_SECRETS = [API_TOKEN, API_KEY, WEBHOOK_SECRET, CALLBACK_SECRET, OTHER_WEBHOOK_SECRET, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
CUSTOMER = "kunde@example.com"  # the attendee booking_event() puts on its bookings and phase() names
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
EXAMPLES = Path(__file__).resolve().parents[1] / "tests" / "calcom_examples"


class FakeClock:
    """The injected clock: tests move it; nothing sleeps."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now = self.now + timedelta(seconds=seconds)
        return self.now


def example(name: str) -> dict[str, Any]:
    """A real Cal.com webhook body from tests/calcom_examples (copied from ../shared/calcom)."""
    return json.loads((EXAMPLES / name).read_text(encoding="utf-8"))


def iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def sign(body: bytes, secret: str = WEBHOOK_SECRET) -> str:
    """What Cal.com puts in X-Cal-Signature-256."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class Signed:
    body: bytes
    headers: dict[str, str]


def signed(envelope: dict[str, Any] | bytes, secret: str = WEBHOOK_SECRET) -> Signed:
    body = envelope if isinstance(envelope, bytes) else json.dumps(envelope).encode()
    return Signed(body, {"Content-Type": "application/json", "X-Cal-Signature-256": sign(body, secret)})


def booking_event(
    trigger: str = "BOOKING_CREATED",
    *,
    uid: str,
    start: datetime,
    minutes: int = 30,
    booking_id: int | None = None,
    event_type_id: int | None = 101,
    organizer: str = "anna@salon.example",
    attendees: tuple[str, ...] = (CUSTOMER,),
    metadata: dict[str, Any] | None = None,
    created_at: datetime | None = None,
    status: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Cal.com envelope built on the documented BOOKING_CREATED example, with our values."""
    envelope = copy.deepcopy(example("booking_created.docs-v2021-10-20.json"))
    envelope["triggerEvent"] = trigger
    envelope["createdAt"] = (created_at or datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)).isoformat().replace("+00:00", "Z")
    payload = envelope["payload"]
    payload.update(
        {
            "uid": uid,
            "bookingId": booking_id if booking_id is not None else abs(hash(uid)) % 10_000_000,
            "startTime": iso(start),
            "endTime": iso(start + timedelta(minutes=minutes)),
            "eventTypeId": event_type_id,
            "metadata": metadata if metadata is not None else {},
            "status": status
            or {"BOOKING_REQUESTED": "PENDING", "BOOKING_CANCELLED": "CANCELLED", "BOOKING_REJECTED": "REJECTED"}.get(trigger, "ACCEPTED"),
        }
    )
    payload["organizer"]["email"] = organizer
    payload["attendees"] = [
        {"email": a, "name": a.split("@")[0], "timeZone": "Europe/Berlin", "language": {"locale": "de"}} for a in attendees
    ]
    if trigger == "BOOKING_CANCELLED":
        payload.pop("metadata", None)
    if extra:
        payload.update(extra)
    return envelope


async def create_account(
    client: httpx.AsyncClient,
    account: str = "salon-1",
    *,
    webhook_secret: str = WEBHOOK_SECRET,
    **fields: Any,
) -> httpx.Response:
    body = {"calcom_api_key": API_KEY, "webhook_secret": webhook_secret, **fields}
    response = await client.put(f"/api/accounts/{account}", json=body, headers=AUTH)
    assert response.status_code in (200, 201), response.text
    return response


async def post_webhook(
    client: httpx.AsyncClient, envelope: dict[str, Any] | bytes, account: str = "salon-1", secret: str = WEBHOOK_SECRET
) -> httpx.Response:
    request = signed(envelope, secret)
    return await client.post(f"/webhooks/calcom/{account}", content=request.body, headers=request.headers)


def phase(key: str, start: datetime, minutes: int = 30, *, who: str | None = CUSTOMER, **extra: Any) -> dict[str, Any]:
    """A phase as the platform records it; it names its customer (`who`) unless who=None (time only)."""
    body = {"key": key, "start": start.isoformat(), "end": (start + timedelta(minutes=minutes)).isoformat(), **extra}
    if who is not None and "attendee_email" not in extra:
        body["attendee_email"] = who
    return body


def failure(
    appointment_id: str = "762", phases: list[dict[str, Any]] | None = None, account: str = "salon-1", **extra: Any
) -> dict[str, Any]:
    start = datetime(2026, 12, 1, 10, 0, tzinfo=timezone(timedelta(hours=1)))
    return {
        "account": account,
        "appointment_id": appointment_id,
        "service": "Herrenhaarschnitt",
        "sync_error": "Cal.com HTTP 400: User either already has booking at this time or is not available",
        "phases": phases if phases is not None else [phase("A", start)],
        **extra,
    }


async def record(client: httpx.AsyncClient, body: dict[str, Any], *, wait: float | None = None) -> httpx.Response:
    params = {"wait": str(wait)} if wait is not None else None
    return await client.post("/api/verifications", json=body, headers=AUTH, params=params)
