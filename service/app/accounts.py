"""Accounts: create or replace, change some fields, read, list, delete — shared by the HTTP API and the command line.

A new Cal.com API key is tried at once (one small bookings query), so the account's `credentials`
tell the truth about the key just given rather than about the one it replaced.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from service.app.operators import record
from service.clients.calcom import CalcomClient
from service.clients.targets import check_target
from service.clock import Clock, system_clock
from service.core.models import AccountIn, validate
from service.errors import CalcomCredentialsBroken, CalcomError, Conflict, NotFound, ValidationFailed
from service.logs import secret_registry
from service.settings import Settings
from service.store.connector import Database
from service.store.queries import accounts as account_store
from service.store.queries.accounts import Account

log = logging.getLogger("service.app.accounts")


@dataclass(frozen=True)
class Saved:
    account: Account
    created: bool


SECRETS = ("calcom_api_key", "webhook_secret", "callback_secret", "webhook_secret_previous", "callback_secret_previous")


def audited(fields: dict[str, Any]) -> dict[str, Any]:
    """What the audit log keeps of a change: each field's new value, a secret only as "(replaced)"."""
    return {name: "(replaced)" if name in SECRETS and value else value for name, value in sorted(fields.items())}


CHECK_SECONDS = 5.0  # a credentials check answers within this, or tells nothing


CALLBACK_ROTATION = timedelta(hours=24)  # callbacks carry the old secret's signature too, this long after a change


def rotation(before: Account | None, values: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The previous secrets an account keeps after a save.

    A new webhook secret sent with `webhook_secret_previous_until` keeps the old one accepted until
    then; sent without it, the old one is dropped at once. A new callback secret keeps the old one
    signing beside it for 24 h. An unchanged secret keeps its rotation as it is (a later
    `webhook_secret_previous_until` moves the end of a running one).
    """
    until = values.pop("webhook_secret_previous_until", None)
    out: dict[str, Any] = {
        "webhook_secret_previous": None,
        "webhook_secret_previous_until_at": None,
        "callback_secret_previous": None,
        "callback_secret_previous_until_at": None,
    }
    if before is None:
        return out
    if before.webhook_secret != values["webhook_secret"]:
        if until is not None and until > now:
            out.update(webhook_secret_previous=before.webhook_secret, webhook_secret_previous_until_at=until)
    elif before.webhook_secret_previous and before.webhook_secret_previous != values["webhook_secret"]:
        out.update(
            webhook_secret_previous=before.webhook_secret_previous,
            webhook_secret_previous_until_at=until if until is not None else before.webhook_secret_previous_until_at,
        )
    if before.callback_secret and values.get("callback_secret") and before.callback_secret != values["callback_secret"]:
        out.update(callback_secret_previous=before.callback_secret, callback_secret_previous_until_at=now + CALLBACK_ROTATION)
    elif before.callback_secret_previous and values.get("callback_secret") == before.callback_secret:
        out.update(
            callback_secret_previous=before.callback_secret_previous,
            callback_secret_previous_until_at=before.callback_secret_previous_until_at,
        )
    return out


class Accounts:
    def __init__(self, db: Database, settings: Settings, *, calcom: CalcomClient | None = None, clock: Clock = system_clock) -> None:
        self.db = db
        self.settings = settings
        self.calcom = calcom
        self.clock = clock

    async def check_targets(self, fields: dict[str, Any]) -> None:
        """A 422 naming the field when callback_url or calcom_api_base is not a public https host (no SSRF).

        Checked before any transaction: a DNS lookup must not hold the database's writer."""
        details = []
        for name in ("callback_url", "calcom_api_base"):
            value = fields.get(name)
            problem = await check_target(value if isinstance(value, str) else None, allow_private=self.settings.allow_private_targets)
            if problem:
                details.append({"field": name, "message": problem + " (ALLOW_PRIVATE_TARGETS=true allows it in development)"})
        if details:
            raise ValidationFailed("invalid request: " + "; ".join(f"{d['field']}: {d['message']}" for d in details), details=details)

    async def put(self, account_id: str, request: AccountIn, now: datetime, *, actor: str = "api") -> Saved:
        """Create or replace an account (every field, like PUT); a new account gets the default tolerance."""
        values: dict[str, Any] = request.model_dump()
        await self.check_targets(values)
        if values["match_tolerance_seconds"] is None:
            values["match_tolerance_seconds"] = self.settings.match_tolerance_seconds
        async with self.db.transaction() as tx:
            before = await account_store.get(tx, account_id)
            values.update(rotation(before, values, now))
            created = await account_store.upsert(tx, account_id, values, now)
            account = await account_store.get(tx, account_id)
            await record(tx, now, actor, "account_created" if created else "account_replaced", account_id, audited(values))
        assert account is not None
        log.info("account saved", extra={"event": "account_created" if created else "account_replaced", "account": account_id})
        if before is not None and before.calcom_api_key != account.calcom_api_key:
            account = await self.check_credentials(account)
        return Saved(account, created)

    async def patch(self, account_id: str, request: Any, now: datetime, *, actor: str = "api") -> Saved:
        """Change only the fields sent (an AccountPatch); the result is validated as a whole account."""
        changes: dict[str, Any] = request.model_dump(include=request.model_fields_set)
        await self.check_targets(changes)
        async with self.db.transaction() as tx:
            await tx.lock_account(account_id)
            before = await account_store.get(tx, account_id)
            if before is None:
                raise NotFound(f"unknown account {account_id!r}: create it first with PUT /api/accounts/{account_id}")
            values = {name: getattr(before, name) for name in AccountIn.model_fields if hasattr(before, name)}
            merged: AccountIn = validate(AccountIn, {**values, **changes})
            values = merged.model_dump()
            if values["match_tolerance_seconds"] is None:
                values["match_tolerance_seconds"] = self.settings.match_tolerance_seconds
            values.update(rotation(before, values, now))
            await account_store.upsert(tx, account_id, values, now)
            account = await account_store.get(tx, account_id)
            await record(tx, now, actor, "account_changed", account_id, audited(changes))
        assert account is not None
        log.info("account changed", extra={"event": "account_changed", "account": account_id, "fields": sorted(changes)})
        if before.calcom_api_key != account.calcom_api_key:
            account = await self.check_credentials(account)
        return Saved(account, False)

    async def check_credentials(self, account: Account) -> Account:
        """Ask Cal.com once whether it accepts the account's API key; record `ok` or `broken` at once.

        Any other answer (timeout, 5xx, 429) tells nothing about the key: the state stays as it is
        and the next poll decides.
        """
        if self.calcom is None:
            return account
        base = account.calcom_api_base or self.settings.calcom_api_base
        state, error = None, None
        try:
            async with asyncio.timeout(CHECK_SECONDS):
                await self.calcom.check_key(api_base=base, api_key=account.calcom_api_key)
            state = "ok"
        except CalcomCredentialsBroken as exc:
            state, error = "broken", str(exc)[:300]
        except (CalcomError, TimeoutError) as exc:
            log.warning(
                "new API key not checked: no usable answer from Cal.com; the next poll will tell",
                extra={"event": "credentials_unchecked", "account": account.id, "error": type(exc).__name__},
            )
            return account
        async with self.db.transaction() as tx:
            changed = await account_store.set_credentials(tx, account.id, state, error, self.clock())
            fresh = await account_store.get(tx, account.id)
        if changed:
            level = logging.ERROR if state == "broken" else logging.INFO
            log.log(
                level, "Cal.com credentials %s", state, extra={"event": f"credentials_{state}", "account": account.id, "trigger": "new_key"}
            )
        return fresh or account

    async def delete(self, account_id: str, *, actor: str = "api") -> None:
        """Remove an account that never recorded a verification (others are disabled instead)."""
        async with self.db.transaction() as tx:
            await tx.lock_account(account_id)
            if await account_store.get(tx, account_id) is None:
                raise NotFound(f"unknown account {account_id!r}")
            if await account_store.has_verifications(tx, account_id):
                raise Conflict(
                    f"account {account_id} has verifications, which keep their history: disable it instead "
                    "(new failures then go straight to review; webhooks are still stored)"
                )
            await account_store.delete(tx, account_id)
            await record(tx, self.clock(), actor, "account_deleted", account_id, {})
        log.info("account deleted", extra={"event": "account_deleted", "account": account_id})

    async def get(self, account_id: str) -> Account:
        async with self.db.read() as tx:
            account = await account_store.get(tx, account_id)
        if account is None:
            raise NotFound(f"unknown account {account_id!r}")
        return account

    async def list(self) -> list[Account]:
        async with self.db.read() as tx:
            return await account_store.list_all(tx)


class SecretCache:
    """Webhook secrets by account, kept for a second so the hot path rarely reads the database.

    A signature that fails against a cached secret is checked once more against a fresh read, so
    a rotated secret works at once; a removed account disappears within `ttl`. While a rotation
    runs, `get` answers the previous secret too, until its time (`clock`).
    """

    def __init__(
        self, db: Database, *, ttl: float = 1.0, monotonic: Callable[[], float] = time.monotonic, clock: Clock = system_clock
    ) -> None:
        self.db = db
        self.ttl = ttl
        self.monotonic = monotonic
        self.clock = clock
        self._cache: dict[str, tuple[float, tuple[str, str | None, datetime | None] | None]] = {}

    async def get(self, account: str, *, fresh: bool = False) -> list[str] | None:
        """The secrets a webhook of `account` may be signed with now (current first), or None for an unknown account."""
        now = self.monotonic()
        hit = self._cache.get(account)
        if hit is not None and not fresh and now - hit[0] < self.ttl:
            found = hit[1]
        else:
            async with self.db.read() as tx:
                found = await account_store.webhook_secrets(tx, account)
            if found is not None:
                secret_registry.add(found[0], found[1])
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[account] = (now, found)
        if found is None:
            return None
        current, previous, until = found
        if previous and until is not None and self.clock() < until:
            return [current, previous]
        return [current]

    def age(self, account: str) -> float:
        hit = self._cache.get(account)
        return self.monotonic() - hit[0] if hit else float("inf")

    def forget(self, account: str) -> None:
        self._cache.pop(account, None)
