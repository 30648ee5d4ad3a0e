"""Accounts (one per Cal.com account) and the shared rate-limit state of their API keys."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.logs import secret_registry
from service.store.connector import Tx, sql


@dataclass(frozen=True)
class Account:
    id: str
    calcom_api_key: str
    webhook_secret: str
    calcom_api_base: str | None
    callback_url: str | None
    callback_secret: str | None
    match_tolerance_seconds: int
    enabled: bool
    credentials: str
    credentials_error: str | None
    created_at: datetime
    updated_at: datetime
    time_only_matching: bool = False
    guard: bool = True

    def __post_init__(self) -> None:
        secret_registry.add(self.calcom_api_key, self.webhook_secret, self.callback_secret)

    def __repr__(self) -> str:  # never let a secret reach a log line through repr()
        return f"Account(id={self.id!r}, enabled={self.enabled}, credentials={self.credentials!r})"


_COLUMNS = """id, calcom_api_key, webhook_secret, calcom_api_base, callback_url, callback_secret,
    match_tolerance_seconds, enabled, credentials, credentials_error, created_at, updated_at, time_only_matching, guard"""

GET = sql(f"SELECT {_COLUMNS} FROM accounts WHERE id = :id")
LIST = sql(f"SELECT {_COLUMNS} FROM accounts ORDER BY id")
GET_MANY = sql(
    f"SELECT {_COLUMNS} FROM accounts WHERE id IN (SELECT value FROM json_each(:ids))",
    postgresql=f"SELECT {_COLUMNS} FROM accounts WHERE id = ANY(:ids)",
)
WEBHOOK_SECRET = sql("SELECT webhook_secret FROM accounts WHERE id = :id")

# Create or replace; a replaced account keeps its creation time and its credential state
# unless the API key changed (a new key deserves a fresh chance).
UPSERT = sql(
    """
    INSERT INTO accounts (id, calcom_api_key, webhook_secret, calcom_api_base, callback_url,
        callback_secret, match_tolerance_seconds, enabled, credentials, created_at, updated_at, time_only_matching, guard)
    VALUES (:id, :calcom_api_key, :webhook_secret, :calcom_api_base, :callback_url,
        :callback_secret, :match_tolerance_seconds, :enabled, 'ok', :now, :now, :time_only_matching, :guard)
    ON CONFLICT (id) DO UPDATE SET
        credentials = CASE WHEN accounts.calcom_api_key = excluded.calcom_api_key
                           THEN accounts.credentials ELSE 'ok' END,
        credentials_error = CASE WHEN accounts.calcom_api_key = excluded.calcom_api_key
                                 THEN accounts.credentials_error ELSE NULL END,
        calcom_api_key = excluded.calcom_api_key,
        webhook_secret = excluded.webhook_secret,
        calcom_api_base = excluded.calcom_api_base,
        callback_url = excluded.callback_url,
        callback_secret = excluded.callback_secret,
        match_tolerance_seconds = excluded.match_tolerance_seconds,
        enabled = excluded.enabled,
        time_only_matching = excluded.time_only_matching,
        guard = excluded.guard,
        updated_at = excluded.updated_at
    """
)

SET_CREDENTIALS = sql(
    """
    UPDATE accounts SET credentials = :credentials, credentials_error = :error,
        credentials_changed_at = :now
    WHERE id = :id AND credentials <> :credentials
    """
)

BROKEN = sql("SELECT id, credentials_error, credentials_changed_at FROM accounts WHERE credentials = 'broken' ORDER BY id")

# Poll leases: one poller at a time queries Cal.com for an account, so one tick makes one query
# per account however many pollers run. One probe of the account's due work per account (not a
# pass over every pending verification).
_DUE_ACCOUNTS = """
    SELECT a.id FROM accounts a
    WHERE EXISTS (SELECT 1 FROM verifications v WHERE v.account = a.id AND v.status = 'pending' AND v.next_check_at <= :now)
    AND (a.poll_lease_expires_at IS NULL OR a.poll_lease_expires_at < :now OR a.poll_lease_owner = :owner)
"""
CLAIM_FOR_POLL = sql(
    f"UPDATE accounts SET poll_lease_owner = :owner, poll_lease_expires_at = :expires WHERE id IN ({_DUE_ACCOUNTS}) RETURNING id",
    postgresql=f"UPDATE accounts SET poll_lease_owner = :owner, poll_lease_expires_at = :expires "
    f"WHERE id IN ({_DUE_ACCOUNTS} FOR UPDATE SKIP LOCKED) RETURNING id",
)
RENEW_POLL = sql("UPDATE accounts SET poll_lease_expires_at = :expires WHERE id = :id AND poll_lease_owner = :owner")
RELEASE_POLL = sql("UPDATE accounts SET poll_lease_owner = NULL, poll_lease_expires_at = NULL WHERE id = :id AND poll_lease_owner = :owner")

# Several pollers share a key's pace: the later pause stands (a 429 block must not be erased by
# another poller's older reading), and only a reading at least as new replaces remaining/reset.
GET_PACE = sql("SELECT paused_until_at, remaining, reset_at FROM calcom_keys WHERE key_hash = :key_hash")
SET_PACE = sql(
    """
    INSERT INTO calcom_keys (key_hash, paused_until_at, remaining, reset_at, updated_at)
    VALUES (:key_hash, :paused_until, :remaining, :reset_at, :now)
    ON CONFLICT (key_hash) DO UPDATE SET
        paused_until_at = CASE WHEN calcom_keys.paused_until_at IS NULL OR excluded.paused_until_at > calcom_keys.paused_until_at
                               THEN excluded.paused_until_at ELSE calcom_keys.paused_until_at END,
        remaining = CASE WHEN excluded.updated_at >= calcom_keys.updated_at THEN excluded.remaining ELSE calcom_keys.remaining END,
        reset_at = CASE WHEN excluded.updated_at >= calcom_keys.updated_at THEN excluded.reset_at ELSE calcom_keys.reset_at END,
        updated_at = CASE WHEN excluded.updated_at > calcom_keys.updated_at THEN excluded.updated_at ELSE calcom_keys.updated_at END
    """
)


def _account(row: dict[str, Any] | None) -> Account | None:
    return Account(**row) if row else None


async def get(tx: Tx, account_id: str) -> Account | None:
    return _account(await tx.fetch_one(GET, id=account_id))


async def get_many(tx: Tx, account_ids: list[str]) -> dict[str, Account]:
    if not account_ids:
        return {}
    return {row["id"]: Account(**row) for row in await tx.fetch_all(GET_MANY, ids=sorted(set(account_ids)))}


async def webhook_secret(tx: Tx, account_id: str) -> str | None:
    """Only the webhook secret: the hot path of every webhook needs nothing else."""
    secret = await tx.fetch_val(WEBHOOK_SECRET, id=account_id)
    return str(secret) if secret is not None else None


async def list_all(tx: Tx) -> list[Account]:
    return [Account(**row) for row in await tx.fetch_all(LIST)]


async def upsert(tx: Tx, account_id: str, values: dict[str, Any], now: datetime) -> bool:
    """Create or replace; answer True when it was created."""
    # Two requests creating one new id must not both see "absent": take turns (PostgreSQL; a
    # SQLite write transaction already excludes every other writer).
    await tx.lock_account(account_id)
    existed = await tx.fetch_one(GET, id=account_id) is not None
    await tx.execute(UPSERT, id=account_id, now=now, **{"time_only_matching": False, "guard": True, **values})
    return not existed


async def set_credentials(tx: Tx, account_id: str, credentials: str, error: str | None, now: datetime) -> bool:
    """Record 'ok' or 'broken'; answer True when that changed something."""
    return await tx.execute(SET_CREDENTIALS, id=account_id, credentials=credentials, error=error, now=now) > 0


async def broken(tx: Tx) -> list[dict[str, Any]]:
    return await tx.fetch_all(BROKEN)


async def claim_for_poll(tx: Tx, owner: str, now: datetime, expires: datetime) -> list[str]:
    return sorted(row["id"] for row in await tx.fetch_all(CLAIM_FOR_POLL, owner=owner, now=now, expires=expires))


async def renew_poll(tx: Tx, account_id: str, owner: str, expires: datetime) -> bool:
    """Extend our poll lease of an account; False when it is not ours any more."""
    return await tx.execute(RENEW_POLL, id=account_id, owner=owner, expires=expires) == 1


async def release_poll(tx: Tx, account_id: str, owner: str) -> None:
    await tx.execute(RELEASE_POLL, id=account_id, owner=owner)


async def get_pace(tx: Tx, key_hash: str) -> dict[str, Any] | None:
    return await tx.fetch_one(GET_PACE, key_hash=key_hash)


async def set_pace(
    tx: Tx, key_hash: str, *, paused_until: datetime | None, remaining: int | None, reset_at: datetime | None, now: datetime
) -> None:
    await tx.execute(SET_PACE, key_hash=key_hash, paused_until=paused_until, remaining=remaining, reset_at=reset_at, now=now)


# Cal.com's health as the account's checks see it: a failure starts (or continues) a failing spell,
# a complete answer ends it (written only when there is a spell to end).
CALCOM_FAILED = sql(
    """
    UPDATE accounts SET calcom_failing_since_at = COALESCE(calcom_failing_since_at, :now),
        calcom_failed_at = :now, calcom_failure = :failure
    WHERE id = :id
    """
)
CALCOM_ANSWERED = sql(
    "UPDATE accounts SET calcom_failing_since_at = NULL, calcom_failure = NULL WHERE id = :id AND calcom_failing_since_at IS NOT NULL"
)

# Deleting an account that never recorded a verification (e.g. registered under a mistyped id):
# its webhook bodies and booking observations go with it.
HAS_VERIFICATIONS = sql("SELECT 1 AS found FROM verifications WHERE account = :id LIMIT 1")
DELETE_EVENTS = sql("DELETE FROM webhook_events WHERE account = :id")
DELETE_OBSERVATIONS = sql("DELETE FROM booking_observations WHERE account = :id")
DELETE = sql("DELETE FROM accounts WHERE id = :id")


async def calcom_health(tx: Tx, account_id: str, failure: str | None, now: datetime) -> None:
    """Record the outcome of an account's Cal.com check: `failure` (a short reason) or None for a complete answer."""
    if failure is None:
        await tx.execute(CALCOM_ANSWERED, id=account_id)
    else:
        await tx.execute(CALCOM_FAILED, id=account_id, failure=failure[:200], now=now)


async def has_verifications(tx: Tx, account_id: str) -> bool:
    return await tx.fetch_one(HAS_VERIFICATIONS, id=account_id) is not None


async def delete(tx: Tx, account_id: str) -> bool:
    """Remove an account without verifications, with its stored webhooks and observations."""
    await tx.execute(DELETE_EVENTS, id=account_id)
    await tx.execute(DELETE_OBSERVATIONS, id=account_id)
    return await tx.execute(DELETE, id=account_id) == 1


# An operator's recheck lifts our own backoff of a key, never Cal.com's block: a pause reaching past
# `beyond` (now + the longest block a 429 causes) can only be a backoff.
LIFT_BACKOFF = sql("UPDATE calcom_keys SET paused_until_at = :now WHERE key_hash = :key_hash AND paused_until_at > :beyond")


async def lift_backoff(tx: Tx, key_hash: str, now: datetime, beyond: datetime) -> bool:
    return await tx.execute(LIFT_BACKOFF, key_hash=key_hash, now=now, beyond=beyond) == 1
