"""Accounts (one per Cal.com account) and the shared rate-limit state of their API keys."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.logs import secret_registry
from service.store import secretbox
from service.store.connector import Database, Tx, sql


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
    time_zone: str = "UTC"
    # A replaced secret still valid until a set time (rotation without a window of refusals).
    webhook_secret_previous: str | None = None
    webhook_secret_previous_until_at: datetime | None = None
    callback_secret_previous: str | None = None
    callback_secret_previous_until_at: datetime | None = None

    def __post_init__(self) -> None:
        secret_registry.add(
            self.calcom_api_key, self.webhook_secret, self.callback_secret, self.webhook_secret_previous, self.callback_secret_previous
        )

    def webhook_secrets(self, now: datetime) -> list[str]:
        """The webhook secrets a signature may be made with at `now`: the current one, and the previous until its time."""
        return [self.webhook_secret, *_previous(self.webhook_secret_previous, self.webhook_secret_previous_until_at, now)]

    def callback_secrets(self, now: datetime) -> list[str]:
        """The callback secrets to sign with at `now`: the current one, and the previous until its time."""
        if not self.callback_secret:
            return []
        return [self.callback_secret, *_previous(self.callback_secret_previous, self.callback_secret_previous_until_at, now)]

    def __repr__(self) -> str:  # never let a secret reach a log line through repr()
        return f"Account(id={self.id!r}, enabled={self.enabled}, credentials={self.credentials!r})"


def _previous(secret: str | None, until: datetime | None, now: datetime) -> list[str]:
    return [secret] if secret and until is not None and now < until else []


# The columns holding secrets: sealed on the way in, opened on the way out (service/store/secretbox.py).
SECRET_COLUMNS = ("calcom_api_key", "webhook_secret", "callback_secret", "webhook_secret_previous", "callback_secret_previous")

_COLUMNS = """id, calcom_api_key, webhook_secret, calcom_api_base, callback_url, callback_secret,
    match_tolerance_seconds, enabled, credentials, credentials_error, created_at, updated_at, time_only_matching, guard, time_zone,
    webhook_secret_previous, webhook_secret_previous_until_at, callback_secret_previous, callback_secret_previous_until_at"""

GET = sql(f"SELECT {_COLUMNS} FROM accounts WHERE id = :id")
LIST = sql(f"SELECT {_COLUMNS} FROM accounts ORDER BY id")
GET_MANY = sql(
    f"SELECT {_COLUMNS} FROM accounts WHERE id IN (SELECT value FROM json_each(:ids))",
    postgresql=f"SELECT {_COLUMNS} FROM accounts WHERE id = ANY(:ids)",
)
WEBHOOK_SECRETS = sql("SELECT webhook_secret, webhook_secret_previous, webhook_secret_previous_until_at FROM accounts WHERE id = :id")

# Create or replace; a replaced account keeps its creation time and its credential state
# unless the API key changed (a new key deserves a fresh chance; ciphertexts differ every time, so
# the caller compares the plaintexts and says so in :key_changed).
UPSERT = sql(
    """
    INSERT INTO accounts (id, calcom_api_key, webhook_secret, calcom_api_base, callback_url,
        callback_secret, match_tolerance_seconds, enabled, credentials, created_at, updated_at, time_only_matching, guard, time_zone,
        webhook_secret_previous, webhook_secret_previous_until_at, callback_secret_previous, callback_secret_previous_until_at)
    VALUES (:id, :calcom_api_key, :webhook_secret, :calcom_api_base, :callback_url,
        :callback_secret, :match_tolerance_seconds, :enabled, 'ok', :now, :now, :time_only_matching, :guard, :time_zone,
        :webhook_secret_previous, :webhook_secret_previous_until_at, :callback_secret_previous, :callback_secret_previous_until_at)
    ON CONFLICT (id) DO UPDATE SET
        credentials = CASE WHEN :key_changed THEN 'ok' ELSE accounts.credentials END,
        credentials_error = CASE WHEN :key_changed THEN NULL ELSE accounts.credentials_error END,
        calcom_api_key = excluded.calcom_api_key,
        webhook_secret = excluded.webhook_secret,
        calcom_api_base = excluded.calcom_api_base,
        callback_url = excluded.callback_url,
        callback_secret = excluded.callback_secret,
        match_tolerance_seconds = excluded.match_tolerance_seconds,
        enabled = excluded.enabled,
        time_only_matching = excluded.time_only_matching,
        guard = excluded.guard,
        time_zone = excluded.time_zone,
        webhook_secret_previous = excluded.webhook_secret_previous,
        webhook_secret_previous_until_at = excluded.webhook_secret_previous_until_at,
        callback_secret_previous = excluded.callback_secret_previous,
        callback_secret_previous_until_at = excluded.callback_secret_previous_until_at,
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


def _opened(row: dict[str, Any]) -> dict[str, Any]:
    box = secretbox.current()
    return {**row, **{name: box.open(row[name]) for name in SECRET_COLUMNS if name in row}}


def _account(row: dict[str, Any] | None) -> Account | None:
    return Account(**_opened(row)) if row else None


async def get(tx: Tx, account_id: str) -> Account | None:
    return _account(await tx.fetch_one(GET, id=account_id))


async def get_many(tx: Tx, account_ids: list[str]) -> dict[str, Account]:
    if not account_ids:
        return {}
    return {row["id"]: Account(**_opened(row)) for row in await tx.fetch_all(GET_MANY, ids=sorted(set(account_ids)))}


async def webhook_secrets(tx: Tx, account_id: str) -> tuple[str, str | None, datetime | None] | None:
    """Only the webhook secrets (current; previous and until when): the hot path of every webhook needs nothing else."""
    row = await tx.fetch_one(WEBHOOK_SECRETS, id=account_id)
    if row is None:
        return None
    opened = _opened(row)
    return opened["webhook_secret"], opened["webhook_secret_previous"], opened["webhook_secret_previous_until_at"]


async def list_all(tx: Tx) -> list[Account]:
    return [Account(**_opened(row)) for row in await tx.fetch_all(LIST)]


_DEFAULTS: dict[str, Any] = {
    "time_only_matching": False,
    "guard": True,
    "time_zone": "UTC",
    "webhook_secret_previous": None,
    "webhook_secret_previous_until_at": None,
    "callback_secret_previous": None,
    "callback_secret_previous_until_at": None,
}


async def upsert(tx: Tx, account_id: str, values: dict[str, Any], now: datetime) -> bool:
    """Create or replace (secrets given in plaintext, stored sealed); answer True when it was created."""
    # Two requests creating one new id must not both see "absent": take turns (PostgreSQL; a
    # SQLite write transaction already excludes every other writer).
    await tx.lock_account(account_id)
    before = await get(tx, account_id)
    merged = {**_DEFAULTS, **values}
    box = secretbox.current()
    sealed = {name: box.seal(merged.get(name)) for name in SECRET_COLUMNS}
    key_changed = before is None or before.calcom_api_key != merged["calcom_api_key"]
    await tx.execute(UPSERT, id=account_id, now=now, key_changed=key_changed, **{**merged, **sealed})
    return before is None


# Every stored secret, for sealing older plaintext rows and re-encrypting under a new first key.
SECRET_ROWS = sql(f"SELECT id, {', '.join(SECRET_COLUMNS)} FROM accounts ORDER BY id")
RESEAL = sql("UPDATE accounts SET " + ", ".join(f"{name} = :{name}" for name in SECRET_COLUMNS) + " WHERE id = :id")


async def reseal_all(db: Database, *, rotate: bool) -> int:
    """Encrypt every plaintext secret (idempotent: ciphertext carries a marker); with `rotate`, re-encrypt
    every secret under the first key too. Answer the number of accounts rewritten."""
    changed = 0
    async with db.transaction() as tx:
        rows = await tx.fetch_all(SECRET_ROWS)
        box = secretbox.current() if rows else None
        for row in rows:
            assert box is not None
            if not rotate and all(row[name] is None or box.sealed(row[name]) for name in SECRET_COLUMNS):
                continue
            await tx.execute(RESEAL, id=row["id"], **{name: box.reseal(row[name]) for name in SECRET_COLUMNS})
            changed += 1
    return changed


ANY_SEALED = sql(f"SELECT {', '.join(SECRET_COLUMNS)} FROM accounts WHERE calcom_api_key LIKE 'fernet:%' LIMIT 1")


async def check_keys(db: Database) -> None:
    """SecretKeyError (one line, no secret) when the stored secrets cannot be opened with this process' keys."""
    async with db.read() as tx:
        row = await tx.fetch_one(ANY_SEALED)
    if row is not None:
        _opened(row)


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
