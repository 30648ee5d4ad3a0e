"""Booking claims: which verification's phase holds each booking unit (one holder per unit)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from service.store.connector import Tx, sql

CLAIM = sql(
    """
    INSERT INTO booking_claims (account, booking_uid, booking_seat, verification_seq, phase_key, claimed_at)
    VALUES (:account, :uid, :seat, :verification_seq, :phase_key, :now)
    ON CONFLICT (account, booking_uid, booking_seat) DO NOTHING
    """
)
CLAIM_OWNER = sql("SELECT verification_seq FROM booking_claims WHERE account = :account AND booking_uid = :uid AND booking_seat = :seat")
RELEASE = sql("DELETE FROM booking_claims WHERE account = :account AND verification_seq = :verification_seq AND phase_key = :phase_key")
CLAIMS_OF = sql("SELECT phase_key, booking_uid, booking_seat FROM booking_claims WHERE verification_seq = :verification_seq")
# Many claims in one statement (a verdict for a whole group); the owners are read back in one more
# unless every unit was free.
CLAIM_MANY = sql(
    """
    INSERT INTO booking_claims (account, booking_uid, booking_seat, verification_seq, phase_key, claimed_at)
    SELECT :account, json_extract(c.value, '$[0]'), json_extract(c.value, '$[1]'), json_extract(c.value, '$[2]'),
        json_extract(c.value, '$[3]'), :now
    FROM json_each(:claims) c WHERE TRUE
    ON CONFLICT (account, booking_uid, booking_seat) DO NOTHING
    """,
    postgresql="""
    INSERT INTO booking_claims (account, booking_uid, booking_seat, verification_seq, phase_key, claimed_at)
    SELECT :account, c.uid, c.seat, c.seq, c.key, :now
    FROM unnest(CAST(:uids AS text[]), CAST(:seats AS text[]), CAST(:seqs AS bigint[]), CAST(:keys AS text[])) AS c(uid, seat, seq, key)
    ON CONFLICT (account, booking_uid, booking_seat) DO NOTHING
    """,
)
OWNERS_OF = sql(
    "SELECT booking_uid, booking_seat, verification_seq FROM booking_claims "
    "WHERE account = :account AND booking_uid IN (SELECT value FROM json_each(:uids))",
    postgresql="SELECT booking_uid, booking_seat, verification_seq FROM booking_claims WHERE account = :account AND booking_uid = ANY(:uids)",
)


async def claim(tx: Tx, account: str, uid: str, seat: str, verification_seq: int, phase_key: str, now: datetime) -> bool:
    """Claim a booking unit for a phase; False when another phase already holds it."""
    inserted = await tx.execute(CLAIM, account=account, uid=uid, seat=seat, verification_seq=verification_seq, phase_key=phase_key, now=now)
    if inserted:
        return True
    owner = await tx.fetch_val(CLAIM_OWNER, account=account, uid=uid, seat=seat)
    return bool(owner == verification_seq)


async def release(tx: Tx, account: str, verification_seq: int, phase_key: str) -> None:
    """Give back the booking a phase holds (an operator picked another one)."""
    await tx.execute(RELEASE, account=account, verification_seq=verification_seq, phase_key=phase_key)


async def claims_of(tx: Tx, verification_seq: int) -> dict[str, tuple[str, str]]:
    """The booking units a verification holds, by phase key."""
    rows = await tx.fetch_all(CLAIMS_OF, verification_seq=verification_seq)
    return {row["phase_key"]: (row["booking_uid"], row["booking_seat"]) for row in rows}


async def claim_many(tx: Tx, account: str, claims: Sequence[tuple[str, str, int, str]], now: datetime) -> dict[tuple[str, str], int]:
    """Claim (uid, seat, verification_seq, phase_key) units at once; answer the owner of each unit afterwards."""
    if not claims:
        return {}
    inserted = await tx.execute(
        CLAIM_MANY,
        account=account,
        now=now,
        claims=[list(c) for c in claims],
        uids=[c[0] for c in claims],
        seats=[c[1] for c in claims],
        seqs=[c[2] for c in claims],
        keys=[c[3] for c in claims],
    )
    units = {(c[0], c[1]): c[2] for c in claims}
    if inserted == len(units) == len(claims):  # every unit was free: its claimer owns it (no read back)
        return units
    rows = await tx.fetch_all(OWNERS_OF, account=account, uids=sorted({c[0] for c in claims}))
    return {(row["booking_uid"], row["booking_seat"]): int(row["verification_seq"]) for row in rows}
