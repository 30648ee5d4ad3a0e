"""The figures behind /status and /metrics: read-only, bounded where the tables grow.

Pollers and broken accounts are read with `store.pollers.list_all` and `store.accounts.broken`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from service.store.connector import Tx, sql

# Every verification once, grouped by what the figures distinguish. The one full pass over
# verifications: /status is an operator's page and a scrape target, not the webhook path.
TALLY = sql(
    """
    SELECT status, review_reason, resolved_via, resolution, COUNT(*) AS n
    FROM verifications GROUP BY status, review_reason, resolved_via, resolution
    """
)

# The pending set (through the status index): its size, oldest, and how many are past their
# deadline by more than the grace a live poller needs to move them to manual_review.
PENDING = sql(
    """
    SELECT COUNT(*) AS n, MIN(created_at) AS "oldest_at [UTCTIME]",
        COUNT(CASE WHEN deadline_at < :overdue_before THEN 1 END) AS overdue
    FROM verifications WHERE status = 'pending'
    """
)

# The review queue now; the oldest is the one waiting longest (rows written before
# review_started_at existed fall back to resolved_at, the time they entered the queue).
REVIEW_QUEUE = sql(
    """
    SELECT COUNT(*) AS n, MIN(COALESCE(review_started_at, resolved_at)) AS "oldest_at [UTCTIME]"
    FROM verifications WHERE status = 'manual_review'
    """
)

# Entered the review queue since `since`, whatever happened next. review_started_at <= resolved_at
# always holds, so the resolved_at condition changes nothing but lets the index bound the scan.
REVIEW_ENTERED = sql(
    """
    SELECT COUNT(*) AS n FROM verifications
    WHERE resolved_at >= :since AND review_started_at >= :since
    """
)

# The most recent automatic verdicts, newest first (walks the resolved_at index backwards):
# verified; manual_review reached by the system (not the kill switch, which verifies nothing);
# and operator-resolved ones that the system had put in review first — their automatic verdict
# time survives as review_started_at (a kill-switch row has review_started_at = created_at).
# SQLite is told the index: left alone it gathers every final row through the status index and sorts.
_RECENT_VERDICTS = """
    SELECT created_at, COALESCE(review_started_at, resolved_at) AS "verdict_at [UTCTIME]" FROM verifications {hint}
    WHERE resolved_at IS NOT NULL AND (
        status = 'verified'
        OR (status = 'manual_review' AND resolved_via = 'system' AND review_reason <> 'verification_disabled')
        OR (status = 'resolved' AND review_started_at > created_at)
    )
    ORDER BY resolved_at DESC LIMIT :limit
"""
RECENT_VERDICTS = sql(_RECENT_VERDICTS.format(hint="INDEXED BY verifications_resolved"), postgresql=_RECENT_VERDICTS.format(hint=""))

# Callback events by delivery state: size, oldest, and how many were created since `since`.
OUTBOX = sql(
    """
    SELECT state, COUNT(*) AS n, MIN(created_at) AS "oldest_at [UTCTIME]",
        COUNT(CASE WHEN created_at >= :since THEN 1 END) AS recent
    FROM outbox GROUP BY state
    """
)

# Accounts: how many, and how many are switched off.
ACCOUNTS = sql("SELECT COUNT(*) AS total, COUNT(CASE WHEN NOT enabled THEN 1 END) AS disabled FROM accounts")

# Accounts whose Cal.com checks have failed since before `before`, with a failure after `recent`
# (a spell nobody has tried to end for a long while is not reported as an outage going on).
CALCOM_FAILING = sql(
    """
    SELECT id, calcom_failing_since_at, calcom_failed_at, calcom_failure FROM accounts
    WHERE calcom_failing_since_at < :before AND calcom_failed_at >= :recent ORDER BY id
    """
)

# Signed Cal.com webhooks stored since `since` (through the received_at index).
WEBHOOKS_SINCE = sql("SELECT COUNT(*) AS n FROM webhook_events WHERE received_at >= :since")


async def tally(tx: Tx) -> list[dict[str, Any]]:
    return await tx.fetch_all(TALLY)


async def pending(tx: Tx, overdue_before: datetime) -> dict[str, Any]:
    row = await tx.fetch_one(PENDING, overdue_before=overdue_before)
    assert row is not None
    return row


async def review_queue(tx: Tx) -> dict[str, Any]:
    row = await tx.fetch_one(REVIEW_QUEUE)
    assert row is not None
    return row


async def review_entered_since(tx: Tx, since: datetime) -> int:
    return int(await tx.fetch_val(REVIEW_ENTERED, since=since) or 0)


async def recent_verdicts(tx: Tx, limit: int) -> list[dict[str, Any]]:
    return await tx.fetch_all(RECENT_VERDICTS, limit=limit)


async def outbox_by_state(tx: Tx, since: datetime) -> list[dict[str, Any]]:
    return await tx.fetch_all(OUTBOX, since=since)


async def accounts(tx: Tx) -> dict[str, Any]:
    row = await tx.fetch_one(ACCOUNTS)
    assert row is not None
    return row


async def webhooks_since(tx: Tx, since: datetime) -> int:
    return int(await tx.fetch_val(WEBHOOKS_SINCE, since=since) or 0)


async def calcom_failing(tx: Tx, before: datetime, recent: datetime) -> list[dict[str, Any]]:
    return await tx.fetch_all(CALCOM_FAILING, before=before, recent=recent)
