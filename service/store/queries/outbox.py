"""The outbox: verdict events written with the verdict, delivered (and retried) by pollers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from service.store.connector import Tx, sql

INSERT = sql(
    """
    INSERT INTO outbox (id, verification_seq, account, event_type, payload, state, created_at, next_attempt_at)
    VALUES (:id, :verification_seq, :account, :event_type, :payload, 'pending', :now, :now)
    """
)
_DUE = """
    SELECT seq FROM outbox
    WHERE state = 'pending' AND next_attempt_at <= :now AND (lease_expires_at IS NULL OR lease_expires_at < :now)
    ORDER BY next_attempt_at LIMIT :limit
"""
_RETURNING = "RETURNING seq, id, verification_seq, account, payload, attempts, created_at"
CLAIM_DUE = sql(
    f"UPDATE outbox SET lease_owner = :owner, lease_expires_at = :expires WHERE seq IN ({_DUE}) {_RETURNING}",
    # ARRAY(): the claimed rows are updated by key, never by a join against every event ever sent.
    postgresql=f"UPDATE outbox SET lease_owner = :owner, lease_expires_at = :expires "
    f"WHERE seq = ANY(ARRAY({_DUE} FOR UPDATE SKIP LOCKED)) {_RETURNING}",
)
RECORD_ATTEMPT = sql(
    """
    UPDATE outbox SET attempts = attempts + 1, state = :state, last_status = :last_status,
        last_error = :last_error, next_attempt_at = :next_attempt_at, delivered_at = :delivered_at,
        lease_owner = NULL, lease_expires_at = NULL
    WHERE seq = :seq AND state = 'pending' AND lease_owner = :owner
    """
)
ABANDON = sql(
    """
    UPDATE outbox SET state = 'failed', last_error = :last_error, next_attempt_at = NULL,
        lease_owner = NULL, lease_expires_at = NULL
    WHERE seq = :seq AND state = 'pending' AND lease_owner = :owner
    """
)


async def add(tx: Tx, *, event_id: str, verification_seq: int, account: str, event_type: str, payload: str, now: datetime) -> None:
    await tx.execute(
        INSERT,
        id=event_id,
        verification_seq=verification_seq,
        account=account,
        event_type=event_type,
        payload=payload,
        now=now,
    )


async def claim_due(tx: Tx, owner: str, now: datetime, expires: datetime, limit: int) -> list[dict[str, Any]]:
    return await tx.fetch_all(CLAIM_DUE, owner=owner, now=now, expires=expires, limit=limit)


async def record_attempt(
    tx: Tx,
    seq: int,
    owner: str,
    *,
    state: str,
    last_status: int | None,
    last_error: str | None,
    next_attempt_at: datetime | None,
    delivered_at: datetime | None,
) -> bool:
    changed = await tx.execute(
        RECORD_ATTEMPT,
        seq=seq,
        owner=owner,
        state=state,
        last_status=last_status,
        last_error=last_error,
        next_attempt_at=next_attempt_at,
        delivered_at=delivered_at,
    )
    return changed == 1


async def abandon(tx: Tx, seq: int, owner: str, last_error: str) -> bool:
    return await tx.execute(ABANDON, seq=seq, owner=owner, last_error=last_error) == 1
