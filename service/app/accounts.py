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
from datetime import datetime
from typing import Any

from service.clients.calcom import CalcomClient
from service.clock import Clock, system_clock
from service.core.models import AccountIn, validate
from service.errors import CalcomCredentialsBroken, CalcomError, Conflict, NotFound
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


CHECK_SECONDS = 5.0  # a credentials check answers within this, or tells nothing


class Accounts:
    def __init__(self, db: Database, settings: Settings, *, calcom: CalcomClient | None = None, clock: Clock = system_clock) -> None:
        self.db = db
        self.settings = settings
        self.calcom = calcom
        self.clock = clock

    async def put(self, account_id: str, request: AccountIn, now: datetime) -> Saved:
        """Create or replace an account (every field, like PUT); a new account gets the default tolerance."""
        values: dict[str, Any] = request.model_dump()
        if values["match_tolerance_seconds"] is None:
            values["match_tolerance_seconds"] = self.settings.match_tolerance_seconds
        async with self.db.transaction() as tx:
            before = await account_store.get(tx, account_id)
            created = await account_store.upsert(tx, account_id, values, now)
            account = await account_store.get(tx, account_id)
        assert account is not None
        log.info("account saved", extra={"event": "account_created" if created else "account_replaced", "account": account_id})
        if before is not None and before.calcom_api_key != account.calcom_api_key:
            account = await self.check_credentials(account)
        return Saved(account, created)

    async def patch(self, account_id: str, request: Any, now: datetime) -> Saved:
        """Change only the fields sent (an AccountPatch); the result is validated as a whole account."""
        changes: dict[str, Any] = request.model_dump(include=request.model_fields_set)
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
            await account_store.upsert(tx, account_id, values, now)
            account = await account_store.get(tx, account_id)
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

    async def delete(self, account_id: str) -> None:
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
    a rotated secret works at once; a removed account disappears within `ttl`.
    """

    def __init__(self, db: Database, *, ttl: float = 1.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self.ttl = ttl
        self.monotonic = monotonic
        self._cache: dict[str, tuple[float, str | None]] = {}

    async def get(self, account: str, *, fresh: bool = False) -> str | None:
        now = self.monotonic()
        hit = self._cache.get(account)
        if hit is not None and not fresh and now - hit[0] < self.ttl:
            return hit[1]
        async with self.db.read() as tx:
            secret = await account_store.webhook_secret(tx, account)
        secret_registry.add(secret)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[account] = (now, secret)
        return secret

    def age(self, account: str) -> float:
        hit = self._cache.get(account)
        return self.monotonic() - hit[0] if hit else float("inf")

    def forget(self, account: str) -> None:
        self._cache.pop(account, None)
