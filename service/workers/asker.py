"""Asking Cal.com for an account's bookings, and keeping its API key's pace (rate limit, backoff).

One query (all its pages) per window, never raising for Cal.com's sake: without a complete answer
the key is paused, and what Cal.com said about the key (accepted, refused) is recorded.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from service.clients.calcom import CalcomClient
from service.core import ratelimit, times
from service.core.api_bookings import observations_from_api
from service.core.observations import Observation
from service.errors import CalcomCredentialsBroken, CalcomError, CalcomUnavailable
from service.store.connector import Database
from service.store.queries import accounts as account_store
from service.store.queries.accounts import Account

log = logging.getLogger("service.workers.poller")


@dataclass
class Answer:
    """What one query got: complete or not, the requests it took, and the bookings seen."""

    complete: bool
    calls: int
    error: str | None = None
    observations: list[Observation] = field(default_factory=list)


class Asker:
    def __init__(self, db: Database, calcom: CalcomClient, *, default_base: str, clock: Callable[[], datetime], rng: random.Random) -> None:
        self.db = db
        self.default_base = default_base  # CALCOM_API_BASE, for accounts without their own
        self.calcom = calcom
        self.clock = clock
        self.rng = rng

    async def ask(self, account: Account, lo: datetime, hi: datetime, now: datetime, pace: ratelimit.KeyPace, *, streak: int) -> Answer:
        """One Cal.com query (all its pages); never raises for Cal.com's sake.

        Without a complete answer the API key is paused: 60 s after a 429 (Cal.com's block), else an
        exponential backoff with jitter over the account's failure `streak`. The pause covers every
        verification of the account, so a failing Cal.com sees one query per backoff, not one per
        verification.
        """
        if ratelimit.next_allowed(pace, now) is not None:
            return Answer(False, 0, "rate limited: waiting for Cal.com's window to reset")
        base = account.calcom_api_base or self.default_base
        asked_at = max(now, self.clock())
        try:
            result = await self.calcom.list_bookings(api_base=base, api_key=account.calcom_api_key, after_start=lo, before_end=hi)
        except CalcomError as exc:
            calls = getattr(exc, "calls", 1)
            pace.remaining = getattr(exc, "remaining", pace.remaining)
            pace.reset_at = getattr(exc, "reset_at", pace.reset_at)
            answered_at = max(now, self.clock())  # a pause counts from Cal.com's answer, not from the tick's start
            if isinstance(exc, CalcomUnavailable) and exc.rate_limited:
                pace.paused_until = ratelimit.pause_after_429(answered_at, self.rng)
                event, message = "calcom_rate_limited", "Cal.com rate limit hit; pausing this API key"
            else:
                backoff_until = answered_at + timedelta(seconds=ratelimit.backoff(streak, self.rng))
                pace.paused_until = max(pace.paused_until or backoff_until, backoff_until)
                event, message = "calcom_backoff", "no complete answer from Cal.com; backing off this account"
            log.warning(
                message,
                extra={
                    "event": event,
                    "account": account.id,
                    "error": type(exc).__name__,
                    "streak": streak,
                    "paused_until": times.iso_ms(pace.paused_until),
                },
            )
            if isinstance(exc, CalcomCredentialsBroken):
                await self._credentials(account, "broken", str(exc), now)
            return Answer(False, calls, f"{type(exc).__name__}: {exc}"[:300])
        pace.remaining, pace.reset_at = result.remaining, result.reset_at
        if account.credentials != "ok":
            await self._credentials(account, "ok", None, now)
        observations = [o for item in result.items for o in observations_from_api(item, asked_at)]
        return Answer(True, result.calls, None, observations)

    async def _credentials(self, account: Account, state: str, error: str | None, now: datetime) -> None:
        async with self.db.transaction() as tx:
            changed = await account_store.set_credentials(tx, account.id, state, error, now)
        if changed:
            level = logging.ERROR if state == "broken" else logging.INFO
            log.log(level, "Cal.com credentials %s", state, extra={"event": f"credentials_{state}", "account": account.id})

    async def save_pace(
        self, account: Account, pace: ratelimit.KeyPace, now: datetime, *, asked: bool = False, failure: str | None = None
    ) -> None:
        """Store the key's pace and, when Cal.com was `asked`, whether the account's check failed (`failure`)."""
        async with self.db.transaction() as tx:
            if asked:
                await account_store.calcom_health(tx, account.id, failure, now)
            await account_store.set_pace(
                tx,
                ratelimit.key_name(account.calcom_api_key),
                paused_until=pace.paused_until,
                remaining=pace.remaining,
                reset_at=pace.reset_at,
                now=max(now, self.clock()),  # when this reading was taken: a newer one is never overwritten by it
            )
