"""`calcom-verifier simulate`: the first version's three test scenarios end to end, offline, in a few seconds.

Everything runs in this process: a temporary SQLite database, the real web app (driven through
`httpx.ASGITransport`), the fake Cal.com, the real poller ticked with a simulated clock (no real
waiting), and a small stand-in for the platform's callback endpoint that checks the signatures of
the verdicts it receives. The secrets are generated for the run and never printed.
"""

from __future__ import annotations

import base64
import hmac
import json
import random
import secrets
import tempfile
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
from service.store import secretbox
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
CALCOM_ANSWER = "HTTP 400 \"User either already has booking at this time or is not available\""
SYNC_ERROR = "Cal.com " + CALCOM_ANSWER
SETTLE, SCHEDULE = 2.0, (10.0, 30.0, 120.0, 600.0)


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


@dataclass
class Outcome:
    scenario: str
    appointment_id: str
    expected: str
    got: str
    via: str | None
    verdict_after: str
    calcom_calls: int


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

    def create_booking(self, appointment: str, key: str, start: datetime, end: datetime, host: str, event_type: int, tag: bool) -> dict[str, Any]:
        """What Cal.com does inside the platform's create call: store the booking, return the webhook it sends."""
        booking_id = next(self.booking_ids)
        uid = secrets.token_urlsafe(16)
        metadata = {"appointment_id": appointment, "phase": key} if tag else {}
        self.fake.add_booking(
            self.keys.calcom_api_key, uid=uid, id=booking_id, start=start, end=end, event_type_id=event_type,
            hosts=[host], attendees=["kunde@example.com"], metadata=metadata,
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
            self.say(f"  verifier → platform  {item['body']['type']}: appointment {v['appointment_id']} → {_verdict(v)}"
                     f"{f'; bookings {bookings}' if bookings else ''} ({check})")


def booking_created(uid: str, booking_id: int, start: datetime, end: datetime, host: str, event_type: int, metadata: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A BOOKING_CREATED envelope with the fields Cal.com sends (docs example, salon values)."""
    person = {"timeZone": "Europe/Berlin", "language": {"locale": "de"}, "utcOffset": 60}
    return {
        "triggerEvent": "BOOKING_CREATED",
        "createdAt": _iso(now),
        "payload": {
            "bookerUrl": "https://cal.com", "type": f"event-type-{event_type}", "title": f"Termin {uid[:6]}",
            "description": "", "additionalNotes": "", "customInputs": {}, "userFieldsResponses": {},
            "startTime": _iso(start), "endTime": _iso(end), "eventTypeId": event_type,
            "organizer": {"id": 1, "name": host.split("@")[0].title(), "email": host, "username": host.split("@")[0], "timeFormat": "HH:mm", **person},
            "attendees": [{"email": "kunde@example.com", "name": "Kunde", "firstName": "Kunde", "lastName": "", **person}],
            "responses": {"name": {"label": "your_name", "value": "Kunde"}, "email": {"label": "email_address", "value": "kunde@example.com"}},
            "location": "Salon", "destinationCalendar": None, "requiresConfirmation": False, "seatsPerTimeSlot": None,
            "schedulingType": None, "iCalUID": f"{uid}@Cal.com", "iCalSequence": 0, "uid": uid, "bookingId": booking_id,
            "length": int((end - start).total_seconds() // 60), "price": 0, "currency": "eur", "metadata": metadata,
            "status": "ACCEPTED",
        },
    }


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _at(hour: int, minute: int = 0) -> datetime:
    return DAY.replace(hour=hour, minute=minute)


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _phase(key: str, start: datetime, minutes: int, host: str | None, event_type: int | None = None) -> dict[str, Any]:
    phase: dict[str, Any] = {"key": key, "start": start.isoformat(), "end": (start + timedelta(minutes=minutes)).isoformat()}
    if host is None:
        phase["staff_required"] = False
    else:
        phase["host_email"] = host
    if event_type is not None:
        phase["event_type_id"] = event_type
    return phase


def _span(phase: dict[str, Any]) -> str:
    return f"{datetime.fromisoformat(phase['start']):%H:%M}–{datetime.fromisoformat(phase['end']):%H:%M}"


def _verified_lines(world: World, view: dict[str, Any]) -> None:
    for p in view["phases"]:
        if p["booking"]:
            world.say(f"  ✅ Verified phase booking in Cal.com (Phase {p['key']}, Booking {p['booking']['id']})")


async def dauerwelle(world: World) -> Outcome:
    """Scenario 1: Cal.com creates four bookings and answers 400; the webhooks settle it inside the intake call."""
    world.say("━━ 1/3 Dauerwelle — appointment 762: staff phases A–D, plus a processing time without staff ━━")
    host = "anna@salon.example"
    phases = [_phase("A", _at(10), 30, host), _phase("B", _at(10, 30), 45, host), _phase("Einwirkzeit", _at(11, 15), 20, None),
              _phase("C", _at(11, 35), 30, host), _phase("D", _at(12, 5), 30, host)]
    calls = world.fake.calls
    for p in phases:
        if p.get("staff_required") is False:
            world.say(f"  phase {p['key']} {_span(p)}: no staff, not a Cal.com booking")
            continue
        envelope = world.create_booking("762", p["key"], _parse(p["start"]), _parse(p["end"]), host, 101, tag=True)
        status, ms = await world.deliver_webhook(envelope)
        world.say(f"  platform → Cal.com   POST /v2/bookings phase {p['key']} {_span(p)}: booking {envelope['payload']['bookingId']} created;")
        world.say(f"    Cal.com → verifier BOOKING_CREATED (signed, inside the create call) → {status} in {ms:.1f} ms")
    world.say(f"  Cal.com → platform   {CALCOM_ANSWER}")
    world.say("  platform             marks the sync failed and records it: POST /api/verifications?wait=5")
    body = {"account": ACCOUNT, "appointment_id": "762", "service": "Dauerwelle", "sync_error": SYNC_ERROR, "phases": phases}
    began = time.perf_counter()
    response = await world.api("POST", "/api/verifications", params={"wait": "5"}, json=body)
    elapsed = (time.perf_counter() - began) * 1000
    view = response.json()
    world.say(f"  verifier → platform  {response.status_code} {view['status']} (resolved_via {view['resolved_via']}) in {elapsed:.1f} ms")
    if view["status"] == "verified":
        _verified_lines(world, view)
        world.say("  ✅ POST-SYNC VERIFICATION SUCCESS: All composite bookings verified")
        world.say(f"     the caller hears \"booked\" while still on the line ({elapsed:.0f} ms; the first version slept 2 s and needed ≥ 2.6 s)")
    seen = len(world.platform.received)
    await world.tick()  # the poller's callback round
    world.report_callbacks(seen)
    return Outcome("Dauerwelle", "762", "verified", _verdict(view), view["resolved_via"], f"in the call ({elapsed:.0f} ms)", world.fake.calls - calls)


async def herrenhaarschnitt(world: World) -> Outcome:
    """Scenario 2: one booking, the failure recorded first, the webhook lost: the poller finds it."""
    world.say("━━ 2/3 Herrenhaarschnitt — appointment 763: one phase; the webhook is lost ━━")
    world.clock.now += timedelta(minutes=5)
    host = "ben@salon.example"
    phase = _phase("A", _at(13), 30, host, event_type=102)
    calls, requests = world.fake.calls, len(world.fake.requests)
    envelope = world.create_booking("763", "A", _parse(phase["start"]), _parse(phase["end"]), host, 102, tag=False)
    world.say(f"  platform → Cal.com   POST /v2/bookings {_span(phase)}: booking {envelope['payload']['bookingId']} created")
    world.say("    Cal.com → verifier BOOKING_CREATED ✗ lost (connection reset; Cal.com does not retry webhooks)")
    world.say(f"  Cal.com → platform   {CALCOM_ANSWER}")
    body = {"account": ACCOUNT, "appointment_id": "763", "service": "Herrenhaarschnitt", "sync_error": SYNC_ERROR, "phases": [phase]}
    response = await world.api("POST", "/api/verifications", json=body)
    view = response.json()
    recorded = world.clock()
    world.say(f"  platform → verifier  POST /api/verifications → {response.status_code} {view['status']}, first check at {view['next_check_at']}")
    world.clock.now = recorded + timedelta(seconds=1)
    report = await world.tick()
    world.say(f"  t+1 s  poller tick: {report.due} due, {report.calls} Cal.com calls (settle window {SETTLE:g} s)")
    world.clock.now = recorded + timedelta(seconds=SETTLE)
    seen = len(world.platform.received)
    report = await world.tick()
    world.say(f"  t+{SETTLE:g} s  poller tick: {report.due} due, {report.calls} Cal.com call(s), {report.verdicts} verdict(s)")
    for request in list(world.fake.requests)[requests:]:
        params = "&".join(f"{k}={v}" for k, v in request["params"].items())
        world.say(f"    verifier → Cal.com GET /v2/bookings?{params} (cal-api-version {request['api_version']})")
    view = await world.show(view["id"])
    if view["status"] == "verified":
        _verified_lines(world, view)
        world.say(f"  ✅ POST-SYNC VERIFICATION SUCCESS: booking verified via {view['resolved_via']}, {_after(view)} after the failure was recorded")
    world.report_callbacks(seen)
    return Outcome("Herrenhaarschnitt", "763", "verified", _verdict(view), view["resolved_via"], _after(view), world.fake.calls - calls)


async def real_failure(world: World) -> Outcome:
    """Scenario 3: nothing was created; every scheduled check finds nothing; the last one decides."""
    world.say("━━ 3/3 Real failure — appointment 764: the slot really was taken ━━")
    world.clock.now += timedelta(minutes=5)
    phase = _phase("A", _at(15), 30, "ben@salon.example", event_type=102)
    calls = world.fake.calls
    world.say(f"  platform → Cal.com   POST /v2/bookings {_span(phase)}: nothing created, no webhook")
    world.say(f"  Cal.com → platform   {CALCOM_ANSWER}")
    body = {"account": ACCOUNT, "appointment_id": "764", "service": "Herrenhaarschnitt", "sync_error": SYNC_ERROR, "phases": [phase]}
    response = await world.api("POST", "/api/verifications", json=body)
    view = response.json()
    recorded = world.clock()
    world.say(f"  platform → verifier  POST /api/verifications → {response.status_code} {view['status']}")
    total = 1 + len(SCHEDULE)
    seen = len(world.platform.received)
    for check in range(1, total + 2):
        if view["status"] != "pending" or view["next_check_at"] is None:
            break
        world.clock.now = _parse(view["next_check_at"])
        report = await world.tick()
        view = await world.show(view["id"])
        offset = (world.clock() - recorded).total_seconds()
        state = view["status"] + (f" ({view['review_reason']})" if view["review_reason"] else "")
        world.say(f"  t+{offset:g} s  check {check}/{total}: {report.calls} Cal.com call(s), no matching booking → {state}")
    if view["status"] == "manual_review":
        world.say("  ⚠️ POST-SYNC VERIFICATION: No matching booking found → manual review")
        world.say("  🚨 Cal.com sync permanently failed after max retries (the platform keeps it failed; an operator looks)")
    world.report_callbacks(seen)
    queue = (await world.api("GET", "/api/verifications", params={"status": "manual_review"})).json()["items"]
    world.say(f"  review queue (GET /api/verifications?status=manual_review): {len(queue)}")
    for item in queue:
        world.say(f"    appointment {item['appointment_id']} {item['service']}: {item['review_reason']}, missing phases {', '.join(item['missing_phases'])}, {item['checks']} checks")
    return Outcome("Real failure", "764", "manual_review (no_booking_found)", _verdict(view), view["resolved_via"], _after(view), world.fake.calls - calls)


def _verdict(view: dict[str, Any]) -> str:
    return str(view["status"]) + (f" ({view['review_reason']})" if view["review_reason"] else "")


def _after(view: dict[str, Any]) -> str:
    if not view["resolved_at"]:
        return "-"
    return f"{(_parse(view['resolved_at']) - _parse(view['created_at'])).total_seconds():g} s"


async def summary(world: World, outcomes: list[Outcome]) -> bool:
    headers = ("scenario", "appt", "expected", "got", "via", "verdict after", "Cal.com calls")
    rows = [(o.scenario, o.appointment_id, o.expected, o.got, o.via or "-", o.verdict_after, str(o.calcom_calls)) for o in outcomes]
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    world.say("━━ Summary ━━")
    for row in [headers, *rows]:
        world.say("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    received = world.platform.received
    statuses = [item["body"]["verification"]["status"] for item in received if item["valid"]]
    world.say(f"  the platform received {len(received)} signed verdict callback(s), {len(statuses)} with a valid signature: {', '.join(statuses)}")
    world.say(await status_line(world))
    matched = all(o.expected == o.got for o in outcomes)
    delivered = len(statuses) == len(outcomes)
    if matched and delivered:
        world.say("  ✅ all three outcomes as expected (the first version's test plan)")
    else:
        world.say("  ❌ " + ("an outcome differs from the expected one" if not matched else "a verdict callback is missing"))
    return matched and delivered


async def status_line(world: World) -> str:
    """The first version's success metrics as /status reports them for this run."""
    try:
        from service.app.status import collect
    except ImportError:  # pragma: no cover - /status arrives with its own change
        return "  (/status is not available in this build)"
    figures = await collect(world.services.db, world.clock(), world.services.settings)
    rate = "n/a" if figures["auto_recovery_rate"] is None else f"{figures['auto_recovery_rate']:.0%}"
    via = figures["resolved_via"]
    return (
        f"  /status: auto-recovery rate {rate} (target > 90 %; the real failure counts against it), "
        f"review queue {figures['review_queue']['size']}, resolved via webhook {via['webhook']} / poll {via['poll']} / system {via['system']}"
    )


@asynccontextmanager
async def world(directory: Path, keys: SimulationSecrets, out: Out) -> AsyncIterator[World]:
    """The service, the fake Cal.com and the platform, wired together in this process."""
    database_url = f"sqlite+aiosqlite:///{directory / 'simulate.sqlite3'}"
    # The fakes answer on made-up hosts over plain HTTP: private targets allowed, as in development.
    settings = _Settings(
        database_url=database_url, api_token=SecretStr(keys.api_token), settle_seconds=SETTLE, check_schedule=SCHEDULE,
        secret_keys=SecretStr(keys.secret_key or base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()), allow_private_targets=True,
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
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=httpx.MockTransport(offline), mounts=mounts) as outbound:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://verifier.sim") as verifier:
            services_db = app.state.services.db
            rng = random.Random(762)
            deliverer = CallbackDeliverer(services_db, outbound, settings, owner="simulate", rng=rng, clock=clock)
            poller = Poller(services_db, settings, CalcomClient(outbound, clock=clock), clock=clock, owner="simulate", deliverer=deliverer, rng=rng)
            yield World(out, keys, clock, fake, platform, verifier, poller, app.state.services)


async def simulate(out: Out = print, *, keys: SimulationSecrets | None = None) -> int:
    """Run the three scenarios, narrate them with `out`; 0 when every outcome is the expected one."""
    keys = keys or SimulationSecrets.generate()
    began = time.perf_counter()
    out("Simulating the first version's three test scenarios: the real web app and poller on a temporary SQLite database,")
    out(f"a fake Cal.com and a stand-in platform, all in this process, with a simulated clock (starts {START:%Y-%m-%d %H:%M} UTC).")
    out(f"SETTLE_SECONDS={SETTLE:g}  CHECK_SCHEDULE={','.join(f'{s:g}' for s in SCHEDULE)}  MATCH_TOLERANCE_SECONDS=300; "
        f"appointments on {DAY:%Y-%m-%d}, salon time (CET)")
    outer_keys = secretbox.install(None)  # the run's own key; the process' keys come back afterwards
    try:
        return await _simulate(out, keys, began)
    finally:
        secretbox.install(outer_keys)


async def _simulate(out: Out, keys: SimulationSecrets, began: float) -> int:
    with tempfile.TemporaryDirectory(prefix="calcom-verifier-simulate-") as directory:
        async with world(Path(directory), keys, out) as w:
            account = {"calcom_api_key": keys.calcom_api_key, "webhook_secret": keys.webhook_secret, "calcom_api_base": CALCOM,
                       "callback_url": PLATFORM, "callback_secret": keys.callback_secret}
            response = await w.api("PUT", f"/api/accounts/{ACCOUNT}", json=account)
            w.say(f"PUT /api/accounts/{ACCOUNT} → {response.status_code} (Cal.com API key, webhook and callback secrets generated; not shown)")
            w.say()
            outcomes = []
            for scenario in (dauerwelle, herrenhaarschnitt, real_failure):
                outcomes.append(await scenario(w))
                w.say()
            ok = await summary(w, outcomes)
            simulated = (w.clock() - START).total_seconds()
    out(f"  finished in {time.perf_counter() - began:.1f} s of real time ({simulated / 60:.1f} simulated minutes)")
    return 0 if ok else 1
