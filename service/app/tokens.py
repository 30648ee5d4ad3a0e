"""Platform tokens: issued by the administrator for one account, shown once, stored as a SHA-256 hash.

A token is 32 random bytes (url-safe base64 behind a `vpt_` prefix), so a plain SHA-256 of it is
enough: there is nothing to guess that a slower hash would protect.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import datetime

from service.errors import NotFound
from service.logs import secret_registry
from service.store.connector import Database
from service.store.queries import accounts as account_store
from service.store.queries import tokens as token_store

log = logging.getLogger("service.app.tokens")
PREFIX = "vpt_"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Tokens:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def issue(self, account: str, now: datetime) -> tuple[str, str]:
        """A new token for `account`: (id, token); the token is not stored and cannot be shown again."""
        token = PREFIX + secrets.token_urlsafe(32)
        token_id = "tok_" + secrets.token_hex(8)
        secret_registry.add(token)
        async with self.db.transaction() as tx:
            await tx.lock_account(account)
            if await account_store.get(tx, account) is None:
                raise NotFound(f"unknown account {account!r}")
            await token_store.insert(tx, token_id, account, token_hash(token), now)
        log.info("platform token issued", extra={"event": "token_issued", "account": account, "token_id": token_id})
        return token_id, token

    async def account_of(self, token: str) -> str | None:
        """The account a platform token belongs to, or None (unknown or revoked)."""
        if not token.startswith(PREFIX):
            return None
        async with self.db.read() as tx:
            return await token_store.account_of(tx, token_hash(token))

    async def revoke(self, account: str, token_id: str) -> None:
        async with self.db.transaction() as tx:
            if not await token_store.delete(tx, account, token_id):
                raise NotFound(f"account {account!r} has no token {token_id[:40]!r}")
        log.info("platform token revoked", extra={"event": "token_revoked", "account": account, "token_id": token_id})
