"""The hot statements' plans on a database with a long history, on SQLite and PostgreSQL.

The service keeps every booking it has seen and every verification it has decided, so a statement
that reads "everything of this account" gets slower every day. Each case below names a statement,
its parameters, and how every table it reads must be read: a `Range` on a time column (the window
the statement is about) or a `Key` lookup. A full scan of a history table, or an index search on the
account alone, fails. Plans are checked as the planner really makes them: SQLite without statistics
and after the service's own ANALYZE; PostgreSQL after ANALYZE (sequential scans allowed), both with
the parameters' values (custom plan) and as a prepared statement may settle on after a few
executions (generic plan).

To cover a new statement, add a `Case` to CASES. At the end: the service keeps SQLite's statistics
current (after migrating, and hourly).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from service.settings import normalize_database_url
from service.store.connector import Database, sql
from service.store.migrations import migrate
from service.store.queries import accounts as account_store
from service.store.queries import checks as check_store
from service.store.queries import claims as claim_store
from service.store.queries import console as console_store
from service.store.queries import events as event_store
from service.store.queries import observations as observation_store
from service.store.queries import outbox as outbox_store
from service.store.queries import verifications as verification_store

from .conftest import PG_SKIP_REASON, PG_URL, _admin_execute, _pg_template, _with_database
from .query_plans import Case, Key, Range, Via, pg_plan, pg_reads, sqlite_reads, verdict

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
ACCOUNTS = [f"acct-{n}" for n in range(4)]
BIG = ACCOUNTS[0]  # three quarters of the history is this account's
OBSERVATIONS = 40_000
VERIFICATIONS = 12_000
PENDING = 1_000
WEBHOOKS = 10_000


def _windows(*starts: datetime, minutes: int = 5) -> list[tuple[datetime, datetime]]:
    return [(s - timedelta(minutes=minutes), s + timedelta(minutes=minutes)) for s in starts]


SOON = [NOW + timedelta(days=2, hours=h) for h in (1, 3, 6)]
WINDOWS = _windows(*SOON)
TS = NOW
UNCLAIMED = (Key(("account", "booking_uid", "booking_seat")),)
PHASE_ROW = {
    "verification_seq": 1,
    "key": "A",
    "position": 0,
    "account": BIG,
    "start_at": SOON[0],
    "end_at": None,
    "event_type_id": 1,
    "host_email": None,
    "attendee_email": None,
    "attendee_phone": None,
    "staff_required": True,
    "active": True,
    "status": "pending",
}
VERIFICATION_ROW = {
    "id": "v-new",
    "account": BIG,
    "appointment_id": "a-new",
    "service": None,
    "sync_error": None,
    "fingerprint": "f",
    "status": "pending",
    "review_reason": None,
    "resolved_via": None,
    "window_start_at": SOON[0],
    "window_end_at": SOON[0],
    "now": TS,
    "resolved_at": None,
    "next_check_at": TS,
    "deadline_at": TS,
    "verifier_ref": None,
}
OBSERVATION_ROW = {
    "account": BIG,
    "uid": "u-new",
    "seat": "",
    "booking_id": 1,
    "start_at": SOON[0],
    "end_at": SOON[0],
    "state": "exists",
    "calcom_status": "accepted",
    "event_type_id": 1,
    "hosts": "[]",
    "attendees": "[]",
    "phones": "[]",
    "appointment_tag": None,
    "phase_tag": None,
    "verifier_ref": None,
    "source": "webhook",
    "event_at": TS,
    "webhook_event_at": TS,
    "observed_at": TS,
    "now": TS,
}
EVENT_ROW = {
    f"{column}_0": value
    for column, value in {
        "account": BIG,
        "body_sha256": "x",
        "trigger_event": "BOOKING_CREATED",
        "booking_uid": "u",
        "event_created_at": TS,
        "received_at": TS,
        "body": "{}",
        "unmatched": 1,
    }.items()
}

CASES = [
    # The webhook path (service/ingest.py).
    Case("insert_events", lambda: event_store._insert_events_query(1), EVENT_ROW),
    # Matching after the store: the claim of stored events by seq, and the sweep of those left unmatched.
    Case("claim_unmatched", lambda: event_store.CLAIM_UNMATCHED, {"seqs": [5, 6]}, {"webhook_events": (Key(("seq",)),)}),
    # An intake's look at its account's unmatched events: the partial index, never the account's history.
    Case(
        "unmatched_of",
        lambda: event_store.UNMATCHED_OF,
        {"account": BIG, "limit": 1000},
        {"webhook_events": (Via("webhook_events_unmatched"),)},
    ),
    Case("unmatched", lambda: event_store.UNMATCHED, {"after": 0, "before": TS, "limit": 256}, {"webhook_events": (Range("seq"),)}),
    Case(
        "units_of",
        lambda: observation_store.UNITS_OF,
        {"account": BIG, "uids": ["u-1", "u-2"]},
        {"booking_observations": (Key(("account", "uid")),)},
    ),
    Case("upsert_many", lambda: observation_store.UPSERT, OBSERVATION_ROW),
    Case(
        "pending_concerned_many",
        lambda: verification_store.PENDING_CONCERNED_MANY,
        {
            "windows": [[a, lo, hi] for a in ACCOUNTS[:2] for lo, hi in WINDOWS],
            "accounts": [a for a in ACCOUNTS[:2] for _ in WINDOWS],
            "los": [lo for _ in ACCOUNTS[:2] for lo, _ in WINDOWS],
            "his": [hi for _ in ACCOUNTS[:2] for _, hi in WINDOWS],
            "tags": [[a, t] for a in ACCOUNTS[:2] for t in ("a-1", "a-2")],
            "tag_accounts": [a for a in ACCOUNTS[:2] for _ in ("a-1", "a-2")],
            "tag_ids": [t for _ in ACCOUNTS[:2] for t in ("a-1", "a-2")],
        },
        {"phases": (Range("start_at"),), "verifications": (Key(("account", "appointment_id")),)},
    ),
    # The intake path (service/intake.py) and the settling every path shares (service/verdicts.py).
    Case(
        "latest_for_appointment",
        lambda: verification_store.LATEST_FOR_APPOINTMENT,
        {"account": BIG, "appointment_id": "a-77"},
        {"verifications": (Key(("account", "appointment_id")),)},
    ),
    # SQLite's foreign-key check looks up rows naming the new verification (PostgreSQL's is a trigger).
    Case(
        "insert",
        lambda: verification_store.INSERT,
        VERIFICATION_ROW,
        {table: (Key(("verification_seq",)),) for table in ("phases", "booking_claims", "outbox")},
    ),
    Case("insert_phase", lambda: verification_store.INSERT_PHASE, PHASE_ROW),
    Case(
        "pending_near",
        lambda: verification_store.PENDING_NEAR,
        {"account": BIG, "windows": WINDOWS, "los": [lo for lo, _ in WINDOWS], "his": [hi for _, hi in WINDOWS]},
        {"phases": (Range("start_at"),)},
    ),
    Case(
        "pending_for_appointments",
        lambda: verification_store.PENDING_FOR_APPOINTMENTS,
        {"account": BIG, "ids": ["a-1", "a-2"]},
        {"verifications": (Key(("account", "appointment_id")),)},
    ),
    Case(
        "available_between",
        lambda: observation_store.AVAILABLE_BETWEEN,
        {"account": BIG, "windows": WINDOWS, "los": [lo for lo, _ in WINDOWS], "his": [hi for _, hi in WINDOWS]},
        {"booking_observations": (Range("start_at"),), "booking_claims": UNCLAIMED},
    ),
    Case(
        "available_tagged",
        lambda: observation_store.AVAILABLE_TAGGED,
        {"account": BIG, "tags": ["a-1", "a-2"]},
        {"booking_observations": (Key(("account", "appointment_tag")),), "booking_claims": UNCLAIMED, "verifications": (Key(("seq",)),)},
    ),
    Case(
        "available_for",
        lambda: observation_store.AVAILABLE_FOR,
        {
            "account": BIG,
            "windows": WINDOWS,
            "los": [lo for lo, _ in WINDOWS],
            "his": [hi for _, hi in WINDOWS],
            "tags": ["a-1", "a-2"],
            "refs": ["vr_1", "vr_2"],
        },
        {
            "booking_observations": (Range("start_at"), Key(("account", "appointment_tag")), Key(("account", "verifier_ref"))),
            "booking_claims": UNCLAIMED,
            "verifications": (Key(("seq",)),),
        },
    ),
    Case(
        "available_by_ref",
        lambda: observation_store.AVAILABLE_BY_REF,
        {"account": BIG, "refs": ["vr_1", "vr_2"]},
        {"booking_observations": (Key(("account", "verifier_ref")),), "booking_claims": UNCLAIMED, "verifications": (Key(("seq",)),)},
    ),
    Case(
        "by_ref",
        lambda: verification_store.BY_REF,
        {"account": BIG, "verifier_ref": "vr_1"},
        {"verifications": (Key(("account", "verifier_ref")),)},
    ),
    Case(
        "claim", lambda: claim_store.CLAIM, {"account": BIG, "uid": "u-1", "seat": "", "verification_seq": 1, "phase_key": "A", "now": TS}
    ),
    Case("claim_owner", lambda: claim_store.CLAIM_OWNER, {"account": BIG, "uid": "u-1", "seat": ""}, {"booking_claims": UNCLAIMED}),
    Case("by_seqs", lambda: verification_store.BY_SEQS, {"seqs": [5, 6, 7]}, {"verifications": (Key(("seq",)),)}),
    Case("phases_of", lambda: verification_store.PHASES_OF, {"seqs": [5, 6, 7]}, {"phases": (Key(("verification_seq",)),)}),
    Case("callbacks_of", lambda: verification_store.CALLBACKS_OF, {"seqs": [5, 6, 7]}, {"outbox": (Key(("verification_seq",)),)}),
    Case(
        "resolve",
        lambda: verification_store.RESOLVE,
        {
            "seq": 5,
            "expected": "pending",
            "status": "verified",
            "review_reason": None,
            "resolution": None,
            "resolved_via": "webhook",
            "note": None,
            "now": TS,
        },
        {"verifications": (Key(("seq",)),)},
    ),
    Case("deactivate_phases", lambda: verification_store.DEACTIVATE_PHASES, {"seq": 5}, {"phases": (Key(("verification_seq",)),)}),
    Case(
        "set_phase",
        lambda: verification_store.SET_PHASE,
        {
            "verification_seq": 5,
            "key": "A",
            "status": "matched",
            "active": False,
            "booking_uid": "u-1",
            "booking_seat": "",
            "booking_id": 1,
            "booking_start_at": TS,
            "booking_source": "webhook",
            "booking_identity": "person",
        },
        {"phases": (Key(("verification_seq", "key")),)},
    ),
    Case(
        "outbox_add",
        lambda: outbox_store.INSERT,
        {"id": "e-new", "verification_seq": 5, "account": BIG, "event_type": "verification.resolved", "payload": "{}", "now": TS},
    ),
    # A group's verdicts written together (service/apply.py) and the seat merge of the webhook path.
    Case(
        "claim_many",
        lambda: claim_store.CLAIM_MANY,
        {
            "account": BIG,
            "now": TS,
            "claims": [["u-1", "", 5, "A"], ["u-2", "", 6, "A"]],
            "uids": ["u-1", "u-2"],
            "seats": ["", ""],
            "seqs": [5, 6],
            "keys": ["A", "A"],
        },
    ),
    Case(
        "owners_of",
        lambda: claim_store.OWNERS_OF,
        {"account": BIG, "uids": ["u-1", "u-2"]},
        {"booking_claims": (Key(("account", "booking_uid")),)},
    ),
    Case("claims_of", lambda: claim_store.CLAIMS_OF, {"verification_seq": 5}, {"booking_claims": (Key(("verification_seq",)),)}),
    Case(
        "release",
        lambda: claim_store.RELEASE,
        {"account": BIG, "verification_seq": 5, "phase_key": "A"},
        {"booking_claims": (Key(("verification_seq",)),)},
    ),
    Case(
        "resolve_many",
        lambda: verification_store.RESOLVE_MANY,
        {
            "seqs": [5, 6],
            "expected": "pending",
            "status": "verified",
            "review_reason": None,
            "resolution": None,
            "resolved_via": "poll",
            "note": None,
            "resolved_by": None,
            "now": TS,
        },
        {"verifications": (Key(("seq",)),)},
    ),
    Case("deactivate_many", lambda: verification_store.DEACTIVATE_MANY, {"seqs": [5, 6]}, {"phases": (Key(("verification_seq",)),)}),
    Case(
        "seatless_of_seated",
        lambda: observation_store.SEATLESS_OF_SEATED,
        {"units": [[BIG, "u-1"], [BIG, "u-2"]], "accounts": [BIG, BIG], "uids": ["u-1", "u-2"]},
        {"booking_observations": (Key(("account", "uid")),), "booking_claims": UNCLAIMED},
    ),
    # The poll path (service/poller.py, service/callbacks.py).
    Case(
        "claim_for_poll",
        lambda: account_store.CLAIM_FOR_POLL,
        {"owner": "p", "now": TS, "expires": TS},
        {"verifications": (Range("next_check_at"),)},
    ),
    Case(
        "claim_due",
        lambda: check_store.CLAIM_DUE,
        {"account": BIG, "owner": "p", "now": TS, "expires": TS, "limit": 50},
        {"verifications": (Range("next_check_at"), Key(("seq",)))},
    ),
    Case(
        "record_check",
        lambda: check_store.RECORD_CHECK,
        {"seq": 5, "owner": "p", "now": TS, "calls": 1, "complete": 1, "failures": 0, "error": None, "next_check_at": TS},
        {"verifications": (Key(("seq",)),)},
    ),
    Case(
        "outbox_claim_due",
        lambda: outbox_store.CLAIM_DUE,
        {"owner": "p", "now": TS, "expires": TS, "limit": 50},
        {"outbox": (Range("next_attempt_at"), Key(("seq",)))},
    ),
    # The operator console (service/app/console.py): the evidence and the dashboard read a window or a key.
    # The review queue (every account's, one account's) and an account's last webhook: LIMIT reads of an index in order.
    Case(
        "console_queue",
        lambda: console_store.QUEUE,
        {"reason": None, "older_than": NOW, "limit": 100},
        {"verifications": (Via("verifications_review"), Key(("status",)))},
    ),
    Case(
        "console_queue_of_account",
        lambda: console_store.QUEUE_OF_ACCOUNT,
        {"account": ACCOUNTS[1], "reason": "no_booking_found", "older_than": NOW, "limit": 100},
        {"verifications": (Via("verifications_review_account"),)},
    ),
    Case("console_last_webhook", lambda: console_store.LAST_WEBHOOK, {"account": ACCOUNTS[1]}, {"webhook_events": (Range("account"),)}),
    Case(
        "console_last_webhook_of_a_silent_account",
        lambda: console_store.LAST_WEBHOOK,
        {"account": "acct-silent"},
        {"webhook_events": (Range("account"),)},
    ),
    Case(
        "console_history_created",
        lambda: console_store.HISTORY_CREATED,
        {"since": NOW - timedelta(days=14), "limit": 1000},
        {"verifications": (Range("created_at"),)},
    ),
    Case(
        "console_evidence_near",
        lambda: console_store.EVIDENCE_NEAR,
        {"account": BIG, "lo": SOON[0], "hi": SOON[0], "limit": 200},
        {"booking_observations": (Range("start_at"),), "booking_claims": UNCLAIMED, "verifications": (Key(("seq",)),)},
    ),
    Case(
        "console_evidence_tagged",
        lambda: console_store.EVIDENCE_TAGGED,
        {"account": BIG, "tag": "a-1", "limit": 200},
        {"booking_observations": (Key(("account", "appointment_tag")),), "booking_claims": UNCLAIMED, "verifications": (Key(("seq",)),)},
    ),
    # Hourly housekeeping: forgetting old webhook bodies reads only the old ones.
    Case(
        "prune_events",
        lambda: event_store.PRUNE_EVENTS,
        {"before": NOW - timedelta(days=30), "limit": 5000},
        {"webhook_events": (Range("received_at"), Key(("seq",)))},
    ),
]


# --- a database with a long history ------------------------------------------------------------

_OBSERVE = sql(
    """
    INSERT INTO booking_observations (account, uid, seat, booking_id, start_at, end_at, state, calcom_status, event_type_id,
        hosts, attendees, appointment_tag, phase_tag, verifier_ref, source, event_at, first_seen_at, updated_at)
    VALUES (:account, :uid, '', :booking_id, :start_at, :end_at, :state, 'accepted', 100, '["anna@salon.example"]',
        :attendees, :tag, NULL, :ref, 'webhook', :start_at, :start_at, :start_at)
    """
)
_CLAIM = sql(
    "INSERT INTO booking_claims (account, booking_uid, booking_seat, verification_seq, phase_key, claimed_at) "
    "VALUES (:account, :uid, '', :seq, 'A', :at)"
)
_VERIFY = sql(
    """
    INSERT INTO verifications (seq, id, account, appointment_id, fingerprint, status, review_reason, resolved_via,
        window_start_at, window_end_at, created_at, updated_at, resolved_at, next_check_at, deadline_at, checks, complete_checks)
    VALUES (:seq, :id, :account, :appointment_id, 'f', :status, NULL, :via, :start_at, :end_at, :created_at, :created_at,
        :resolved_at, :next_check_at, :deadline_at, 1, 1)
    """
)
_PHASE = sql(
    """
    INSERT INTO phases (verification_seq, key, position, account, start_at, end_at, event_type_id, host_email, attendee_email,
        staff_required, active, status, booking_uid)
    VALUES (:seq, :key, :position, :account, :start_at, :end_at, 100, 'anna@salon.example', NULL, :required, :active, :status, :uid)
    """
)
_OUTBOX = sql(
    """
    INSERT INTO outbox (seq, id, verification_seq, account, event_type, payload, state, attempts, created_at, next_attempt_at, delivered_at)
    VALUES (:seq, :id, :seq, :account, 'verification.resolved', '{}', :state, 1, :at, :next_at, :delivered_at)
    """
)
_EVENT = sql(
    """
    INSERT INTO webhook_events (account, body_sha256, trigger_event, booking_uid, event_created_at, received_at, body)
    VALUES (:account, :sha, 'BOOKING_CREATED', :uid, :at, :at, '{}')
    """
)


def _account_of(n: int) -> str:
    """Three quarters of everything belongs to the big account, the rest is spread over the others."""
    return BIG if n % 4 else ACCOUNTS[1 + n // 4 % (len(ACCOUNTS) - 1)]


async def _seed(db: Database) -> None:
    """Three years of observations, decided verifications with claims and delivered callbacks, a
    thousand pending ones in the coming weeks, and a month of webhook bodies."""
    first = NOW - timedelta(days=3 * 365)
    step = (NOW + timedelta(days=60) - first) / OBSERVATIONS
    async with db.transaction() as tx:
        for n, account in enumerate(ACCOUNTS):
            await account_store.upsert(
                tx,
                account,
                {
                    "calcom_api_key": f"cal_live_plans_{n}",
                    "webhook_secret": f"whk-plans-{n}",
                    "calcom_api_base": None,
                    "callback_url": None,
                    "callback_secret": None,
                    "match_tolerance_seconds": 300,
                    "enabled": True,
                },
                first,
            )
        observations = []
        for n in range(OBSERVATIONS):
            start = first + n * step
            observations.append(
                {
                    "account": _account_of(n),
                    "uid": f"u-{n}",
                    "booking_id": n,
                    "start_at": start,
                    "end_at": start + timedelta(minutes=30),
                    "state": "gone" if n % 9 == 0 else "exists",
                    "attendees": json.dumps([f"kunde-{n}@example.com"]),
                    "tag": f"a-{n}" if n % 5 == 0 else None,
                    "ref": f"vr_{n}" if n % 3 == 0 else None,
                }
            )
        await tx.execute_many(_OBSERVE, observations)
        verifications, phases, claims, callbacks = [], [], [], []
        decided = VERIFICATIONS - PENDING
        for seq in range(1, VERIFICATIONS + 1):
            n = (seq - 1) * (OBSERVATIONS - 2_000) // decided if seq <= decided else None
            pending = n is None
            start = first + n * step if n is not None else NOW + timedelta(days=1) + (seq - decided) * timedelta(minutes=50)
            account = _account_of(n if n is not None else seq)
            verifications.append(
                {
                    "seq": seq,
                    "id": f"v-{seq}",
                    "account": account,
                    "appointment_id": f"a-{seq}",
                    "status": "pending" if pending else ("verified" if seq % 6 else "manual_review"),
                    "via": None if pending else "webhook",
                    "start_at": start,
                    "end_at": start + timedelta(minutes=90),
                    "created_at": start - timedelta(days=1),
                    "resolved_at": None if pending else start - timedelta(hours=20),
                    "next_check_at": NOW + (seq % 120 - 20) * timedelta(seconds=30) if pending else None,
                    "deadline_at": start - timedelta(hours=12),
                }
            )
            for position, key in enumerate("AB" if seq % 4 == 3 else "A"):
                phases.append(
                    {
                        "seq": seq,
                        "key": key,
                        "position": position,
                        "account": account,
                        "start_at": start + position * timedelta(minutes=60),
                        "end_at": start + timedelta(minutes=90),
                        "required": key == "A",
                        "active": pending and key == "A",
                        "status": "pending" if pending else "matched",
                        "uid": None if pending else f"u-{n}",
                    }
                )
            if not pending and account == _account_of(n) and seq % 6:
                claims.append({"account": account, "uid": f"u-{n}", "seq": seq, "at": start})
            if not pending and seq % 3:
                late = seq > decided - 40
                callbacks.append(
                    {
                        "seq": seq,
                        "id": f"e-{seq}",
                        "account": account,
                        "state": "pending" if late else "delivered",
                        "at": start,
                        "next_at": NOW + (seq % 7 - 3) * timedelta(minutes=1) if late else None,
                        "delivered_at": None if late else start,
                    }
                )
        await tx.execute_many(_VERIFY, verifications)
        await tx.execute_many(_PHASE, phases)
        await tx.execute_many(_CLAIM, claims)
        await tx.execute_many(_OUTBOX, callbacks)
        await tx.execute_many(
            _EVENT,
            [
                {"account": _account_of(n), "sha": f"{n:064x}", "uid": f"u-{n}", "at": NOW - timedelta(days=35) + n * timedelta(minutes=5)}
                for n in range(WEBHOOKS)
            ],
        )
        if db.dialect == "postgresql":
            for table in ("verifications", "outbox"):
                await tx.execute(sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'seq'), (SELECT MAX(seq) FROM {table}))"))


async def _build(url: str, *, seed: bool) -> None:
    db = Database(url)
    await db.connect()
    try:
        if seed:
            await migrate(db)
            await _seed(db)
        else:
            await db.optimize(full=True)
    finally:
        await db.disconnect()


@pytest.fixture(scope="module")
def sqlite_history(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The same history twice: as migrated (no statistics for its tables), and after the service's own ANALYZE."""
    folder = tmp_path_factory.mktemp("plans")
    fresh, analyzed = folder / "fresh.sqlite3", folder / "analyzed.sqlite3"
    asyncio.run(_build(f"sqlite+aiosqlite:///{fresh}", seed=True))
    shutil.copyfile(fresh, analyzed)
    asyncio.run(_build(f"sqlite+aiosqlite:///{analyzed}", seed=False))
    return {"no statistics": f"sqlite+aiosqlite:///{fresh}", "analyzed": f"sqlite+aiosqlite:///{analyzed}"}


@pytest.fixture(scope="module")
def postgresql_history() -> Iterator[str]:
    if not PG_URL:
        pytest.skip(PG_SKIP_REASON)

    async def create() -> str:
        name = f"verifier_plans_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        await _admin_execute(f"CREATE DATABASE {name} TEMPLATE {await _pg_template()}")
        url = normalize_database_url(_with_database(PG_URL or "", name))
        db = Database(url)
        await db.connect()
        try:
            await _seed(db)
            async with db.transaction() as tx:
                await tx.execute(sql("ANALYZE"))  # what autovacuum does on its own once tables have grown
        finally:
            await db.disconnect()
        return name

    name = asyncio.run(create())
    yield normalize_database_url(_with_database(PG_URL, name))
    asyncio.run(_admin_execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


# --- the checks ------------------------------------------------------------------------------------


def test_cases_cover_every_parameter() -> None:
    """A case whose parameters do not fit its statement would test nothing (or fail for the wrong reason)."""
    for case in CASES:
        for dialect in ("sqlite", "postgresql"):
            _, names = case.query().compiled(dialect)
            assert set(names) <= set(case.params), f"{case.name} ({dialect}) lacks {set(names) - set(case.params)}"


@pytest.mark.parametrize("state", ["no statistics", "analyzed"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
async def test_sqlite_plan_reads_only_the_window(sqlite_history: dict[str, str], state: str, case: Case) -> None:
    db = Database(sqlite_history[state])
    await db.connect()
    try:
        reads, plan = await sqlite_reads(db, case)
    finally:
        await db.disconnect()
    assert not verdict(case, reads), f"{case.name}: {verdict(case, reads)}\nplan:\n{plan}"


@pytest.mark.parametrize("plan_kind", ["custom", "generic"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
async def test_postgresql_plan_reads_only_the_window(postgresql_history: str, plan_kind: str, case: Case) -> None:
    db = Database(postgresql_history)
    await db.connect()
    try:
        plan = await pg_plan(db, case, generic=plan_kind == "generic")
    finally:
        await db.disconnect()
    reads = pg_reads(plan)
    assert not verdict(case, reads), f"{case.name}: {verdict(case, reads)}\nplan: {json.dumps(plan, indent=1)[:6000]}"


# --- the checks reject what they are there to reject ------------------------------------------------

# AVAILABLE_BETWEEN as it was: a plain JOIN, whose order SQLite chose by itself (and, without
# statistics, chose to walk every observation of the account).
_JOIN_LEFT_TO_SQLITE = sql(
    """
    SELECT o.uid FROM json_each(:windows) w JOIN booking_observations o
    ON o.account = :account AND o.start_at >= json_extract(w.value, '$[0]') AND o.start_at <= json_extract(w.value, '$[1]')
    WHERE o.state = 'exists'
    """
)
# The window as a mere filter: an index search on the account alone, i.e. its whole history.
_WINDOW_AS_FILTER = sql("SELECT uid FROM booking_observations WHERE account = :account AND CAST(start_at AS TEXT) >= :lo")


async def test_sqlite_check_rejects_the_join_order_sqlite_chose_before(sqlite_history: dict[str, str]) -> None:
    case = Case(
        "join left to SQLite",
        lambda: _JOIN_LEFT_TO_SQLITE,
        {"account": BIG, "windows": WINDOWS},
        {"booking_observations": (Range("start_at"),)},
    )
    db = Database(sqlite_history["no statistics"])
    await db.connect()
    try:
        reads, plan = await sqlite_reads(db, case)
    finally:
        await db.disconnect()
    assert any("booking_observations neither by Range" in problem for problem in verdict(case, reads)), plan


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
async def test_checks_reject_a_window_applied_as_a_filter(request: pytest.FixtureRequest, dialect: str) -> None:
    case = Case(
        "window as a filter",
        lambda: _WINDOW_AS_FILTER,
        {"account": BIG, "lo": "2026-12-03"},
        {"booking_observations": (Range("start_at"),)},
    )
    if dialect == "sqlite":
        db = Database(request.getfixturevalue("sqlite_history")["analyzed"])
        await db.connect()
        try:
            reads, _ = await sqlite_reads(db, case)
        finally:
            await db.disconnect()
    else:
        db = Database(request.getfixturevalue("postgresql_history"))
        await db.connect()
        try:
            reads = pg_reads(await pg_plan(db, case, generic=False))
        finally:
            await db.disconnect()
    assert verdict(case, reads), [r.text for r in reads]


# --- keeping SQLite's statistics current -------------------------------------------------------------


async def test_migrating_leaves_planner_statistics_behind(tmp_path: Path) -> None:
    """New indexes must not wait an hour for statistics: migrate() analyzes (SQLite)."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'v.sqlite3'}")
    await db.connect()
    try:
        await migrate(db)
        async with db.read() as tx:
            assert await tx.fetch_all(sql("SELECT tbl FROM sqlite_stat1"))
    finally:
        await db.disconnect()


async def test_optimize_analyzes_the_tables_the_writer_has_been_using(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'v.sqlite3'}")
    await db.connect()
    try:
        await migrate(db)
        async with db.transaction() as tx:
            await tx.execute_many(
                _OBSERVE,
                [
                    {
                        "account": BIG,
                        "uid": f"u-{n}",
                        "booking_id": n,
                        "start_at": NOW + n * timedelta(minutes=10),
                        "end_at": None,
                        "state": "exists",
                        "attendees": "[]",
                        "tag": None,
                        "ref": None,
                    }
                    for n in range(2_000)
                ],
            )
            await observation_store.available_for(tx, BIG, WINDOWS, [], [])
        stats = sql("SELECT idx FROM sqlite_stat1 WHERE tbl = 'booking_observations'")
        async with db.read() as tx:
            assert not await tx.fetch_all(stats)
        await db.optimize()  # what the hourly task runs
        async with db.read() as tx:
            assert {r["idx"] for r in await tx.fetch_all(stats)} >= {"booking_observations_start"}
    finally:
        await db.disconnect()
