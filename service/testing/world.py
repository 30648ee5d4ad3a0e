"""The simulated world: the service, the fake Cal.com and a stand-in platform, wired together in one process.

A temporary SQLite database, the real web app (driven through `httpx.ASGITransport`), the fake
Cal.com, the real poller ticked with a simulated clock (no real waiting), and a small stand-in for
the platform's callback endpoint that checks the signatures of the verdicts it receives. The
secrets are generated for the run and never printed.
"""

from __future__ import annotations

import base64
import hmac
import json
import random
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.app.runtime import install_secret_keys
from service.clients.calcom import CalcomClient
from service.core.signatures import calcom_signature, standard_webhooks_signature
from service.settings import Settings
from service.store.connector import open_database
from service.store.migrations import migrate
from service.testing.fakecalcom import FakeCalcom
from service.web.app import create_app
from service.workers.callbacks import CallbackDeliverer
from service.workers.poller import Poller, TickReport

Out = Callable[[str], Any]
CET = timezone(timedelta(hours=1), "CET")  # Berlin in December
START = datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)  # 09:00 in the salon: the simulated "now"
DAY = datetime(2026, 12, 1, tzinfo=CET)
ACCOUNT = "salon-1"
CALCOM = "http://calcom.sim"
PLATFORM = "http://platform.sim/hooks/verification"
CALCOM_ANSWER = 'HTTP 400 "User either already has booking at this time or is not available"'
SYNC_ERROR = "Cal.com " + CALCOM_ANSWER
SETTLE, SCHEDULE = 2.0, (10.0, 30.0, 120.0, 600.0)
GUARD_TIMEOUT = 0.5  # real seconds: the one create Cal.com holds back ends this soon


@dataclass(frozen=True)
class SimulationSecrets:
    """The secrets of one run: generated, handed to the service, never printed."""

    api_token: str
    calcom_api_key: str
    webhook_secret: str
    callback_secret: str
    secret_key: str = ""

    @classmethod
    def generate(cls) -> SimulationSecrets:
        return cls(
            api_token=secrets.token_urlsafe(24),
            calcom_api_key="cal_live_" + secrets.token_hex(16),
            webhook_secret=secrets.token_urlsafe(24),
            callback_secret="whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
            secret_key=base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        )


class _Settings(Settings):
    """Settings from arguments only: the operator's environment and `.env` do not leak into the run."""

    @classmethod
    def settings_customise_sources(cls, settings_cls: Any, init_settings: Any, *sources: Any, **named: Any) -> tuple[Any, ...]:
        return (init_settings,)


class SimClock:
    """The injected clock: the simulation moves it, nothing sleeps."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Platform:
    """The platform's callback endpoint: checks the Standard Webhooks signature, keeps the verdicts."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.received: list[dict[str, Any]] = []
        self.app = Starlette(routes=[Route("/hooks/verification", self.receive, methods=["POST"])])

    async def receive(self, request: Request) -> Response:
        body, headers = await request.body(), request.headers
        expected = standard_webhooks_signature(self.secret, headers["webhook-id"], int(headers["webhook-timestamp"]), body)
        valid = any(hmac.compare_digest(expected, s) for s in headers.get("webhook-signature", "").split())
        self.received.append({"valid": valid, "body": json.loads(body)})
        return Response(status_code=204 if valid else 401)


@dataclass
class World:
    """Everything one run drives: the service over HTTP, its poller, the fake Cal.com, the platform."""

    out: Out
    keys: SimulationSecrets
    clock: SimClock
    fake: FakeCalcom
    platform: Platform
    verifier: httpx.AsyncClient
    poller: Poller
    services: Any  # the web app's: its database and settings, for the /status figures
    booking_ids: Any = field(default_factory=lambda: iter(range(13068988, 13069000)))

    def say(self, text: str = "") -> None:
        self.out(text)

    async def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.keys.api_token}"}
        return await self.verifier.request(method, path, headers=headers, **kwargs)

    async def show(self, verification_id: str) -> dict[str, Any]:
        view: dict[str, Any] = (await self.api("GET", f"/api/verifications/{verification_id}")).json()
        return view

    def create_booking(
        self, appointment: str, key: str, start: datetime, end: datetime, host: str, event_type: int, tag: bool
    ) -> dict[str, Any]:
        """What Cal.com does inside the platform's create call: store the booking, return the webhook it sends."""
        booking_id = next(self.booking_ids)
        uid = secrets.token_urlsafe(16)
        metadata = {"appointment_id": appointment, "phase": key} if tag else {}
        self.fake.add_booking(
            self.keys.calcom_api_key,
            uid=uid,
            id=booking_id,
            start=start,
            end=end,
            event_type_id=event_type,
            hosts=[host],
            attendees=["kunde@example.com"],
            metadata=metadata,
        )
        return booking_created(uid, booking_id, start, end, host, event_type, metadata, self.clock())

    async def deliver_webhook(self, envelope: dict[str, Any]) -> tuple[int, float]:
        """POST a webhook as Cal.com does: compact JSON, HMAC-SHA256 hex of the raw body."""
        body = json.dumps(envelope, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "X-Cal-Signature-256": calcom_signature(self.keys.webhook_secret, body)}
        began = time.perf_counter()
        response = await self.verifier.post(f"/webhooks/calcom/{ACCOUNT}", content=body, headers=headers)
        return response.status_code, (time.perf_counter() - began) * 1000

    async def tick(self) -> TickReport:
        return await self.poller.tick(self.clock())

    def report_callbacks(self, since: int) -> None:
        for item in self.platform.received[since:]:
            v = item["body"]["verification"]
            bookings = ", ".join(f"{p['key']}={p['booking']['id']}" for p in v["phases"] if p["booking"])
            check = "signature valid" if item["valid"] else "SIGNATURE INVALID"
            self.say(
                f"  verifier → platform  {item['body']['type']}: appointment {v['appointment_id']} → {verdict_text(v)}"
                f"{f'; bookings {bookings}' if bookings else ''} ({check})"
            )


@asynccontextmanager
async def world(directory: Path, keys: SimulationSecrets, out: Out) -> AsyncIterator[World]:
    """The service, the fake Cal.com and the platform, wired together in this process."""
    database_url = f"sqlite+aiosqlite:///{directory / 'simulate.sqlite3'}"
    # The fakes answer on made-up hosts over plain HTTP: private targets allowed, as in development.
    settings = _Settings(
        database_url=database_url,
        api_token=SecretStr(keys.api_token),
        settle_seconds=SETTLE,
        check_schedule=SCHEDULE,
        guard_calcom_timeout_seconds=GUARD_TIMEOUT,
        secret_keys=SecretStr(keys.secret_key or base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()),
        allow_private_targets=True,
    )
    install_secret_keys(settings)
    db = open_database(database_url)
    await db.connect()
    try:
        await migrate(db)
    finally:
        await db.disconnect()
    clock = SimClock(START)
    fake = FakeCalcom(clock=clock)
    fake.add_api_key(keys.calcom_api_key)
    platform = Platform(keys.callback_secret)

    def offline(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("the simulation is offline", request=request)

    mounts = {CALCOM: httpx.ASGITransport(app=fake.app), "http://platform.sim": httpx.ASGITransport(app=platform.app)}
    app = create_app(settings, clock=clock, calcom_transport=httpx.ASGITransport(app=fake.app))
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=httpx.MockTransport(offline), mounts=mounts) as outbound:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://verifier.sim") as verifier:
            fake.webhook_client = verifier  # the guard's creates: Cal.com's webhooks go out inside them
            services_db = app.state.services.db
            rng = random.Random(762)
            deliverer = CallbackDeliverer(services_db, outbound, settings, owner="simulate", rng=rng, clock=clock)
            poller = Poller(
                services_db, settings, CalcomClient(outbound, clock=clock), clock=clock, owner="simulate", deliverer=deliverer, rng=rng
            )
            yield World(out, keys, clock, fake, platform, verifier, poller, app.state.services)


def booking_created(
    uid: str, booking_id: int, start: datetime, end: datetime, host: str, event_type: int, metadata: dict[str, Any], now: datetime
) -> dict[str, Any]:
    """A BOOKING_CREATED envelope with the fields Cal.com sends (docs example, salon values)."""
    person = {"timeZone": "Europe/Berlin", "language": {"locale": "de"}, "utcOffset": 60}
    return {
        "triggerEvent": "BOOKING_CREATED",
        "createdAt": iso(now),
        "payload": {
            "bookerUrl": "https://cal.com",
            "type": f"event-type-{event_type}",
            "title": f"Termin {uid[:6]}",
            "description": "",
            "additionalNotes": "",
            "customInputs": {},
            "userFieldsResponses": {},
            "startTime": iso(start),
            "endTime": iso(end),
            "eventTypeId": event_type,
            "organizer": {
                "id": 1,
                "name": host.split("@")[0].title(),
                "email": host,
                "username": host.split("@")[0],
                "timeFormat": "HH:mm",
                **person,
            },
            "attendees": [{"email": "kunde@example.com", "name": "Kunde", "firstName": "Kunde", "lastName": "", **person}],
            "responses": {
                "name": {"label": "your_name", "value": "Kunde"},
                "email": {"label": "email_address", "value": "kunde@example.com"},
            },
            "location": "Salon",
            "destinationCalendar": None,
            "requiresConfirmation": False,
            "seatsPerTimeSlot": None,
            "schedulingType": None,
            "iCalUID": f"{uid}@Cal.com",
            "iCalSequence": 0,
            "uid": uid,
            "bookingId": booking_id,
            "length": int((end - start).total_seconds() // 60),
            "price": 0,
            "currency": "eur",
            "metadata": metadata,
            "status": "ACCEPTED",
        },
    }


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def verdict_text(view: dict[str, Any]) -> str:
    return str(view["status"]) + (f" ({view['review_reason']})" if view["review_reason"] else "")


def verdict_after(view: dict[str, Any]) -> str:
    if not view["resolved_at"]:
        return "-"
    return f"{(parse_instant(view['resolved_at']) - parse_instant(view['created_at'])).total_seconds():g} s"
