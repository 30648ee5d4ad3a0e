"""Booking observations: what Cal.com said about each booking unit, kept current."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.core.observations import Observation
from service.store.connector import Tx, sql
from service.store.queries.claims import claim

log = logging.getLogger("service.store")

# Two clocks are never compared: webhooks are ordered among themselves by Cal.com's `createdAt`;
# across sources (and among polls) our own time of receipt or fetch decides. "Gone" is final
# (Cal.com never revives a cancelled, rejected or rescheduled-away booking): it replaces "exists"
# whatever its time, and nothing brings a gone unit back.
UPSERT = sql(
    """
    INSERT INTO booking_observations (account, uid, seat, booking_id, start_at, end_at, state,
        calcom_status, event_type_id, hosts, attendees, phones, appointment_tag, phase_tag, verifier_ref, source,
        event_at, webhook_event_at, observed_at, first_seen_at, updated_at)
    VALUES (:account, :uid, :seat, :booking_id, :start_at, :end_at, :state, :calcom_status,
        :event_type_id, :hosts, :attendees, :phones, :appointment_tag, :phase_tag, :verifier_ref, :source, :event_at,
        :webhook_event_at, :observed_at, :now, :now)
    ON CONFLICT (account, uid, seat) DO UPDATE SET
        booking_id = COALESCE(excluded.booking_id, booking_observations.booking_id),
        start_at = excluded.start_at, end_at = excluded.end_at, state = excluded.state,
        calcom_status = excluded.calcom_status, event_type_id = excluded.event_type_id,
        hosts = excluded.hosts, attendees = excluded.attendees, phones = excluded.phones,
        appointment_tag = excluded.appointment_tag, phase_tag = excluded.phase_tag,
        verifier_ref = COALESCE(excluded.verifier_ref, booking_observations.verifier_ref),
        source = excluded.source, event_at = excluded.event_at,
        webhook_event_at = CASE WHEN booking_observations.webhook_event_at IS NULL
                                  OR excluded.webhook_event_at > booking_observations.webhook_event_at
                                THEN COALESCE(excluded.webhook_event_at, booking_observations.webhook_event_at)
                                ELSE booking_observations.webhook_event_at END,
        observed_at = CASE WHEN booking_observations.observed_at IS NULL
                             OR excluded.observed_at > booking_observations.observed_at
                           THEN excluded.observed_at ELSE booking_observations.observed_at END,
        updated_at = excluded.updated_at
    WHERE (excluded.state = 'gone' AND booking_observations.state <> 'gone')
       OR ((excluded.state = 'gone' OR booking_observations.state <> 'gone')
           AND (booking_observations.observed_at IS NULL OR excluded.observed_at >= booking_observations.observed_at)
           AND (excluded.source <> 'webhook' OR booking_observations.webhook_event_at IS NULL
                OR excluded.webhook_event_at >= booking_observations.webhook_event_at))
    """
)

_AVAILABLE_COLUMNS = """o.uid, o.seat, o.booking_id, o.start_at, o.end_at, o.event_type_id, o.hosts, o.attendees, o.phones,
        o.appointment_tag, o.phase_tag, o.verifier_ref, o.source, o.updated_at"""
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
# Tagged bookings of these appointments: unclaimed, or claimed for the same appointment (a booking
# the guard claimed for appointment 762 is also 762's own verification's: claims are shared within
# one appointment id).
_NOT_CLAIMED_ELSEWHERE = """o.state = 'exists' AND NOT EXISTS (SELECT 1 FROM booking_claims c JOIN verifications v ON v.seq = c.verification_seq
        WHERE c.account = o.account AND c.booking_uid = o.uid AND c.booking_seat = o.seat
        AND (o.appointment_tag IS NULL OR v.appointment_id <> o.appointment_tag))"""
AVAILABLE_TAGGED = sql(
    f"SELECT {_AVAILABLE_COLUMNS} FROM booking_observations o WHERE o.account = :account AND {_NOT_CLAIMED_ELSEWHERE} "
    "AND o.appointment_tag IN (SELECT value FROM json_each(:tags))",
    postgresql=f"SELECT {_AVAILABLE_COLUMNS} FROM booking_observations o WHERE o.account = :account AND {_NOT_CLAIMED_ELSEWHERE} "
    "AND o.appointment_tag = ANY(:tags)",
)
# Bookings the guard created for these verifier_refs (the same sharing rule).
AVAILABLE_BY_REF = sql(
    f"SELECT {_AVAILABLE_COLUMNS} FROM booking_observations o WHERE o.account = :account AND {_NOT_CLAIMED_ELSEWHERE} "
    "AND o.verifier_ref IN (SELECT value FROM json_each(:refs))",
    postgresql=f"SELECT {_AVAILABLE_COLUMNS} FROM booking_observations o WHERE o.account = :account AND {_NOT_CLAIMED_ELSEWHERE} "
    "AND o.verifier_ref = ANY(:refs)",
)
# All three for one group's loading in one round trip (a booking may come back from two branches:
# the caller keys them by unit).
AVAILABLE_FOR = sql(
    f"{AVAILABLE_BETWEEN.text} UNION ALL {AVAILABLE_TAGGED.text} UNION ALL {AVAILABLE_BY_REF.text}",
    postgresql=f"{AVAILABLE_BETWEEN.postgresql} UNION ALL {AVAILABLE_TAGGED.postgresql} UNION ALL {AVAILABLE_BY_REF.postgresql}",
)

UNITS_OF = sql(
    "SELECT uid, seat, attendees FROM booking_observations WHERE account = :account AND uid IN (SELECT value FROM json_each(:uids))",
    postgresql="SELECT uid, seat, attendees FROM booking_observations WHERE account = :account AND uid = ANY(:uids)",
)

OBSERVATION = sql(
    "SELECT uid, seat, booking_id, start_at, state, source, attendees FROM booking_observations "
    "WHERE account = :account AND uid = :uid ORDER BY seat"
)

# A seated booking's unit stored without a seat id ("" — a webhook without `attendeeSeatId`) is the
# seat whose attendee it names, once that seat is known by its id: the units of the bookings just
# written that have both seat units and an existing "" unit (rare: one index probe otherwise).
_SEATLESS_AND_SEATS = """
    AND EXISTS (SELECT 1 FROM booking_observations s WHERE s.account = o.account AND s.uid = o.uid AND s.seat <> '')
    AND EXISTS (SELECT 1 FROM booking_observations e WHERE e.account = o.account AND e.uid = o.uid AND e.seat = '' AND e.state = 'exists')
"""
SEATLESS_OF_SEATED = sql(
    f"""
    SELECT o.account, o.uid, o.seat, o.attendees, c.verification_seq, c.phase_key FROM booking_observations o
    LEFT JOIN booking_claims c ON c.account = o.account AND c.booking_uid = o.uid AND c.booking_seat = o.seat
    WHERE (o.account, o.uid) IN (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(:units))
    {_SEATLESS_AND_SEATS}
    """,
    # Each probe correlated to one (account, uid) only, so every plan, generic ones included, is
    # primary-key lookups (a join over the whole table grew with it).
    postgresql="""
    SELECT o.account, o.uid, o.seat, o.attendees, c.verification_seq, c.phase_key
    FROM unnest(CAST(:accounts AS text[]), CAST(:uids AS text[])) AS k(account, uid)
    CROSS JOIN LATERAL (SELECT * FROM booking_observations b WHERE b.account = k.account AND b.uid = k.uid
        AND EXISTS (SELECT 1 FROM booking_observations s WHERE s.account = k.account AND s.uid = k.uid AND s.seat <> '')
        AND EXISTS (SELECT 1 FROM booking_observations e
                    WHERE e.account = k.account AND e.uid = k.uid AND e.seat = '' AND e.state = 'exists')
        OFFSET 0) o
    LEFT JOIN LATERAL (SELECT verification_seq, phase_key FROM booking_claims
        WHERE account = o.account AND booking_uid = o.uid AND booking_seat = o.seat) c ON TRUE
    """,
)
# Merged into its seat: no longer a claimable unit of its own (a later seatless observation may
# bring it back to "exists"; it is merged again in the same write).
MERGE_SEATLESS = sql(
    "UPDATE booking_observations SET state = 'merged', updated_at = :now "
    "WHERE account = :account AND uid = :uid AND seat = '' AND state = 'exists'"
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
    phones: tuple[str, ...]
    appointment_tag: str | None
    phase_tag: str | None
    verifier_ref: str | None
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
        "phones": json.dumps(list(observation.phones)),
        "verifier_ref": observation.verifier_ref,
        "appointment_tag": observation.appointment_tag,
        "phase_tag": observation.phase_tag,
        "source": observation.source,
        "event_at": observation.event_at,
        "webhook_event_at": observation.event_at if observation.source == "webhook" else None,
        # A webhook's details are as new as their receipt (`now`); a poll's as their fetch.
        "observed_at": now if observation.source == "webhook" else observation.event_at,
        "now": now,
    }


async def upsert(tx: Tx, account: str, observations: Iterable[Observation], now: datetime) -> None:
    """Store observations: an older one never overrides a newer one of the same unit; a gone unit stays gone."""
    await upsert_many(tx, [(account, o) for o in observations], now)


async def upsert_many(tx: Tx, observations: Iterable[tuple[str, Observation]], now: datetime) -> None:
    """Observations of several accounts, (account, observation) pairs, in one statement batch."""
    pairs = list(observations)
    await tx.execute_many(UPSERT, [_row(o, account, now) for account, o in pairs])
    await _merge_seatless(tx, {(account, o.uid) for account, o in pairs}, now)


async def _merge_seatless(tx: Tx, bookings: set[tuple[str, str]], now: datetime) -> None:
    """One physical seat, one unit: fold a seated booking's "" unit into the seat whose attendee it names.

    A claim the "" unit holds moves along to that seat (a booking or seat satisfies one phase). A ""
    unit whose attendee has no known seat yet stays: it is that seat's only unit so far.
    """
    if not bookings:
        return
    keys = sorted(bookings)
    rows = await tx.fetch_all(SEATLESS_OF_SEATED, units=[list(k) for k in keys], accounts=[a for a, _ in keys], uids=[u for _, u in keys])
    units: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        units.setdefault((row["account"], row["uid"]), []).append(row)
    for (account, uid), found in sorted(units.items()):
        seatless = next(u for u in found if u["seat"] == "")
        people = set(json.loads(seatless["attendees"] or "[]"))
        seats = sorted({u["seat"] for u in found if u["seat"] and people & set(json.loads(u["attendees"] or "[]"))})
        if not seats:
            continue
        holder = seatless["verification_seq"]
        if holder is not None and (len(seats) != 1 or not await claim(tx, account, uid, seats[0], holder, seatless["phase_key"], now)):
            log.warning(
                "a claimed booking unit turned out to be a seat that cannot take its claim",
                extra={"event": "seat_claim_unmerged", "account": account, "booking_uid": uid, "seats": len(seats)},
            )
        await tx.execute(MERGE_SEATLESS, account=account, uid=uid, now=now)


def _available(row: dict[str, Any]) -> Available:
    row = dict(row)
    row["hosts"] = tuple(json.loads(row["hosts"] or "[]"))
    row["attendees"] = tuple(json.loads(row["attendees"] or "[]"))
    row["phones"] = tuple(json.loads(row["phones"] or "[]"))
    return Available(**row)


async def available_for(
    tx: Tx, account: str, windows: Sequence[tuple[datetime, datetime]], tags: Sequence[str], refs: Sequence[str]
) -> list[Available]:
    """Existing, unclaimed bookings starting inside the windows, and the bookings tagged for these appointments or created by the
    guard for these verifier_refs that no other appointment holds; one statement."""
    if not (windows or tags or refs):
        return []
    rows = await tx.fetch_all(
        AVAILABLE_FOR,
        account=account,
        windows=list(windows),
        los=[lo for lo, _ in windows],
        his=[hi for _, hi in windows],
        tags=list(tags),
        refs=list(refs),
    )
    return [_available(r) for r in rows]


async def units_of(tx: Tx, account: str, uids: Sequence[str]) -> dict[str, list[tuple[str, tuple[str, ...]]]]:
    """The stored units (seat, attendees) of each booking uid."""
    found: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    if uids:
        for row in await tx.fetch_all(UNITS_OF, account=account, uids=list(uids)):
            found.setdefault(row["uid"], []).append((row["seat"], tuple(json.loads(row["attendees"] or "[]"))))
    return found


async def find(tx: Tx, account: str, uid: str) -> list[dict[str, Any]]:
    """Every stored unit of one booking (its seats, for a seated one), attendees as a tuple."""
    rows = await tx.fetch_all(OBSERVATION, account=account, uid=uid)
    return [{**row, "attendees": tuple(json.loads(row["attendees"] or "[]"))} for row in rows]
