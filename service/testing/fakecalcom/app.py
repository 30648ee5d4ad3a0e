"""A fake Cal.com API v2 bookings API for end-to-end tests, `simulate` and benchmarks.

It speaks the 2024-08-13 shapes of `calcom/openapi-v2.json`: `GET /v2/bookings`,
`GET /v2/bookings/{uid}` and `POST /v2/bookings` (which sends the booking webhooks to the key's
subscribers before it answers, as Cal.com does), and Cal.com's rate limiting (per API key: `limit`
requests per `window`, then the key is blocked for `block` seconds, 429 without Retry-After).
Without `cal-api-version: 2024-08-13` a GET answers 200 in the old 2024-04-15 shape, as Cal.com
silently routes such requests there. Bookings, event types, subscribers, faults and the clock are
driven by plain methods or by the JSON API in `fakecalcom_control`.
"""

from __future__ import annotations

import argparse
import asyncio
import math
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from service.testing.fakecalcom import control as fakecalcom_control
from service.testing.fakecalcom import creates, reads
from service.testing.fakecalcom.answers import THROTTLED, error, internal_error, throttled, unavailable
from service.testing.fakecalcom.bookings import BookingBook
from service.testing.fakecalcom.eventtypes import EventType, EventTypes
from service.testing.fakecalcom.faults import SLOW_ANSWER_DELAY, CreateFault
from service.testing.fakecalcom.webhooks import Subscriber

if TYPE_CHECKING:
    import httpx

FAULT_STATUSES = (400, 429, 500, 502, 503)
REQUEST_LOG_SIZE = 10_000  # the newest requests kept for inspection; benchmarks send many more


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class _Throttle:
    hits: int = 0
    window_end: datetime | None = None
    blocked_until: datetime | None = None


class FakeCalcom:
    """Bookings per API key behind a Starlette `app` that answers like Cal.com API v2.

    `webhook_client` delivers the booking webhooks (e.g. an httpx client on an ASGI transport of
    the service under test); without one each create opens its own httpx client.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] = _utcnow,
        limit: int = 120,
        window: float = 60.0,
        block: float = 60.0,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        webhook_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.clock = clock
        self.limit, self.window, self.block = limit, window, block
        self._sleep = sleep
        self.webhook_client = webhook_client
        self.book = BookingBook(clock=lambda: self.clock())
        self.event_types = EventTypes()
        self.app = Starlette(
            routes=[
                Route("/v2/bookings", self._list_bookings, methods=["GET"]),
                Route("/v2/bookings", self._create_booking, methods=["POST"]),
                Route("/v2/bookings/{uid}", self._get_booking, methods=["GET"]),
                Mount("/_fake", routes=fakecalcom_control.routes(self)),
            ]
        )
        self.reset()

    def reset(self) -> None:
        """Forget bookings, keys, event types, subscribers, counters, logs and faults (the clock and limits stay)."""
        self.book.clear()
        self.event_types.clear()
        self.calls = 0  # reads: GET /v2/bookings and GET /v2/bookings/{uid}
        self.calls_by_key: Counter[str] = Counter()
        self.creates = 0  # POST /v2/bookings requests, whatever their outcome
        self.creates_by_key: Counter[str] = Counter()
        self.written = 0  # bookings and seats those creates wrote
        self.requests: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)
        self.create_requests: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)
        self.deliveries: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)
        self.delay = 0.0
        self.down = False
        self.held = 0
        self._faults: deque[int] = deque()
        self._create_faults: deque[CreateFault] = deque()
        self._throttles: dict[str, _Throttle] = {}
        self._subscribers: dict[str, list[Subscriber]] = {}
        self._release = asyncio.Event()
        self._held_changed = asyncio.Event()

    # --- bookings, event types, subscribers -----------------------------------------------------

    def add_api_key(self, api_key: str) -> None:
        """Make an API key known, with no bookings yet."""
        self.book.add_key(api_key)

    def add_booking(self, api_key: str, **fields: Any) -> dict[str, Any]:
        """Store a booking under an API key and return its API item (see `BookingBook.add`)."""
        return self.book.add(api_key, **fields)

    def add_seat(self, uid: str, email: str, **fields: Any) -> dict[str, Any]:
        """Add an attendee seat to a seated booking; returns the seated attendee."""
        return self.book.add_seat(uid, email, **fields)

    def cancel_booking(self, uid: str, **fields: Any) -> dict[str, Any]:
        """Cancel (or reject) a booking; returns its item."""
        return self.book.cancel(uid, **fields)

    def reschedule_booking(self, uid: str, **fields: Any) -> dict[str, Any]:
        """Reschedule like Cal.com: the old booking is cancelled, a new one with a new uid is returned."""
        return self.book.reschedule(uid, **fields)

    def set_event_type(self, event_type_id: int, **settings: Any) -> EventType:
        """Configure an event type: length, hosts, seats, recurring, durations, requires_confirmation, title."""
        return self.event_types.set(event_type_id, **settings)

    def add_webhook(self, api_key: str, url: str, secret: str | None = None) -> None:
        """Subscribe `url` to the booking webhooks of an API key's creates, signed with `secret`."""
        if not url.startswith(("http://", "https://")):
            raise ValueError("url must be an http(s) URL")
        self.add_api_key(api_key)
        self._subscribers.setdefault(api_key, []).append(Subscriber(url, secret or None))

    def subscribers(self, api_key: str) -> list[Subscriber]:
        """The webhook subscribers of an API key."""
        return list(self._subscribers.get(api_key, []))

    # --- faults ---------------------------------------------------------------------------------

    def fail_next(self, n: int, status: int = 500) -> None:
        """Answer the next `n` reads (GETs) with `status` (400, 429, 500, 502 or 503); creates are unaffected."""
        if status not in FAULT_STATUSES:
            raise ValueError(f"status must be one of {FAULT_STATUSES}")
        if n < 0:
            raise ValueError("n must not be negative")
        self._faults.extend([status] * n)

    def fail_next_create(self, mode: str, n: int = 1, *, delay: float = SLOW_ANSWER_DELAY, status: int = 503) -> None:
        """Play fault `mode` (see `faults.py`) on each of the next `n` creates, whatever they ask for."""
        if n < 0:
            raise ValueError("n must not be negative")
        self._create_faults.extend([CreateFault(mode, delay, status)] * n)

    def release_answers(self) -> None:
        """Let every create held by `slow_answer` answer now."""
        self._release.set()
        self._release = asyncio.Event()

    async def wait_until_held(self, count: int = 1) -> None:
        """Return once `count` creates are held by `slow_answer` (their rows and webhooks are done)."""
        while self.held < count:
            self._held_changed.clear()
            await self._held_changed.wait()

    def set_delay(self, seconds: float) -> None:
        """Wait this long before answering each read (to provoke client timeouts)."""
        if seconds < 0:
            raise ValueError("seconds must not be negative")
        self.delay = seconds

    def set_down(self, down: bool) -> None:
        """While down, every request (read or create) gets a 503."""
        self.down = down

    def set_now(self, now: datetime | None) -> None:
        """Freeze the clock at `now` (aware), or go back to real UTC time with None."""
        if now is not None and now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self.clock = _utcnow if now is None else (lambda: now)

    # --- the request path (used by `reads` and `creates`) -------------------------------------

    async def _list_bookings(self, request: Request) -> Response:
        return await reads.list_bookings(self, request)

    async def _get_booking(self, request: Request) -> Response:
        return await reads.get_booking(self, request)

    async def _create_booking(self, request: Request) -> Response:
        return await creates.create_booking(self, request)

    async def admit_read(self, request: Request, api_key: str | None) -> Response | None:
        """Count a read and play the read faults; a refusal, or None to go on."""
        self.calls += 1
        self.calls_by_key[api_key or ""] += 1
        if self.delay:
            await self._sleep(self.delay)
        if self.down:
            return unavailable(503)
        if self._faults:
            return self._fault(self._faults.popleft(), request)
        return self.authenticate(request, api_key)

    def authenticate(self, request: Request, api_key: str | None) -> Response | None:
        """401 in Cal.com's words for a missing or unknown key, else None."""
        if api_key is not None and self.book.has_key(api_key):
            return None
        message = "CustomThrottlerGuard - Invalid API Key" if api_key else "No authentication method provided"
        return error(request, 401, "UnauthorizedException", message)

    def throttle(self, request: Request, api_key: str, now: datetime) -> tuple[Response | None, dict[str, str]]:
        """Count a hit for the key: (a 429 when blocked, else None; the rate-limit headers)."""
        # Mirrors @nest-lab/throttler-storage-redis as Cal.com's CustomThrottlerGuard uses it: a fixed
        # window from the first hit; the hit over the limit blocks the key for `block`; Reset in seconds.
        state = self._throttles.setdefault(api_key, _Throttle())
        if state.blocked_until is not None and now >= state.blocked_until:
            state.blocked_until, state.window_end = None, None
        if state.window_end is None or now >= state.window_end:
            state.hits, state.window_end = 0, now + timedelta(seconds=self.window)
        state.hits += 1
        if state.blocked_until is None and state.hits > self.limit:
            state.blocked_until = now + timedelta(seconds=self.block)
        blocked = state.blocked_until is not None
        until = state.blocked_until or state.window_end or now
        headers = {
            "X-RateLimit-Limit-Default": str(self.limit),
            "X-RateLimit-Remaining-Default": "0" if blocked else str(max(0, self.limit - state.hits)),
            "X-RateLimit-Reset-Default": str(math.ceil((until - now).total_seconds())),
        }
        refusal = error(request, 429, "ThrottlerException", THROTTLED, headers) if blocked else None
        return refusal, headers

    def note_create(self, api_key: str | None, api_version: str | None, raw: bytes) -> None:
        """Count and log one create request."""
        self.creates += 1
        self.creates_by_key[api_key or ""] += 1
        self.create_requests.append({"api_key": api_key, "api_version": api_version, "body": raw.decode(errors="replace")})

    def next_create_fault(self) -> CreateFault | None:
        """The fault planned for this create, if any (each create takes one)."""
        return self._create_faults.popleft() if self._create_faults else None

    async def hold_answer(self, delay: float) -> None:
        """Keep a create's answer back until `release_answers` or `delay` seconds."""
        release = asyncio.ensure_future(self._release.wait())
        timer = asyncio.ensure_future(self._sleep(delay))
        self.held += 1
        self._held_changed.set()
        try:
            await asyncio.wait({release, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.held -= 1
            release.cancel()
            timer.cancel()

    def _fault(self, status: int, request: Request) -> Response:
        if status == 400:
            return error(request, 400, "BadRequestException", "Bad Request Exception")
        if status == 429:
            return throttled(request, self.limit, self.block)
        if status == 500:
            return internal_error(request)
        return unavailable(status)


def main(argv: list[str] | None = None) -> None:
    """Serve a fake Cal.com with uvicorn: `python -m service.testing.fakecalcom --port 8765`."""
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m service.testing.fakecalcom", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--api-key", action="append", default=[], help="an API key to know from the start (repeatable)")
    parser.add_argument("--limit", type=int, default=120, help="requests per window per API key")
    parser.add_argument("--window", type=float, default=60.0, help="rate-limit window in seconds")
    parser.add_argument("--block", type=float, default=60.0, help="seconds a key stays blocked after exceeding")
    args = parser.parse_args(argv)
    import httpx

    from service.testing.fakecalcom.webhooks import DELIVERY_TIMEOUT

    # One pool for every webhook delivery: a client per create costs a TLS context each (milliseconds).
    client = httpx.AsyncClient(timeout=DELIVERY_TIMEOUT, follow_redirects=False)
    fake = FakeCalcom(limit=args.limit, window=args.window, block=args.block, webhook_client=client)
    for api_key in args.api_key:
        fake.add_api_key(api_key)
    uvicorn.run(fake.app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
