"""The Cal.com API v2 bookings client: the only module that talks to Cal.com over HTTP."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx

from service.clients.targets import GuardedTransport
from service.core import times
from service.core.ratelimit import parse_rate_headers
from service.core.tallies import CALCOM_REQUESTS, Tally, calcom_outcome
from service.errors import CalcomCredentialsBroken, CalcomError, CalcomRequestRejected, CalcomUnavailable

logger = logging.getLogger("service.clients.calcom")

API_VERSION = "2024-08-13"
# Every status that can hold one of our bookings; asking only `upcoming` (as the first version
# did) misses bookings that have already started or still await confirmation.
STATUSES = "upcoming,unconfirmed,past,cancelled"
PAGE_SIZE = 250  # Cal.com's maximum `take`
MAX_PAGES = 100


@dataclass
class FetchResult:
    """Every booking item of one query, the HTTP requests it took and the last rate-limit reading."""

    items: list[dict[str, Any]]
    calls: int
    remaining: int | None
    reset_at: datetime | None


class CalcomClient:
    """Reads bookings from Cal.com API v2 with a shared `httpx.AsyncClient`."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        timeout: float = 10.0,
        clock: Callable[[], datetime] | None = None,
        tally: Tally | None = None,
    ) -> None:
        self._http = http
        self._timeout = httpx.Timeout(timeout)
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self.tally = tally if tally is not None else Tally()  # requests by outcome, for /metrics

    async def check_key(self, *, api_base: str, api_key: str) -> None:
        """One small bookings query: returns when Cal.com accepts the key, raises CalcomError otherwise."""
        now = self._clock()
        url = api_base.rstrip("/") + "/v2/bookings"
        headers = {"Authorization": f"Bearer {api_key}", "cal-api-version": API_VERSION}
        params = {"afterStart": times.iso_ms(now), "beforeEnd": times.iso_ms(now + timedelta(minutes=1)), "take": "1", "skip": "0"}
        response = await self._get(url, headers, params)
        _raise_for_status(response, parse_rate_headers(response.headers, self._clock())[1])

    async def list_bookings(self, *, api_base: str, api_key: str, after_start: datetime, before_end: datetime) -> FetchResult:
        """All bookings starting at or after `after_start` and ending at or before `before_end`, every page."""
        url = api_base.rstrip("/") + "/v2/bookings"
        headers = {"Authorization": f"Bearer {api_key}", "cal-api-version": API_VERSION}
        query = {"afterStart": times.iso_ms(after_start), "beforeEnd": times.iso_ms(before_end), "status": STATUSES}
        items: list[dict[str, Any]] = []
        calls = 0
        remaining: int | None = None
        reset_at: datetime | None = None
        try:
            for page in range(MAX_PAGES):
                params = {**query, "take": str(PAGE_SIZE), "skip": str(page * PAGE_SIZE)}
                calls += 1
                response = await self._get(url, headers, params)
                remaining, reset_at = parse_rate_headers(response.headers, self._clock())
                _raise_for_status(response, reset_at)
                data, returned, has_next = _read_page(response)
                items.extend(data)
                if not has_next or returned < PAGE_SIZE:
                    logger.info(
                        "Cal.com bookings fetched",
                        extra={"event": "calcom_fetched", "calls": calls, "items": len(items), "remaining": remaining},
                    )
                    return FetchResult(items=items, calls=calls, remaining=remaining, reset_at=reset_at)
            raise CalcomUnavailable(f"Cal.com had more bookings after {MAX_PAGES} pages; the answer is incomplete")
        except CalcomError as exc:
            # errors.py has no slots for these; the poller counts API usage and paces the key with them.
            exc.calls, exc.remaining, exc.reset_at = calls, remaining, reset_at  # type: ignore[attr-defined]
            logger.warning(
                "Cal.com bookings fetch failed",
                extra={"event": "calcom_fetch_failed", "calls": calls, "error": type(exc).__name__, "reason": str(exc)},
            )
            raise

    async def _get(self, url: str, headers: dict[str, str], params: dict[str, str]) -> httpx.Response:
        try:
            response = await self._http.get(url, headers=headers, params=params, timeout=self._timeout)
        # `from None`: httpx's exception holds the request, and with it the Authorization header.
        except httpx.TimeoutException as exc:
            self.tally.add(CALCOM_REQUESTS, "timeout")
            raise CalcomUnavailable(f"Cal.com did not answer in time ({type(exc).__name__})") from None
        except httpx.InvalidURL:
            raise CalcomRequestRejected("the Cal.com API base URL is not a usable URL") from None
        except httpx.HTTPError as exc:
            self.tally.add(CALCOM_REQUESTS, "connection_error")
            raise CalcomUnavailable(f"Cal.com could not be reached ({type(exc).__name__})") from None
        self.tally.add(CALCOM_REQUESTS, calcom_outcome(response.status_code))
        return response


@asynccontextmanager
async def connected(
    *,
    timeout_seconds: float,
    tally: Tally | None = None,
    clock: Callable[[], datetime] | None = None,
    transport: Any = None,
    allow_private: bool = False,
) -> AsyncIterator[CalcomClient]:
    """A client with its own connection pool, closed on exit (`transport`: tests route it to a fake).

    It connects to public https hosts only, unless `allow_private` (ALLOW_PRIVATE_TARGETS)."""
    limits = httpx.Limits(max_connections=50, max_keepalive_connections=20)
    guarded = GuardedTransport(transport, allow_private=allow_private, limits=limits)
    async with httpx.AsyncClient(follow_redirects=False, transport=guarded) as http:
        yield CalcomClient(http, timeout=timeout_seconds, clock=clock, tally=tally)


def _raise_for_status(response: httpx.Response, reset_at: datetime | None) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    reason = f"Cal.com answered {status}{_error_message(response)}"
    if status == 429:
        retry_at = reset_at.timestamp() if reset_at is not None else None
        raise CalcomUnavailable(reason, rate_limited=True, retry_at=retry_at)
    if status in (401, 403):
        raise CalcomCredentialsBroken(reason)
    if 400 <= status < 500:
        raise CalcomRequestRejected(reason)
    raise CalcomUnavailable(reason)


def _error_message(response: httpx.Response) -> str:
    """`: <message>` from Cal.com's error envelope, if it has one (it never echoes the key)."""
    try:
        body = response.json()
    except ValueError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return f": {message[:200]}" if isinstance(message, str) and message.strip() else ""


def _read_page(response: httpx.Response) -> tuple[list[dict[str, Any]], int, bool]:
    """The page's booking items, how many entries it returned, and whether another page follows."""
    try:
        body = response.json()
    except ValueError:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        raise CalcomUnavailable(f"Cal.com answered {response.status_code} with a body that is not JSON") from None
    if not isinstance(body, dict) or body.get("status") == "error" or not isinstance(body.get("data"), list):
        raise CalcomUnavailable(f"Cal.com answered {response.status_code} without a bookings list in `data`")
    returned = len(body["data"])
    data = [item for item in body["data"] if isinstance(item, dict)]
    pagination = body.get("pagination")
    if isinstance(pagination, dict) and isinstance(pagination.get("hasNextPage"), bool):
        return data, returned, pagination["hasNextPage"]
    return data, returned, returned >= PAGE_SIZE
