"""Operators of the console (name and Argon2 hash) and the audit log of what people changed."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from service.store.connector import Tx, sql

ADD_OPERATOR = sql(
    "INSERT INTO operators (name, password_hash, created_at) VALUES (:name, :password_hash, :now) ON CONFLICT (name) DO NOTHING"
)
OPERATOR = sql("SELECT name, password_hash, session_epoch, created_at FROM operators WHERE name = :name")
OPERATORS = sql("SELECT name, created_at FROM operators ORDER BY name")
REMOVE_OPERATOR = sql("DELETE FROM operators WHERE name = :name")
SET_HASH = sql("UPDATE operators SET password_hash = :password_hash, session_epoch = session_epoch + 1 WHERE name = :name")
END_SESSIONS = sql("UPDATE operators SET session_epoch = session_epoch + 1 WHERE name = :name")

AUDIT = sql("INSERT INTO audit_log (at, actor, action, subject, detail) VALUES (:at, :actor, :action, :subject, :detail)")
# Newest first; `before` pages back by seq.
AUDIT_PAGE = sql(
    "SELECT seq, at, actor, action, subject, detail FROM audit_log "
    "WHERE (CAST(:before AS BIGINT) IS NULL OR seq < :before) ORDER BY seq DESC LIMIT :limit"
)


async def add_operator(tx: Tx, name: str, password_hash: str, now: datetime) -> bool:
    """Create the operator, or set a new password for one that exists; True when created."""
    if await tx.execute(ADD_OPERATOR, name=name, password_hash=password_hash, now=now):
        return True
    await set_hash(tx, name, password_hash)
    return False


async def operator(tx: Tx, name: str) -> dict[str, Any] | None:
    return await tx.fetch_one(OPERATOR, name=name)


async def operators(tx: Tx) -> list[dict[str, Any]]:
    return await tx.fetch_all(OPERATORS)


async def remove_operator(tx: Tx, name: str) -> bool:
    return bool(await tx.execute(REMOVE_OPERATOR, name=name))


async def set_hash(tx: Tx, name: str, password_hash: str) -> None:
    await tx.execute(SET_HASH, name=name, password_hash=password_hash)


async def end_sessions(tx: Tx, name: str) -> None:
    """Every session of this operator stops working."""
    await tx.execute(END_SESSIONS, name=name)


async def audit(tx: Tx, *, at: datetime, actor: str, action: str, subject: str | None, detail: str) -> None:
    await tx.execute(AUDIT, at=at, actor=actor, action=action, subject=subject, detail=detail)


async def audit_page(tx: Tx, *, limit: int, before: int | None = None) -> list[dict[str, Any]]:
    return await tx.fetch_all(AUDIT_PAGE, limit=limit, before=before)


# Evidence: every stored unit near a phase (or tagged for its appointment), gone or claimed too,
# with the verification holding it. Two statements, each one index read (an OR of both would walk
# the account's history on SQLite).
_EVIDENCE = """
    SELECT o.uid, o.seat, o.booking_id, o.start_at, o.state, o.calcom_status, o.event_type_id, o.hosts, o.attendees,
        o.phones, o.appointment_tag, o.phase_tag, o.source, v.id AS claimed_by, c.phase_key AS claimed_phase
    FROM booking_observations o
    LEFT JOIN booking_claims c ON c.account = o.account AND c.booking_uid = o.uid AND c.booking_seat = o.seat
    LEFT JOIN verifications v ON v.seq = c.verification_seq
    WHERE o.account = :account AND {where} LIMIT :limit
"""
EVIDENCE_NEAR = sql(_EVIDENCE.format(where="o.start_at >= :lo AND o.start_at <= :hi ORDER BY o.start_at, o.uid, o.seat"))
# No ORDER BY: sorting by start would make SQLite walk the account's start index instead of the tag's.
EVIDENCE_TAGGED = sql(_EVIDENCE.format(where="o.appointment_tag = :tag"))


async def evidence_near(tx: Tx, account: str, lo: datetime, hi: datetime, tag: str, limit: int = 200) -> list[dict[str, Any]]:
    """Booking units of `account` starting in [lo, hi] or tagged `tag`, with their claim holder."""
    rows = await tx.fetch_all(EVIDENCE_NEAR, account=account, lo=lo, hi=hi, limit=limit)
    rows += await tx.fetch_all(EVIDENCE_TAGGED, account=account, tag=tag, limit=limit)
    for row in rows:
        for name in ("hosts", "attendees", "phones"):
            row[name] = tuple(json.loads(row[name] or "[]"))
    return rows


# The review queue, longest in review first: manual_review rows of a reason (or all), in review since
# before `older_than`. Two statements, each reading only rows in review: every account's queue through
# (review start, seq) or the status index, one account's through (account, review start, seq); both
# indexes hold only the rows in review (0011). Ordered by seq alone, PostgreSQL walked the primary
# key through the whole history, filtering on the status.
_REVIEW_START = "COALESCE(review_started_at, created_at)"
_QUEUE_COLUMNS = f'seq, id, account, appointment_id, service, review_reason, created_at, {_REVIEW_START} AS "review_started_at [UTCTIME]"'
_QUEUE_WHERE = f"""status = 'manual_review' AND {_REVIEW_START} <= :older_than
    AND (CAST(:reason AS TEXT) IS NULL OR review_reason = :reason)"""
QUEUE = sql(f"SELECT {_QUEUE_COLUMNS} FROM verifications WHERE {_QUEUE_WHERE} ORDER BY {_REVIEW_START}, seq LIMIT :limit")
QUEUE_OF_ACCOUNT = sql(
    f"SELECT {_QUEUE_COLUMNS} FROM verifications WHERE account = :account AND {_QUEUE_WHERE} "
    f"ORDER BY account, {_REVIEW_START}, seq LIMIT :limit"
)
QUEUE_COUNTS = sql(
    """
    SELECT review_reason, COUNT(*) AS n FROM verifications
    WHERE status = 'manual_review' AND (CAST(:account AS TEXT) IS NULL OR account = :account)
    GROUP BY review_reason ORDER BY review_reason
    """
)
OPEN_BY_ACCOUNT = sql(
    "SELECT account, status, COUNT(*) AS n FROM verifications WHERE status IN ('pending', 'manual_review') GROUP BY account, status"
)
# The newest webhook of one account, read backwards from the end of the (account, received_at) index.
# The account is bounded as a range, not "account = :account": with an equality PostgreSQL drops the
# account from the order and may walk every account's webhooks newest first through the
# received_at index looking for this one's (all of them for an account without webhooks).
LAST_WEBHOOK = sql(
    "SELECT trigger_event, received_at FROM webhook_events WHERE account >= :account AND account <= :account "
    "ORDER BY account DESC, received_at DESC LIMIT 1"
)
DELIVERIES = sql(
    """
    SELECT id, event_type, state, attempts, last_status, last_error, created_at, next_attempt_at, delivered_at
    FROM outbox WHERE verification_seq = :seq ORDER BY seq
    """
)
# What the dashboard's 14 days are drawn from: the verifications created since `since`, and the
# older ones that were in review at some point since then (still there, or resolved since).
_HISTORY_COLUMNS = "seq, created_at, status, resolved_via, resolution, review_reason, resolved_at, review_started_at"
HISTORY_CREATED = sql(f"SELECT {_HISTORY_COLUMNS} FROM verifications WHERE created_at >= :since ORDER BY created_at LIMIT :limit")
HISTORY_IN_REVIEW = sql(f"SELECT {_HISTORY_COLUMNS} FROM verifications WHERE status = 'manual_review' AND created_at < :since LIMIT :limit")
HISTORY_RESOLVED = sql(
    f"SELECT {_HISTORY_COLUMNS} FROM verifications WHERE resolved_at >= :since AND status = 'resolved' AND created_at < :since "
    "AND review_started_at IS NOT NULL LIMIT :limit"
)


async def queue(tx: Tx, *, account: str | None, reason: str | None, older_than: datetime, limit: int) -> list[dict[str, Any]]:
    if account is None:
        return await tx.fetch_all(QUEUE, reason=reason, older_than=older_than, limit=limit)
    return await tx.fetch_all(QUEUE_OF_ACCOUNT, account=account, reason=reason, older_than=older_than, limit=limit)


async def queue_counts(tx: Tx, account: str | None) -> dict[str, int]:
    return {row["review_reason"] or "": int(row["n"]) for row in await tx.fetch_all(QUEUE_COUNTS, account=account)}


async def open_by_account(tx: Tx) -> dict[str, dict[str, int]]:
    found: dict[str, dict[str, int]] = {}
    for row in await tx.fetch_all(OPEN_BY_ACCOUNT):
        found.setdefault(row["account"], {})[row["status"]] = int(row["n"])
    return found


async def last_webhook(tx: Tx, account: str) -> dict[str, Any] | None:
    return await tx.fetch_one(LAST_WEBHOOK, account=account)


async def deliveries(tx: Tx, seq: int) -> list[dict[str, Any]]:
    return await tx.fetch_all(DELIVERIES, seq=seq)


async def history(tx: Tx, since: datetime, limit: int = 500_000) -> list[dict[str, Any]]:
    """The rows the dashboard counts (each at most once; at most `limit` of each kind)."""
    rows: dict[int, dict[str, Any]] = {}
    for query in (HISTORY_CREATED, HISTORY_IN_REVIEW, HISTORY_RESOLVED):
        for row in await tx.fetch_all(query, since=since, limit=limit):
            rows.setdefault(row["seq"], row)
    return list(rows.values())
