"""The booking guard's requests (idempotency keys and their answers) and its tagged bookings."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from service.store.connector import Tx, sql

_COLUMNS = """verifier_ref, account, idempotency_key, fingerprint, state, request, status, response_body,
    response_headers, verification_id, created_at, updated_at, expires_at"""
BY_KEY = sql(f"SELECT {_COLUMNS} FROM guard_requests WHERE account = :account AND idempotency_key = :key")
DROP_EXPIRED_KEY = sql("DELETE FROM guard_requests WHERE account = :account AND idempotency_key = :key AND expires_at <= :now")
PRUNE = sql("DELETE FROM guard_requests WHERE expires_at <= :now")
INSERT = sql(
    """
    INSERT INTO guard_requests (verifier_ref, account, idempotency_key, fingerprint, state, request, created_at, updated_at, expires_at)
    VALUES (:verifier_ref, :account, :key, :fingerprint, 'in_flight', :request, :now, :now, :expires)
    ON CONFLICT DO NOTHING
    """
)
# Taking an open (retryable) or abandoned request back: only one retry wins.
TAKE = sql(
    "UPDATE guard_requests SET state = 'in_flight', updated_at = :now "
    "WHERE verifier_ref = :verifier_ref AND state = :state AND updated_at = :seen"
)
FINISH = sql(
    """
    UPDATE guard_requests SET state = :state, status = :status, response_body = :body, response_headers = :headers,
        verification_id = COALESCE(:verification_id, verification_id), updated_at = :now
    WHERE verifier_ref = :verifier_ref
    """
)
TAGGED = sql(
    "SELECT uid, seat, booking_id, start_at, end_at, state, calcom_status, event_type_id, hosts, attendees, appointment_tag, "
    "phase_tag FROM booking_observations WHERE account = :account AND verifier_ref = :verifier_ref ORDER BY start_at, uid, seat"
)


async def by_key(tx: Tx, account: str, key: str) -> dict[str, Any] | None:
    return await tx.fetch_one(BY_KEY, account=account, key=key)


async def start(tx: Tx, row: dict[str, Any], now: datetime, expires: datetime) -> bool:
    """Remember a new keyed request (in flight); False when the key is already taken."""
    await tx.execute(DROP_EXPIRED_KEY, account=row["account"], key=row["key"], now=now)
    return await tx.execute(INSERT, **row, now=now, expires=expires) == 1


async def take(tx: Tx, verifier_ref: str, state: str, seen: datetime, now: datetime) -> bool:
    return await tx.execute(TAKE, verifier_ref=verifier_ref, state=state, seen=seen, now=now) == 1


async def finish(
    tx: Tx, verifier_ref: str, state: str, status: int, body: bytes, headers: dict[str, str], verification_id: str | None, now: datetime
) -> None:
    await tx.execute(
        FINISH,
        verifier_ref=verifier_ref,
        state=state,
        status=status,
        body=body.decode("utf-8", "replace"),
        headers=json.dumps(headers),
        verification_id=verification_id,
        now=now,
    )


async def prune(tx: Tx, now: datetime) -> int:
    return await tx.execute(PRUNE, now=now)


async def tagged(tx: Tx, account: str, verifier_ref: str) -> list[dict[str, Any]]:
    """Every stored booking unit tagged with this verifier_ref (any state)."""
    rows = await tx.fetch_all(TAGGED, account=account, verifier_ref=verifier_ref)
    for row in rows:
        row["hosts"] = json.loads(row["hosts"] or "[]")
        row["attendees"] = json.loads(row["attendees"] or "[]")
    return rows
