"""Pacing and backoff policy for Cal.com API keys. Pure: no I/O, the clock is passed in."""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

RESERVE = 2  # requests we keep in hand per window, so two pollers racing do not trip the 60 s block
BLOCK_SECONDS = 60.0  # Cal.com's RATE_LIMIT_DEFAULT_BLOCK_DURATION_MS (apps/api/v2/src/lib/throttler-guard.ts)
BLOCK_JITTER_SECONDS = 5.0
MIN_BACKOFF_SECONDS = 0.5
# Cal.com's windows and blocks are 60 s; a Reset above this is not seconds (see parse_rate_headers).
MAX_PLAUSIBLE_RESET_SECONDS = 3600

_REMAINING = "x-ratelimit-remaining-"
_RESET = "x-ratelimit-reset-"


def key_name(api_key: str) -> str:
    """How an API key's pace is stored: a sha256 of the key, never the key itself (pollers share it)."""
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


@dataclass
class KeyPace:
    """What we know about one API key's rate-limit budget."""

    paused_until: datetime | None = None
    remaining: int | None = None
    reset_at: datetime | None = None


def parse_rate_headers(headers: Mapping[str, str], now: datetime) -> tuple[int | None, datetime | None]:
    """Remaining requests and reset instant of the most restrictive `X-RateLimit-*-<Name>` limit."""
    remaining: dict[str, int] = {}
    resets: dict[str, float] = {}
    for key, value in headers.items():
        name = key.lower()
        if name.startswith(_REMAINING):
            number = _number(value)
            if number is not None:
                remaining[name[len(_REMAINING) :]] = max(0, int(number))
        elif name.startswith(_RESET):
            number = _number(value)
            if number is not None and number >= 0:
                resets[name[len(_RESET) :]] = number
    if not remaining:
        return None, None
    # Lowest remaining wins; on a tie the later reset is the more restrictive one.
    limit = min(remaining, key=lambda n: (remaining[n], -resets.get(n, 0.0)))
    reset = resets.get(limit)
    if reset is None:
        return remaining[limit], None
    # Reset is whole seconds until the window (or block) expires: the guard sends
    # `timeToBlockExpire || timeToExpire`, which @nest-lab/throttler-storage-redis returns as
    # Math.ceil(pttl / 1000) (calcom/cal.com apps/api/v2/src/lib/throttler-guard.ts `incrementRateLimit`;
    # jmcdo29/nest-lab packages/throttler-storage-redis/src/throttler-storage-redis.service.ts `increment`).
    # A value beyond an hour can only be milliseconds from a storage that skips that division;
    # reading it as such errs towards calling early, which a 429 then corrects, not towards a long stall.
    if reset > MAX_PLAUSIBLE_RESET_SECONDS:
        reset = reset / 1000.0
    return remaining[limit], now + timedelta(seconds=reset)


def next_allowed(pace: KeyPace, now: datetime) -> datetime | None:
    """When this key may be called next; None means now."""
    if pace.paused_until is not None and pace.paused_until > now:
        return pace.paused_until
    if pace.remaining is not None and pace.remaining <= RESERVE and pace.reset_at is not None and pace.reset_at > now:
        return pace.reset_at
    return None


def pause_after_429(now: datetime, rng: random.Random) -> datetime:
    """Until when to leave a key alone after a 429 (Cal.com blocks it 60 s and sends no Retry-After)."""
    return now + timedelta(seconds=BLOCK_SECONDS + rng.uniform(0.0, BLOCK_JITTER_SECONDS))


def backoff(failures: int, rng: random.Random, base: float = 2.0, cap: float = 300.0) -> float:
    """Seconds to wait after `failures` consecutive failures: exponential, full jitter, capped."""
    exponent = min(max(failures, 1) - 1, 64)  # 2.0 ** 1024 overflows; the cap is reached long before
    ceiling = min(cap, base * 2.0**exponent)
    return min(max(cap, MIN_BACKOFF_SECONDS), max(MIN_BACKOFF_SECONDS, rng.uniform(0.0, ceiling)))


def _number(value: str) -> float | None:
    # httpx joins repeated headers with ", "; the first value is the one the guard set first.
    text = str(value).split(",")[0].strip()
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None
