"""A fake Cal.com API v2 `GET /v2/bookings` for end-to-end tests, `simulate` and benchmarks.

It speaks the 2024-08-13 shapes of `calcom/openapi-v2.json` and Cal.com's rate limiting (per API
key: `limit` requests per `window`, then the key is blocked for `block` seconds, 429 without
Retry-After). Without `cal-api-version: 2024-08-13` it answers 200 in the old 2024-04-15 shape
(`data: {bookings, recurringInfo, nextCursor}`), as Cal.com silently routes such requests there.
Bookings, faults and the clock are driven by plain methods or by the JSON API in `fakecalcom_control`.
"""

from __future__ import annotations

import argparse
import asyncio
import math
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route

from service.testing.fakecalcom import control as fakecalcom_control
from service.testing.fakecalcom.bookings import BookingBook, iso, parse_time

API_VERSION = "2024-08-13"
STATUS_FILTERS = ("upcoming", "recurring", "past", "cancelled", "unconfirmed")
FAULT_STATUSES = (400, 429, 500, 502, 503)
REQUEST_LOG_SIZE = 10_000  # the newest requests kept for inspection; benchmarks send many more
THROTTLED = "CustomThrottlerGuard - Too many requests. Please try again later."


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class _Throttle:
    hits: int = 0
    window_end: datetime | None = None
    blocked_until: datetime | None = None


class FakeCalcom:
    """Bookings per API key behind a Starlette `app` that answers like Cal.com API v2."""

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] = _utcnow,
        limit: int = 120,
        window: float = 60.0,
        block: float = 60.0,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.clock = clock
        self.limit, self.window, self.block = limit, window, block
        self._sleep = sleep
        self.book = BookingBook(clock=lambda: self.clock())
        self.app = Starlette(
            routes=[
                Route("/v2/bookings", self._list_bookings, methods=["GET"]),
                Mount("/_fake", routes=fakecalcom_control.routes(self)),
            ]
        )
        self.reset()

    def reset(self) -> None:
        """Forget bookings, keys, counters, logs and faults (the clock and limits stay)."""
        self.book.clear()
        self.calls = 0
        self.calls_by_key: Counter[str] = Counter()
        self.requests: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)
        self.delay = 0.0
        self.down = False
        self._faults: deque[int] = deque()
        self._throttles: dict[str, _Throttle] = {}

    # --- bookings (delegated to the booking book) -----------------------------------------------

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

    # --- faults ---------------------------------------------------------------------------------

    def fail_next(self, n: int, status: int = 500) -> None:
        """Answer the next `n` booking requests with `status` (400, 429, 500, 502 or 503)."""
        if status not in FAULT_STATUSES:
            raise ValueError(f"status must be one of {FAULT_STATUSES}")
        if n < 0:
            raise ValueError("n must not be negative")
        self._faults.extend([status] * n)

    def set_delay(self, seconds: float) -> None:
        """Wait this long before answering each booking request (to provoke client timeouts)."""
        if seconds < 0:
            raise ValueError("seconds must not be negative")
        self.delay = seconds

    def set_down(self, down: bool) -> None:
        """While down, every booking request gets a 503."""
        self.down = down

    def set_now(self, now: datetime | None) -> None:
        """Freeze the clock at `now` (aware), or go back to real UTC time with None."""
        if now is not None and now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self.clock = _utcnow if now is None else (lambda: now)

    # --- GET /v2/bookings -----------------------------------------------------------------------

    async def _list_bookings(self, request: Request) -> Response:
        now = self.clock()
        api_key = _bearer(request)
        self.calls += 1
        self.calls_by_key[api_key or ""] += 1
        version = request.headers.get("cal-api-version")
        self.requests.append({"api_key": api_key, "api_version": version, "params": dict(request.query_params)})
        if self.delay:
            await self._sleep(self.delay)
        if self.down:
            return PlainTextResponse("<html><body>503 Service Unavailable</body></html>", 503)
        if self._faults:
            return self._fault(self._faults.popleft(), request)
        if api_key is None or not self.book.has_key(api_key):
            message = "CustomThrottlerGuard - Invalid API Key" if api_key else "No authentication method provided"
            return _error(request, 401, "UnauthorizedException", message)
        blocked, headers = self._throttle(api_key, now)
        if blocked:
            return _error(request, 429, "ThrottlerException", THROTTLED, headers)
        if version != API_VERSION:
            old = {"bookings": self.book.old_shape(api_key), "recurringInfo": [], "nextCursor": None}
            return JSONResponse({"status": "success", "data": old}, headers=headers)
        try:
            query = _parse_query(request)
        except ValueError as exc:
            return _error(request, 400, "BadRequestException", str(exc), headers)
        items = self.book.query(api_key, now=now, **query)
        skip, take = query["skip"], query["take"]
        body = {"status": "success", "data": items[skip:skip + take], "pagination": _pagination(len(items), skip, take)}
        return JSONResponse(body, headers=headers)

    def _throttle(self, api_key: str, now: datetime) -> tuple[bool, dict[str, str]]:
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
        until = state.blocked_until if blocked else state.window_end
        headers = {
            "X-RateLimit-Limit-Default": str(self.limit),
            "X-RateLimit-Remaining-Default": "0" if blocked else str(max(0, self.limit - state.hits)),
            "X-RateLimit-Reset-Default": str(math.ceil((until - now).total_seconds())),
        }
        return blocked, headers

    def _fault(self, status: int, request: Request) -> Response:
        if status == 400:
            return _error(request, 400, "BadRequestException", "Bad Request Exception")
        if status == 429:
            headers = {"X-RateLimit-Limit-Default": str(self.limit), "X-RateLimit-Remaining-Default": "0",
                       "X-RateLimit-Reset-Default": str(math.ceil(self.block))}
            return _error(request, 429, "ThrottlerException", THROTTLED, headers)
        if status == 500:
            return _error(request, 500, "InternalServerErrorException", "Internal server error")
        return PlainTextResponse(f"<html><body>{status} Bad Gateway</body></html>", status)


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def _error(request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    """Cal.com's HttpException envelope (apps/api/v2/src/filters/http-exception.filter.ts)."""
    body = {
        "status": "error",
        "timestamp": iso(_utcnow()),
        "path": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        "error": {"code": code, "message": message, "details": {"message": message, "statusCode": status}},
    }
    return JSONResponse(body, status, headers=headers)


def _parse_query(request: Request) -> dict[str, Any]:
    params = request.query_params
    query: dict[str, Any] = {"take": _int(params, "take", 100, 1, 250), "skip": _int(params, "skip", 0, 0, None)}
    for name, key in (("afterStart", "after_start"), ("beforeEnd", "before_end")):
        value = params.get(name)
        query[key] = parse_time(value) if value is not None else None
        if value is not None and query[key] is None:
            raise ValueError(f"{name} must be a valid ISO 8601 date string")
    statuses = [s.strip() for s in params.get("status", "").split(",") if s.strip()]
    unknown = [s for s in statuses if s not in STATUS_FILTERS]
    if unknown:
        raise ValueError(f"status must be one of {', '.join(STATUS_FILTERS)}; got {', '.join(unknown)}")
    query["statuses"] = tuple(statuses)
    sort = params.get("sortStart")
    if sort not in (None, "asc", "desc"):
        raise ValueError("sortStart must be one of asc, desc")
    query["sort_start"] = sort
    return query


def _int(params: Any, name: str, default: int, low: int, high: int | None) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    if not raw.strip().isdigit():
        raise ValueError(f"{name} must be an integer number")
    value = int(raw)
    if value < low:
        raise ValueError(f"{name} must not be less than {low}")
    if high is not None and value > high:
        raise ValueError(f"{name} must not be greater than {high}")
    return value


def _pagination(total: int, skip: int, take: int) -> dict[str, Any]:
    """`PaginationMetaDto` as Cal.com computes it from skip, take and the total count."""
    safe_skip = min(skip, total)
    total_pages = math.ceil(total / take)
    return {
        "totalItems": total,
        "remainingItems": max(0, total - (safe_skip + take)),
        "returnedItems": max(0, min(take, total - safe_skip)),
        "itemsPerPage": take,
        "currentPage": min(safe_skip // take + 1, max(total_pages, 1)),
        "totalPages": total_pages,
        "hasNextPage": safe_skip + take < total,
        "hasPreviousPage": safe_skip > 0,
    }


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
    fake = FakeCalcom(limit=args.limit, window=args.window, block=args.block)
    for api_key in args.api_key:
        fake.add_api_key(api_key)
    uvicorn.run(fake.app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
