"""Platform tokens: each lets one account's platform use that account's verifications. Only a hash is kept."""

from __future__ import annotations

from datetime import datetime

from service.store.connector import Tx, sql

INSERT = sql("INSERT INTO api_tokens (id, account, token_hash, created_at) VALUES (:id, :account, :token_hash, :now)")
ACCOUNT_OF = sql("SELECT account FROM api_tokens WHERE token_hash = :token_hash")
DELETE = sql("DELETE FROM api_tokens WHERE id = :id AND account = :account")


async def insert(tx: Tx, token_id: str, account: str, token_hash: str, now: datetime) -> None:
    await tx.execute(INSERT, id=token_id, account=account, token_hash=token_hash, now=now)


async def account_of(tx: Tx, token_hash: str) -> str | None:
    found = await tx.fetch_val(ACCOUNT_OF, token_hash=token_hash)
    return str(found) if found is not None else None


async def delete(tx: Tx, account: str, token_id: str) -> bool:
    return await tx.execute(DELETE, id=token_id, account=account) == 1
