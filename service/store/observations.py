"""Booking observations, their claims, and the raw webhook events they came from."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..db import Query, Tx, sql
from ..observations import Observation

# Newer evidence wins; at the same instant "gone" beats "exists" (a cancellation is final).
UPSERT = sql(
    """
    INSERT INTO booking_observations (account, uid, seat, booking_id, start_at, end_at, state,
        calcom_status, event_type_id, hosts, attendees, appointment_tag, phase_tag, source,
        event_at, first_seen_at, updated_at)
    VALUES (:account, :uid, :seat, :booking_id, :start_at, :end_at, :state, :calcom_status,
        :event_type_id, :hosts, :attendees, :appointment_tag, :phase_tag, :source, :event_at, :now, :now)
    ON CONFLICT (account, uid, seat) DO UPDATE SET
        booking_id = COALESCE(excluded.booking_id, booking_observations.booking_id),
        start_at = excluded.start_at, end_at = excluded.end_at, state = excluded.state,
        calcom_status = excluded.calcom_status, event_type_id = excluded.event_type_id,
        hosts = excluded.hosts, attendees = excluded.attendees,
        appointment_tag = excluded.appointment_tag, phase_tag = excluded.phase_tag,
        source = excluded.source, event_at = excluded.event_at, updated_at = excluded.updated_at
    WHERE excluded.event_at > booking_observations.event_at
       OR (excluded.event_at = booking_observations.event_at
           AND (excluded.state = 'gone' OR booking_observations.state = 'exists'))
    """
)

_AVAILABLE_COLUMNS = """o.uid, o.seat, o.booking_id, o.start_at, o.end_at, o.event_type_id, o.hosts, o.attendees,
        o.appointment_tag, o.phase_tag, o.source, o.updated_at"""
_UNCLAIMED = """o.state = 'exists' AND NOT EXISTS (SELECT 1 FROM booking_claims c
        WHERE c.account = o.account AND c.booking_uid = o.uid AND c.booking_seat = o.seat)"""
# PostgreSQL would rather hash every claim ever made than probe the key of each candidate: OFFSET 0
# keeps the test a per-candidate key lookup.
_UNCLAIMED_PG = _UNCLAIMED.replace("o.seat)", "o.seat OFFSET 0)")
# Existing, unclaimed bookings starting in any of several (merged, disjoint) windows: one
# statement, one index range scan per window. The windows drive the loop on both databases, so the
# cost follows the windows, not the account's history: SQLite keeps the left table of a CROSS JOIN
# outside (a plain JOIN let it walk every observation of the account instead), PostgreSQL's
# OFFSET 0 keeps the per-window subquery from being flattened.
AVAILABLE_BETWEEN = sql(
    f"""
    SELECT {_AVAILABLE_COLUMNS} FROM json_each(:windows) w CROSS JOIN booking_observations o
    WHERE o.account = :account AND o.start_at >= json_extract(w.value, '$[0]') AND o.start_at <= json_extract(w.value, '$[1]')
    AND {_UNCLAIMED}
    """,
    postgresql=f"""
    SELECT {_AVAILABLE_COLUMNS}
    FROM unnest(CAST(:los AS timestamptz[]), CAST(:his AS timestamptz[])) AS w(lo, hi)
    CROSS JOIN LATERAL (SELECT * FROM booking_observations
        WHERE account = :account AND start_at >= w.lo AND start_at <= w.hi OFFSET 0) o
    WHERE {_UNCLAIMED_PG}
    """,
)
AVAILABLE_TAGGED = sql(
    f"SELECT {_AVAILABLE_COLUMNS} FROM booking_observations o WHERE o.account = :account AND {_UNCLAIMED} "
    "AND o.appointment_tag IN (SELECT value FROM json_each(:tags))",
    postgresql=f"SELECT {_AVAILABLE_COLUMNS} FROM booking_observations o WHERE o.account = :account AND {_UNCLAIMED_PG} "
    "AND o.appointment_tag = ANY(:tags)",
)

UNITS_OF = sql(
    "SELECT uid, seat, attendees FROM booking_observations WHERE account = :account AND uid IN (SELECT value FROM json_each(:uids))",
    postgresql="SELECT uid, seat, attendees FROM booking_observations WHERE account = :account AND uid = ANY(:uids)",
)

CLAIM = sql(
    """
    INSERT INTO booking_claims (account, booking_uid, booking_seat, verification_seq, phase_key, claimed_at)
    VALUES (:account, :uid, :seat, :verification_seq, :phase_key, :now)
    ON CONFLICT (account, booking_uid, booking_seat) DO NOTHING
    """
)
CLAIM_OWNER = sql(
    "SELECT verification_seq FROM booking_claims WHERE account = :account AND booking_uid = :uid AND booking_seat = :seat"
)
OBSERVATION = sql(
    "SELECT uid, seat, booking_id, start_at, state, source FROM booking_observations WHERE account = :account AND uid = :uid ORDER BY seat"
)

_EVENT_COLUMNS = ("account", "body_sha256", "trigger_event", "booking_uid", "event_created_at", "received_at", "body")
_INSERT_EVENTS: dict[int, Query] = {}


def _insert_events_query(count: int) -> Query:
    """Insert `count` events in one statement; RETURNING names the ones that were new."""
    query = _INSERT_EVENTS.get(count)
    if query is None:
        rows = ", ".join("(" + ", ".join(f":{c}_{i}" for c in _EVENT_COLUMNS) + ")" for i in range(count))
        query = sql(
            f"INSERT INTO webhook_events ({', '.join(_EVENT_COLUMNS)}) VALUES {rows} "
            "ON CONFLICT (account, body_sha256) DO NOTHING RETURNING account, body_sha256"
        )
        _INSERT_EVENTS[count] = query
    return query

# Raw webhook bodies are kept for audit and replay for a while, then dropped in slices (what they
# taught us stays in booking_observations).
PRUNE_EVENTS = sql(
    "DELETE FROM webhook_events WHERE seq IN "
    "(SELECT seq FROM webhook_events WHERE received_at < :before ORDER BY received_at LIMIT :limit)",
    # ARRAY(): the slice is collected first and deleted by key, never joined against the whole table.
    postgresql="DELETE FROM webhook_events WHERE seq = ANY(ARRAY("
    "SELECT seq FROM webhook_events WHERE received_at < :before ORDER BY received_at LIMIT :limit))",
)


@dataclass(frozen=True)
class Available:
    """An unclaimed, existing booking unit, as stored."""

    uid: str
    seat: str
    booking_id: int | None
    start_at: datetime
    end_at: datetime | None
    event_type_id: int | None
    hosts: tuple[str, ...]
    attendees: tuple[str, ...]
    appointment_tag: str | None
    phase_tag: str | None
    source: str
    updated_at: datetime


def _row(observation: Observation, account: str, now: datetime) -> dict[str, Any]:
    return {
        "account": account,
        "uid": observation.uid,
        "seat": observation.seat,
        "booking_id": observation.booking_id,
        "start_at": observation.start,
        "end_at": observation.end,
        "state": observation.state,
        "calcom_status": observation.calcom_status,
        "event_type_id": observation.event_type_id,
        "hosts": json.dumps(list(observation.hosts)),
        "attendees": json.dumps(list(observation.attendees)),
        "appointment_tag": observation.appointment_tag,
        "phase_tag": observation.phase_tag,
        "source": observation.source,
        "event_at": observation.event_at,
        "now": now,
    }


async def upsert(tx: Tx, account: str, observations: Iterable[Observation], now: datetime) -> None:
    """Store observations; an older one never overrides a newer one of the same unit."""
    await tx.execute_many(UPSERT, [_row(o, account, now) for o in observations])


async def upsert_many(tx: Tx, observations: Iterable[tuple[str, Observation]], now: datetime) -> None:
    """Observations of several accounts, (account, observation) pairs, in one statement batch."""
    await tx.execute_many(UPSERT, [_row(o, account, now) for account, o in observations])


def _available(row: dict[str, Any]) -> Available:
    row = dict(row)
    row["hosts"] = tuple(json.loads(row["hosts"] or "[]"))
    row["attendees"] = tuple(json.loads(row["attendees"] or "[]"))
    return Available(**row)


async def available_between(tx: Tx, account: str, windows: Sequence[tuple[datetime, datetime]]) -> list[Available]:
    """Unclaimed, existing bookings of `account` starting inside any of the windows."""
    if not windows:
        return []
    rows = await tx.fetch_all(
        AVAILABLE_BETWEEN, account=account, windows=list(windows), los=[lo for lo, _ in windows], his=[hi for _, hi in windows]
    )
    return [_available(r) for r in rows]


async def available_tagged(tx: Tx, account: str, tags: Sequence[str]) -> list[Available]:
    if not tags:
        return []
    return [_available(r) for r in await tx.fetch_all(AVAILABLE_TAGGED, account=account, tags=list(tags))]


async def units_of(tx: Tx, account: str, uids: Sequence[str]) -> dict[str, list[tuple[str, tuple[str, ...]]]]:
    """The stored units (seat, attendees) of each booking uid."""
    found: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    if uids:
        for row in await tx.fetch_all(UNITS_OF, account=account, uids=list(uids)):
            found.setdefault(row["uid"], []).append((row["seat"], tuple(json.loads(row["attendees"] or "[]"))))
    return found


async def claim(tx: Tx, account: str, uid: str, seat: str, verification_seq: int, phase_key: str, now: datetime) -> bool:
    """Claim a booking unit for a phase; False when another phase already holds it."""
    inserted = await tx.execute(
        CLAIM, account=account, uid=uid, seat=seat, verification_seq=verification_seq, phase_key=phase_key, now=now
    )
    if inserted:
        return True
    owner = await tx.fetch_val(CLAIM_OWNER, account=account, uid=uid, seat=seat)
    return owner == verification_seq


async def find(tx: Tx, account: str, uid: str) -> list[dict[str, Any]]:
    return await tx.fetch_all(OBSERVATION, account=account, uid=uid)


async def insert_events(tx: Tx, rows: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """Store raw webhook events once each; answer the (account, body hash) pairs that were new."""
    new: set[tuple[str, str]] = set()
    for start in range(0, len(rows), 200):
        chunk = rows[start : start + 200]
        params = {f"{c}_{i}": row[c] for i, row in enumerate(chunk) for c in _EVENT_COLUMNS}
        new |= {(r["account"], r["body_sha256"]) for r in await tx.fetch_all(_insert_events_query(len(chunk)), **params)}
    return new


async def prune_events(tx: Tx, before: datetime, limit: int = 5000) -> int:
    """Forget raw webhook bodies received before `before` (at most `limit` per call)."""
    return await tx.execute(PRUNE_EVENTS, before=before, limit=limit)

