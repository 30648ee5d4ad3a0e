"""Verdict callbacks: POST outbox events to the platform's callback URL, signed, with retries (SPEC §7).

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
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx

from service.clock import system_clock
from service.core.ratelimit import backoff
from service.core.signatures import standard_webhooks_signature
from service.core.times import iso
from service.logs import REDACTED, secret_registry
from service.settings import Settings
from service.store.connector import Database
from service.store.queries import accounts as account_store
from service.store.queries import outbox as outbox_store
from service.store.queries.accounts import Account

log = logging.getLogger("service.workers.callbacks")

USER_AGENT = "calcom-post-sync-verifier/0.1 (verdict callback)"
FIRST_RETRY_SECONDS = 5.0
MAX_RETRY_SECONDS = 3600.0
CONCURRENCY = 10
BODY_SNIPPET_CHARS = 120
HEAD_BYTES = 2048  # far past the snippet, so a secret cut at this edge lies beyond the snippet too
ERROR_CHARS = 200


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


@dataclass(frozen=True)
class Attempt:
    """What one POST got: the HTTP status (None when no answer came) and a short, safe error."""

    status: int | None
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


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
        self._http = http
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
            log.warning(
                "verdict callback abandoned: %s", reason, extra={"event": "callback_failed", **ids, "attempts": row["attempts"]}
            )
            return False
        assert account is not None and account.callback_url and account.callback_secret
        attempt = await self._post(account, row, self._fresh(now))
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

    async def _post(self, account: Account, row: dict[str, Any], signed_at: datetime) -> Attempt:
        assert account.callback_url and account.callback_secret
        url, body = account.callback_url, row["payload"].encode("utf-8")
        # Receivers refuse timestamps more than 5 minutes off: sign with the time of sending.
        timestamp = int(signed_at.timestamp())
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": row["id"],
            "webhook-timestamp": str(timestamp),
            "webhook-signature": standard_webhooks_signature(account.callback_secret, row["id"], timestamp, body),
        }
        try:
            # httpx's timeout is per operation (connect, write, read); this caps the whole attempt.
            async with asyncio.timeout(self._timeout):
                async with self._http.stream(
                    "POST", url, content=body, headers=headers, timeout=self._timeout, follow_redirects=False
                ) as response:
                    if response.is_success:
                        return Attempt(response.status_code, None)
                    snippet = await _head(response)
        except (httpx.TimeoutException, TimeoutError):
            return Attempt(None, f"timed out after {self._timeout:g} s")
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return Attempt(None, _clean(_describe(exc, url), account))
        text = f"HTTP {response.status_code}"
        if 300 <= response.status_code < 400:
            text += " (redirects are not followed)"
        # Cleaned before it is cut, so a secret at the cut cannot survive as a fragment.
        snippet = _clean(snippet, account)
        if snippet:
            text += ": " + snippet[:BODY_SNIPPET_CHARS] + ("…" if len(snippet) > BODY_SNIPPET_CHARS else "")
        return Attempt(response.status_code, text)


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


async def _head(response: httpx.Response) -> str:
    """The start of an error answer's body (a few KiB at most), whitespace collapsed."""
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in response.aiter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size >= HEAD_BYTES:
                break
    except httpx.HTTPError:
        pass
    return " ".join(b"".join(chunks)[:HEAD_BYTES].decode("utf-8", "replace").split())


def _describe(exc: BaseException, url: str) -> str:
    """The exception's class and message, unless the message repeats the URL's path, query or credentials."""
    name = type(exc).__name__
    detail = " ".join(str(exc).split())
    parts = urlsplit(url)
    private = [p for p in (parts.path, parts.query, parts.username, parts.password) if p and p != "/"]
    if not detail or any(p in detail for p in private):
        return name
    return f"{name}: {detail}"


def _clean(text: str, account: Account) -> str:
    """Short, without the callback URL's path, query or credentials, the callback secret or any other known secret."""
    secret = account.callback_secret or ""
    parts = urlsplit(account.callback_url or "")
    if account.callback_url:
        text = text.replace(account.callback_url, f"{parts.scheme}://{parts.hostname}/…")
    for value in (secret, secret.removeprefix("whsec_"), parts.query, parts.path, parts.username, parts.password):
        if value and len(value) >= 2:
            text = text.replace(value, REDACTED)
    return secret_registry.scrub(text)[:ERROR_CHARS]


def _verification_id(payload: str) -> str | None:
    try:
        return str(json.loads(payload)["verification"]["id"])
    except (ValueError, KeyError, TypeError):
        return None
