"""Duplicate bookings: tagged like a booking already claimed (a retry Cal.com accepted twice)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from service.store.connector import Tx, sql

_TAGGED = """SELECT o.uid, o.seat, o.start_at, o.appointment_tag, o.phase_tag, o.verifier_ref, c.verification_seq
    FROM booking_observations o LEFT JOIN booking_claims c
        ON c.account = o.account AND c.booking_uid = o.uid AND c.booking_seat = o.seat
    WHERE o.account = :account AND o.state = 'exists' AND """
# The bookings of these appointments, and of these guard creates, with the verification holding each.
TAGGED_WITH_APPOINTMENTS = sql(
    _TAGGED + "o.appointment_tag IN (SELECT value FROM json_each(:tags))",
    postgresql=_TAGGED + "o.appointment_tag = ANY(:tags)",
)
TAGGED_WITH_REFS = sql(
    _TAGGED + "o.verifier_ref IN (SELECT value FROM json_each(:refs))",
    postgresql=_TAGGED + "o.verifier_ref = ANY(:refs)",
)
ADD = sql(
    """
    INSERT INTO booking_duplicates (account, uid, seat, verification_seq, of_uid, start_at, found_at)
    VALUES (:account, :uid, :seat, :verification_seq, :of_uid, :start_at, :now)
    ON CONFLICT (account, uid, seat) DO NOTHING
    """
)
_COLUMNS = "d.account, d.uid, d.seat, d.of_uid, d.start_at, d.found_at, d.dismissed_at, d.dismissed_by, v.id AS verification_id"
OF_VERIFICATIONS = sql(
    f"SELECT {_COLUMNS}, d.verification_seq FROM booking_duplicates d JOIN verifications v ON v.seq = d.verification_seq "
    "WHERE d.verification_seq IN (SELECT value FROM json_each(:seqs)) ORDER BY d.start_at, d.uid",
    postgresql=f"SELECT {_COLUMNS}, d.verification_seq FROM booking_duplicates d JOIN verifications v ON v.seq = d.verification_seq "
    "WHERE d.verification_seq = ANY(:seqs) ORDER BY d.start_at, d.uid",
)
OPEN = sql(
    f"SELECT {_COLUMNS} FROM booking_duplicates d JOIN verifications v ON v.seq = d.verification_seq "
    "WHERE d.dismissed_at IS NULL AND (CAST(:account AS TEXT) IS NULL OR d.account = :account) ORDER BY d.found_at LIMIT :limit"
)
OPEN_COUNT = sql("SELECT COUNT(*) AS n FROM booking_duplicates WHERE dismissed_at IS NULL")
DISMISS = sql(
    "UPDATE booking_duplicates SET dismissed_at = :now, dismissed_by = :by "
    "WHERE uid = :uid AND dismissed_at IS NULL AND (CAST(:account AS TEXT) IS NULL OR account = :account)"
)


async def tagged(tx: Tx, account: str, tags: Sequence[str], refs: Sequence[str]) -> list[dict[str, Any]]:
    """Existing bookings tagged with these appointment ids or verifier_refs, and who holds each."""
    rows: list[dict[str, Any]] = []
    if tags:
        rows += await tx.fetch_all(TAGGED_WITH_APPOINTMENTS, account=account, tags=list(tags))
    if refs:
        rows += await tx.fetch_all(TAGGED_WITH_REFS, account=account, refs=list(refs))
    return rows


async def add(tx: Tx, account: str, found: Sequence[dict[str, Any]], now: datetime) -> None:
    await tx.execute_many(ADD, [{**row, "account": account, "now": now} for row in found])


async def of_verifications(tx: Tx, seqs: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    grouped: dict[int, list[dict[str, Any]]] = {seq: [] for seq in seqs}
    if seqs:
        for row in await tx.fetch_all(OF_VERIFICATIONS, seqs=list(seqs)):
            grouped[row["verification_seq"]].append(row)
    return grouped


async def open_ones(tx: Tx, account: str | None, limit: int) -> list[dict[str, Any]]:
    return await tx.fetch_all(OPEN, account=account, limit=limit)


async def open_count(tx: Tx) -> int:
    return int(await tx.fetch_val(OPEN_COUNT) or 0)


async def dismiss(tx: Tx, uid: str, account: str | None, by: str | None, now: datetime) -> int:
    return await tx.execute(DISMISS, uid=uid, account=account, by=by, now=now)
