"""Verifications, their phases, and the state changes of both (each guarded by the expected state)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from service.store.connector import Query, Tx, sql


def _in(column: str, param: str) -> tuple[str, str]:
    """`column IN list` for SQLite (JSON text) and PostgreSQL (an array)."""
    return (f"{column} IN (SELECT value FROM json_each(:{param}))", f"{column} = ANY(:{param})")


def _sql_in(template: str, column: str, param: str) -> Query:
    lite, pg = _in(column, param)
    return sql(template.replace("{in}", lite), postgresql=template.replace("{in}", pg))


COLUMNS = """seq, id, account, appointment_id, service, sync_error, fingerprint, status, review_reason,
    resolution, resolved_via, resolved_by, note, window_start_at, window_end_at, created_at, updated_at, resolved_at,
    review_started_at,
    next_check_at, deadline_at, checks, complete_checks, failures, last_checked_at, last_check_error,
    lease_owner, lease_expires_at, verifier_ref"""
_PCOLS = """verification_seq, key, position, start_at, end_at, event_type_id, host_email, attendee_email, attendee_phone,
    staff_required, active, status, booking_uid, booking_seat, booking_id, booking_start_at, booking_source, booking_identity"""

INSERT = sql(
    """
    INSERT INTO verifications (id, account, appointment_id, service, sync_error, fingerprint, status,
        review_reason, resolved_via, window_start_at, window_end_at, created_at, updated_at,
        resolved_at, review_started_at, next_check_at, deadline_at, verifier_ref)
    VALUES (:id, :account, :appointment_id, :service, :sync_error, :fingerprint, :status,
        :review_reason, :resolved_via, :window_start_at, :window_end_at, :now, :now,
        :resolved_at, :resolved_at, :next_check_at, :deadline_at, :verifier_ref)
    RETURNING seq
    """
)
INSERT_PHASE = sql(
    """
    INSERT INTO phases (verification_seq, key, position, account, start_at, end_at, event_type_id,
        host_email, attendee_email, attendee_phone, staff_required, active, status)
    VALUES (:verification_seq, :key, :position, :account, :start_at, :end_at, :event_type_id,
        :host_email, :attendee_email, :attendee_phone, :staff_required, :active, :status)
    """
)
LATEST_FOR_APPOINTMENT = sql(
    # The platform's own records only: the guard's are keyed by their verifier_ref.
    f"SELECT {COLUMNS} FROM verifications WHERE account = :account AND appointment_id = :appointment_id AND verifier_ref IS NULL "
    "ORDER BY seq DESC LIMIT 1"
)
BY_REF = sql(f"SELECT {COLUMNS} FROM verifications WHERE account = :account AND verifier_ref = :verifier_ref")
BY_ID = sql(f"SELECT {COLUMNS} FROM verifications WHERE id = :id")
BY_SEQS = _sql_in(f"SELECT {COLUMNS} FROM verifications WHERE {{in}} ORDER BY seq", "seq", "seqs")
PHASES_OF = _sql_in(f"SELECT {_PCOLS} FROM phases WHERE {{in}} ORDER BY verification_seq, position", "verification_seq", "seqs")
CALLBACKS_OF = _sql_in(
    "SELECT verification_seq, state, attempts, last_error FROM outbox WHERE {in} ORDER BY seq", "verification_seq", "seqs"
)
STATUS_OF_IDS = _sql_in("SELECT id, status FROM verifications WHERE {in}", "id", "ids")

# The webhook path's probe: pending verifications with a staff-required phase in any of several
# time windows — one statement, one index range scan per window (CROSS JOIN: SQLite keeps the
# windows as the outer loop whatever its statistics say).
PENDING_NEAR = sql(
    """
    SELECT DISTINCT p.verification_seq FROM json_each(:windows) w CROSS JOIN phases p
    WHERE p.account = :account AND p.active
    AND p.start_at >= json_extract(w.value, '$[0]') AND p.start_at <= json_extract(w.value, '$[1]')
    """,
    # OFFSET 0 keeps PostgreSQL from flattening the per-window subquery into one scan of every
    # active phase of the account (6 ms at 12,500 pending instead of 0.2 ms).
    postgresql="""
    SELECT DISTINCT p.verification_seq
    FROM unnest(CAST(:los AS timestamptz[]), CAST(:his AS timestamptz[])) AS w(lo, hi)
    CROSS JOIN LATERAL (SELECT verification_seq FROM phases
        WHERE account = :account AND active AND start_at >= w.lo AND start_at <= w.hi OFFSET 0) p
    """,
)
# The same probe for a whole webhook batch, one statement: windows of several accounts, and the
# pending verifications the batch's bookings are tagged for ((account, appointment id) pairs).
PENDING_CONCERNED_MANY = sql(
    """
    SELECT json_extract(w.value, '$[0]') AS account, p.verification_seq
    FROM json_each(:windows) w CROSS JOIN phases p
    WHERE p.account = json_extract(w.value, '$[0]') AND p.active
    AND p.start_at >= json_extract(w.value, '$[1]') AND p.start_at <= json_extract(w.value, '$[2]')
    UNION
    SELECT v.account, v.seq FROM json_each(:tags) t CROSS JOIN verifications v
    WHERE v.account = json_extract(t.value, '$[0]') AND v.appointment_id = json_extract(t.value, '$[1]') AND v.status = 'pending'
    """,
    postgresql="""
    SELECT w.account, p.verification_seq
    FROM unnest(CAST(:accounts AS text[]), CAST(:los AS timestamptz[]), CAST(:his AS timestamptz[])) AS w(account, lo, hi)
    CROSS JOIN LATERAL (SELECT verification_seq FROM phases
        WHERE account = w.account AND active AND start_at >= w.lo AND start_at <= w.hi OFFSET 0) p
    UNION
    SELECT t.account, v.seq
    FROM unnest(CAST(:tag_accounts AS text[]), CAST(:tag_ids AS text[])) AS t(account, appointment_id)
    CROSS JOIN LATERAL (SELECT seq FROM verifications
        WHERE account = t.account AND appointment_id = t.appointment_id AND status = 'pending' OFFSET 0) v
    """,
)
PENDING_FOR_APPOINTMENTS = _sql_in(
    "SELECT seq FROM verifications WHERE account = :account AND status = 'pending' AND {in}", "appointment_id", "ids"
)

RESOLVE = sql(
    """
    UPDATE verifications SET status = :status, review_reason = COALESCE(:review_reason, review_reason), resolution = :resolution,
        resolved_via = :resolved_via, note = :note, resolved_at = :now, updated_at = :now,
        review_started_at = CASE WHEN :status = 'manual_review' THEN :now ELSE review_started_at END,
        next_check_at = NULL, lease_owner = NULL, lease_expires_at = NULL
    WHERE seq = :seq AND status = :expected
    """
)
SET_PHASE = sql(
    """
    UPDATE phases SET status = :status, active = :active, booking_uid = :booking_uid,
        booking_seat = :booking_seat, booking_id = :booking_id, booking_start_at = :booking_start_at,
        booking_source = :booking_source, booking_identity = :booking_identity
    WHERE verification_seq = :verification_seq AND key = :key
    """
)
DEACTIVATE_PHASES = sql("UPDATE phases SET active = FALSE WHERE verification_seq = :seq")

_LIST_FILTERS = {
    "account": "account = :account",
    "status": "status = :status",
    "appointment_id": "appointment_id = :appointment_id",
    "review_reason": "review_reason = :review_reason",
    "cursor": "seq < :cursor",
}
_LIST_CACHE: dict[tuple[str, ...], Query] = {}


def _list_query(filters: tuple[str, ...]) -> Query:
    query = _LIST_CACHE.get(filters)
    if query is None:
        where = " AND ".join(_LIST_FILTERS[name] for name in filters) or "TRUE"
        query = sql(f"SELECT {COLUMNS} FROM verifications WHERE {where} ORDER BY seq DESC LIMIT :limit")
        _LIST_CACHE[filters] = query
    return query


async def insert(tx: Tx, row: dict[str, Any], phases: list[dict[str, Any]]) -> int:
    seq = int(await tx.fetch_val(INSERT, **{"verifier_ref": None, **row}))
    await tx.execute_many(INSERT_PHASE, [{**phase, "verification_seq": seq} for phase in phases])
    return seq


async def latest_for_appointment(tx: Tx, account: str, appointment_id: str) -> dict[str, Any] | None:
    return await tx.fetch_one(LATEST_FOR_APPOINTMENT, account=account, appointment_id=appointment_id)


async def by_ref(tx: Tx, account: str, verifier_ref: str) -> dict[str, Any] | None:
    """The verification the guard recorded for one create."""
    return await tx.fetch_one(BY_REF, account=account, verifier_ref=verifier_ref)


async def by_id(tx: Tx, verification_id: str) -> dict[str, Any] | None:
    return await tx.fetch_one(BY_ID, id=verification_id)


async def by_seqs(tx: Tx, seqs: Sequence[int]) -> list[dict[str, Any]]:
    return await tx.fetch_all(BY_SEQS, seqs=list(seqs)) if seqs else []


async def phases_of(tx: Tx, seqs: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    grouped: dict[int, list[dict[str, Any]]] = {seq: [] for seq in seqs}
    if seqs:
        for row in await tx.fetch_all(PHASES_OF, seqs=list(seqs)):
            grouped[row["verification_seq"]].append(row)
    return grouped


async def callbacks_of(tx: Tx, seqs: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The latest outbox row of each verification."""
    latest: dict[int, dict[str, Any]] = {}
    if seqs:
        for row in await tx.fetch_all(CALLBACKS_OF, seqs=list(seqs)):
            latest[row["verification_seq"]] = row
    return latest


async def statuses(tx: Tx, ids: Sequence[str]) -> dict[str, str]:
    if not ids:
        return {}
    return {row["id"]: row["status"] for row in await tx.fetch_all(STATUS_OF_IDS, ids=list(ids))}


async def pending_near(tx: Tx, account: str, windows: Sequence[tuple[datetime, datetime]]) -> set[int]:
    """Pending verifications of `account` with a staff-required phase starting inside any window."""
    if not windows:
        return set()
    rows = await tx.fetch_all(
        PENDING_NEAR, account=account, windows=list(windows), los=[lo for lo, _ in windows], his=[hi for _, hi in windows]
    )
    return {row["verification_seq"] for row in rows}


async def pending_concerned_many(
    tx: Tx, windows: Sequence[tuple[str, datetime, datetime]], tags: Sequence[tuple[str, str]] = ()
) -> dict[str, set[int]]:
    """Each account's pending verifications with a phase inside one of its (account, lo, hi) windows,
    or with an appointment id among its (account, appointment id) tags."""
    found: dict[str, set[int]] = {}
    if windows or tags:
        rows = await tx.fetch_all(
            PENDING_CONCERNED_MANY,
            windows=[list(w) for w in windows],
            accounts=[a for a, _, _ in windows],
            los=[lo for _, lo, _ in windows],
            his=[hi for _, _, hi in windows],
            tags=[list(t) for t in tags],
            tag_accounts=[a for a, _ in tags],
            tag_ids=[t for _, t in tags],
        )
        for row in rows:
            found.setdefault(row["account"], set()).add(row["verification_seq"])
    return found


async def pending_for_appointments(tx: Tx, account: str, appointment_ids: Sequence[str]) -> set[int]:
    if not appointment_ids:
        return set()
    rows = await tx.fetch_all(PENDING_FOR_APPOINTMENTS, account=account, ids=list(appointment_ids))
    return {row["seq"] for row in rows}


async def resolve(
    tx: Tx,
    seq: int,
    *,
    expected: str,
    status: str,
    now: datetime,
    resolved_via: str,
    review_reason: str | None = None,
    resolution: str | None = None,
    note: str | None = None,
) -> bool:
    """Move to a final state if still in `expected`; False when someone else got there first."""
    changed = await tx.execute(
        RESOLVE,
        seq=seq,
        expected=expected,
        status=status,
        review_reason=review_reason,
        resolution=resolution,
        resolved_via=resolved_via,
        note=note,
        now=now,
    )
    if changed:
        await tx.execute(DEACTIVATE_PHASES, seq=seq)
    return changed == 1


async def set_phases(tx: Tx, rows: list[dict[str, Any]]) -> None:
    await tx.execute_many(SET_PHASE, rows)


async def list_page(tx: Tx, *, limit: int, **filters: Any) -> list[dict[str, Any]]:
    given = tuple(name for name in _LIST_FILTERS if filters.get(name) is not None)
    return await tx.fetch_all(_list_query(given), limit=limit, **{name: filters[name] for name in given})


RESOLVE_MANY = _sql_in(
    """
    UPDATE verifications SET status = :status, review_reason = COALESCE(:review_reason, review_reason), resolution = :resolution,
        resolved_via = :resolved_via, resolved_by = :resolved_by, note = :note, resolved_at = :now, updated_at = :now,
        review_started_at = CASE WHEN :status = 'manual_review' THEN :now ELSE review_started_at END,
        next_check_at = NULL, lease_owner = NULL, lease_expires_at = NULL
    WHERE {in} AND status = :expected
    RETURNING seq
    """,
    "seq",
    "seqs",
)
DEACTIVATE_MANY = _sql_in("UPDATE phases SET active = FALSE WHERE {in}", "verification_seq", "seqs")


async def resolve_many(
    tx: Tx,
    seqs: Sequence[int],
    *,
    expected: str,
    status: str,
    now: datetime,
    resolved_via: str,
    review_reason: str | None = None,
    resolution: str | None = None,
    note: str | None = None,
    resolved_by: str | None = None,
) -> set[int]:
    """`resolve` for several verifications that reach the same state; answer the ones that moved."""
    if not seqs:
        return set()
    rows = await tx.fetch_all(
        RESOLVE_MANY,
        seqs=list(seqs),
        expected=expected,
        status=status,
        review_reason=review_reason,
        resolution=resolution,
        resolved_via=resolved_via,
        resolved_by=resolved_by,
        note=note,
        now=now,
    )
    changed = {int(row["seq"]) for row in rows}
    if changed:
        await tx.execute(DEACTIVATE_MANY, seqs=sorted(changed))
    return changed
