"""Verdict callbacks: POST outbox events to the platform's callback URL, signed, with retries.

The poller calls `CallbackDeliverer.tick(now)` once per tick. Due outbox rows are claimed with a
lease, so several pollers never POST one row at the same time; each claimed row is POSTed once and
its outcome recorded under a guard on the lease owner. Delivery is at least once: a poller killed
between its POST and the record leaves the lease to expire, and the next one retries with the same
`webhook-id`, which is what Standard Webhooks receivers deduplicate on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx

from service.clients.callbacks import ERROR_CHARS, Attempt, CallbackSender
from service.clock import system_clock
from service.core.ratelimit import backoff
from service.core.times import iso
from service.settings import Settings
from service.store.connector import Database
from service.store.queries import accounts as account_store
from service.store.queries import outbox as outbox_store
from service.store.queries.accounts import Account

log = logging.getLogger("service.workers.callbacks")

FIRST_RETRY_SECONDS = 5.0
MAX_RETRY_SECONDS = 3600.0
CONCURRENCY = 10


def next_attempt(attempts: int, created_at: datetime, now: datetime, rng: random.Random, retry_hours: float) -> datetime | None:
    """When to POST again after `attempts` failed POSTs, or None once `retry_hours` have passed since creation.

    Exponential backoff with full jitter from ~5 s, capped at 1 h. A retry that would land beyond the
    horizon is pulled in to the horizon itself, so the receiver gets a last try at exactly `retry_hours`.
    """
    horizon = created_at + timedelta(hours=retry_hours)
    if now >= horizon:
        return None
    delay = backoff(attempts, rng, base=FIRST_RETRY_SECONDS, cap=MAX_RETRY_SECONDS)
    return min(now + timedelta(seconds=delay), horizon)


class CallbackDeliverer:
    """Delivers due verdict events to their accounts' callback URLs; one `tick(now)` is one round."""

    def __init__(
        self,
        db: Database,
        http: httpx.AsyncClient,
        settings: Settings,
        *,
        owner: str,
        rng: random.Random | None = None,
        batch: int = 50,
        clock: Callable[[], datetime] = system_clock,
    ) -> None:
        self._db = db
        self._clock = clock
        self._sender = CallbackSender(http, timeout=settings.callback_timeout_seconds)
        self._owner = owner
        self._rng = rng or random.Random()
        self._batch = batch
        self._timeout = settings.callback_timeout_seconds
        self._retry_hours = settings.callback_retry_hours
        # The lease must outlast the whole tick: each POST is capped at the timeout, and a batch
        # runs in ceil(batch / CONCURRENCY) rounds. Otherwise a second poller could POST a row
        # that is still in flight here.
        rounds = math.ceil(batch / CONCURRENCY)
        self._lease = timedelta(seconds=max(settings.lease_seconds, 3 * self._timeout, (rounds + 1) * self._timeout))

    def _fresh(self, now: datetime) -> datetime:
        """The time now: the caller's `now` may be the start of a long poller tick."""
        return max(now, self._clock())

    async def tick(self, now: datetime) -> int:
        """Claim due events, POST each once (concurrently, bounded), record the outcomes; answer the POSTs made."""
        async with self._db.transaction() as tx:
            # The lease counts from the claim: born expired, it would let another poller POST the same rows.
            rows = await outbox_store.claim_due(tx, self._owner, now, self._fresh(now) + self._lease, self._batch)
        if not rows:
            return 0
        async with self._db.read() as tx:
            accounts = {name: await account_store.get(tx, name) for name in sorted({r["account"] for r in rows})}
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(row: dict[str, Any]) -> bool:
            async with gate:
                return await self._deliver(row, accounts[row["account"]], now)

        results = await asyncio.gather(*(one(row) for row in rows), return_exceptions=True)
        for result in results:
            # Rows whose outcome could not be recorded keep their lease and are retried after it.
            if isinstance(result, BaseException):
                raise result
        return sum(1 for result in results if result is True)

    async def _deliver(self, row: dict[str, Any], account: Account | None, now: datetime) -> bool:
        """POST one event and record what happened; answer whether a POST was made."""
        ids = {"webhook_id": row["id"], "verification_id": _verification_id(row["payload"]), "account": row["account"]}
        reason = _undeliverable(account)
        if reason is not None:
            async with self._db.transaction() as tx:
                await outbox_store.abandon(tx, row["seq"], self._owner, reason)
            log.warning("verdict callback abandoned: %s", reason, extra={"event": "callback_failed", **ids, "attempts": row["attempts"]})
            return False
        assert account is not None and account.callback_url and account.callback_secret
        signed_at = self._fresh(now)
        # During a callback secret rotation the old secret signs too (both signatures in one header).
        previous = account.callback_secrets(signed_at)[1:]
        attempt = await self._sender.post(
            account.callback_url,
            account.callback_secret,
            row["id"],
            row["payload"].encode("utf-8"),
            signed_at,
            previous=previous[0] if previous else None,
        )
        now = self._fresh(now)  # after the POST: retries and the give-up horizon count from its end
        attempts = row["attempts"] + 1
        retry_at: datetime | None = None
        if attempt.delivered:
            state, error = "delivered", None
        elif attempt.status == 410:
            state, error = "failed", "receiver answered 410 Gone; not retried"
        else:
            retry_at = next_attempt(attempts, row["created_at"], now, self._rng, self._retry_hours)
            state, error = ("pending", attempt.error) if retry_at else ("failed", _gave_up(attempts, row["created_at"], now, attempt))
        async with self._db.transaction() as tx:
            recorded = await outbox_store.record_attempt(
                tx,
                row["seq"],
                self._owner,
                state=state,
                last_status=attempt.status,
                last_error=error,
                next_attempt_at=retry_at,
                delivered_at=now if state == "delivered" else None,
            )
        fields = {**ids, "attempts": attempts, "status": attempt.status, "host": urlsplit(account.callback_url).hostname}
        if not recorded:
            log.warning("verdict callback outcome not recorded: lease lost", extra={"event": "callback_lease_lost", **fields})
        elif state == "delivered":
            log.info("verdict callback delivered", extra={"event": "callback_delivered", **fields})
        elif state == "pending":
            log.warning(
                "verdict callback failed, will retry",
                extra={"event": "callback_retry", **fields, "error": error, "next_attempt_at": iso(retry_at)},
            )
        else:
            log.error("verdict callback failed for good", extra={"event": "callback_failed", **fields, "error": error})
        return True


def _undeliverable(account: Account | None) -> str | None:
    if account is None:
        return "account no longer exists"
    if not account.callback_url:
        return "account has no callback_url any more"
    if not account.callback_secret:
        return "account has no callback_secret"
    return None


def _gave_up(attempts: int, created_at: datetime, now: datetime, attempt: Attempt) -> str:
    hours = (now - created_at).total_seconds() / 3600
    plural = "attempt" if attempts == 1 else "attempts"
    return f"gave up after {attempts} {plural} over {hours:.0f} h; last: {attempt.error}"[:ERROR_CHARS]


def _verification_id(payload: str) -> str | None:
    try:
        return str(json.loads(payload)["verification"]["id"])
    except (ValueError, KeyError, TypeError):
        return None
