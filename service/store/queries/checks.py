"""The check schedule of verifications: due ones leased to a poller, checks recorded, rechecks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from service.store.connector import Tx, sql
from service.store.queries.verifications import COLUMNS

_DUE = """
    SELECT seq FROM verifications
    WHERE account = :account AND status = 'pending' AND next_check_at <= :now
    AND (lease_expires_at IS NULL OR lease_expires_at < :now)
    ORDER BY next_check_at LIMIT :limit
"""
CLAIM_DUE = sql(
    f"UPDATE verifications SET lease_owner = :owner, lease_expires_at = :expires WHERE seq IN ({_DUE}) RETURNING {COLUMNS}",
    # ARRAY(): the claimed rows are updated by key, never by a join against the whole table.
    postgresql=f"UPDATE verifications SET lease_owner = :owner, lease_expires_at = :expires "
    f"WHERE seq = ANY(ARRAY({_DUE} FOR UPDATE SKIP LOCKED)) RETURNING {COLUMNS}",
)
RECORD_CHECK = sql(
    """
    UPDATE verifications SET checks = checks + :calls, complete_checks = complete_checks + :complete,
        failures = :failures, last_checked_at = :now, last_check_error = :error, next_check_at = :next_check_at,
        lease_owner = NULL, lease_expires_at = NULL, updated_at = :now
    WHERE seq = :seq AND status = 'pending' AND lease_owner = :owner
    """
)


async def claim_due(tx: Tx, account: str, owner: str, now: datetime, expires: datetime, limit: int) -> list[dict[str, Any]]:
    return await tx.fetch_all(CLAIM_DUE, account=account, owner=owner, now=now, expires=expires, limit=limit)


async def record_check(
    tx: Tx,
    seq: int,
    owner: str,
    *,
    now: datetime,
    calls: int,
    complete: bool,
    failures: int,
    error: str | None,
    next_check_at: datetime | None,
) -> bool:
    changed = await tx.execute(
        RECORD_CHECK,
        seq=seq,
        owner=owner,
        now=now,
        calls=calls,
        complete=int(complete),
        failures=failures,
        error=error,
        next_check_at=next_check_at,
    )
    return changed == 1


# Rechecks. A pending verification is made due now (never past its deadline).
DUE_NOW = sql(
    """
    UPDATE verifications SET next_check_at = CASE WHEN deadline_at < :now THEN deadline_at ELSE :now END, updated_at = :now
    WHERE seq = :seq AND status = 'pending'
    """
)
# A verification whose outcome is unknown (Cal.com never answered) is pending again: due now, with a
# new deadline, its claims given back and its staff-required phases open to evidence again.
# review_started_at is kept: it tells the poller that this one was in review before.
REOPEN = sql(
    """
    UPDATE verifications SET status = 'pending', review_reason = NULL, resolved_via = NULL, resolution = NULL,
        resolved_at = NULL, next_check_at = :now, deadline_at = :deadline, failures = 0,
        lease_owner = NULL, lease_expires_at = NULL, updated_at = :now
    WHERE seq = :seq AND status = 'manual_review' AND review_reason = 'calcom_unavailable'
    """
)
RELEASE_CLAIMS = sql("DELETE FROM booking_claims WHERE verification_seq = :seq")
REOPEN_PHASES = sql(
    """
    UPDATE phases SET status = 'pending', active = TRUE, booking_uid = NULL, booking_seat = NULL, booking_id = NULL,
        booking_start_at = NULL, booking_source = NULL, booking_identity = NULL
    WHERE verification_seq = :seq AND staff_required
    """
)
IN_REVIEW_AS = sql(
    "SELECT id FROM verifications WHERE account = :account AND status = 'manual_review' AND review_reason = :reason ORDER BY seq"
)


async def due_now(tx: Tx, seq: int, now: datetime) -> bool:
    return await tx.execute(DUE_NOW, seq=seq, now=now) == 1


async def reopen(tx: Tx, seq: int, now: datetime, deadline: datetime) -> bool:
    """Take a calcom_unavailable verification out of review, due now; False if it is not one (any more)."""
    if await tx.execute(REOPEN, seq=seq, now=now, deadline=deadline) != 1:
        return False
    await tx.execute(RELEASE_CLAIMS, seq=seq)
    await tx.execute(REOPEN_PHASES, seq=seq)
    return True


async def in_review_as(tx: Tx, account: str, reason: str) -> list[str]:
    return [row["id"] for row in await tx.fetch_all(IN_REVIEW_AS, account=account, reason=reason)]
