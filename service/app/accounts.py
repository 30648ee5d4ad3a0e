"""Accounts: create or replace, read, list — shared by the HTTP API and the command line."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.core.models import AccountIn
from service.errors import NotFound
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


class Accounts:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    async def put(self, account_id: str, request: AccountIn, now: datetime) -> Saved:
        """Create or replace an account (every field, like PUT); a new account gets the default tolerance."""
        values: dict[str, Any] = request.model_dump()
        if values["match_tolerance_seconds"] is None:
            values["match_tolerance_seconds"] = self.settings.match_tolerance_seconds
        async with self.db.transaction() as tx:
            created = await account_store.upsert(tx, account_id, values, now)
            account = await account_store.get(tx, account_id)
        assert account is not None
        log.info("account saved", extra={"event": "account_created" if created else "account_replaced", "account": account_id})
        return Saved(account, created)

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
