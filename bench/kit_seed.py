"""Benchmark accounts and pending verifications, filled with the service's own store functions."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

from kit_base import *

# --- accounts and pending verifications -------------------------------------------------------------


def account_id(a: int) -> str:
    return f"bench-{a}"


def webhook_secret(a: int) -> str:
    return f"bench-webhook-secret-{a}-4f1c9a"


def api_key(a: int) -> str:
    return f"cal_live_bench_{a}_8d2e7b"


def phase_start(k: int) -> dt.datetime:
    return T0 + k * GRID


def host(k: int) -> str:
    return f"staff{k % 5}@salon.example"


def attendee(a: int, k: int) -> str:
    return f"kunde-{a}-{k}@example.com"


def verification_phases(a: int, k: int) -> list[dict[str, Any]]:
    """Every fourth one a Dauerwelle (A–D, A and C staff-required), the rest a one-phase haircut."""
    s = phase_start(k)
    m = dt.timedelta(minutes=1)
    common = {"host_email": host(k), "attendee_email": attendee(a, k)}
    if k % 4 == 3:
        return [
            {"key": "A", "start": s, "end": s + 30 * m, "event_type_id": 101, **common},
            {"key": "B", "start": s + 30 * m, "end": s + 75 * m, "staff_required": False},
            {"key": "C", "start": s + 75 * m, "end": s + 105 * m, "event_type_id": 102, **common},
            {"key": "D", "start": s + 105 * m, "end": s + 120 * m, "staff_required": False},
        ]
    return [{"key": "A", "start": s, "end": s + 30 * m, "event_type_id": 100, **common}]


async def seed(database_url: str, pending: int, *, calcom_api_base: str | None = None, created_at: dt.datetime | None = None) -> None:
    """Accounts bench-0…9 and `pending` pending verifications spread evenly over them.

    Rows are shaped as `service.intake.Intake._insert` shapes them and written with
    `service.store.verifications.insert`, a few thousand per transaction.
    """
    from service.core import schedule
    from service.core.models import VerificationIn
    from service.settings import normalize_database_url
    from service.store.connector import Database
    from service.store.queries import accounts as account_store
    from service.store.queries import verifications as verification_store

    db = Database(normalize_database_url(database_url))
    await db.connect()
    created = created_at or dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=5)
    deadline = schedule.deadline(created, 2.0, (10.0, 30.0, 120.0, 600.0))
    try:
        async with db.transaction() as tx:
            for a in range(ACCOUNTS):
                await account_store.upsert(
                    tx,
                    account_id(a),
                    {
                        "calcom_api_key": api_key(a),
                        "webhook_secret": webhook_secret(a),
                        "calcom_api_base": calcom_api_base,
                        "callback_url": None,
                        "callback_secret": None,
                        "match_tolerance_seconds": TOLERANCE,
                        "enabled": True,
                    },
                    created,
                )

        def rows(a: int, k: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
            request = VerificationIn.model_validate(
                {
                    "account": account_id(a),
                    "appointment_id": str(k),
                    "service": "Dauerwelle" if k % 4 == 3 else "Herrenhaarschnitt",
                    "sync_error": "Cal.com HTTP 400: bench",
                    "phases": verification_phases(a, k),
                }
            )
            required = [p for p in request.phases if p.staff_required]
            row = {
                "id": str(uuid.uuid4()),
                "account": request.account,
                "appointment_id": request.appointment_id,
                "service": request.service,
                "sync_error": request.sync_error,
                "fingerprint": request.fingerprint(),
                "status": "pending",
                "review_reason": None,
                "resolved_via": None,
                "resolved_at": None,
                "window_start_at": min(p.start for p in required),
                "window_end_at": max((p.end or p.start + dt.timedelta(hours=12)) for p in required),
                "next_check_at": created + dt.timedelta(seconds=2),
                "deadline_at": deadline,
                "now": created,
            }
            phases = [
                {
                    "key": p.key,
                    "position": i,
                    "account": request.account,
                    "start_at": p.start,
                    "end_at": p.end,
                    "event_type_id": p.event_type_id,
                    "host_email": p.host_email,
                    "attendee_email": p.attendee_email,
                    "attendee_phone": p.attendee_phone,
                    "staff_required": p.staff_required,
                    "active": p.staff_required,
                    "status": "pending" if p.staff_required else "not_required",
                }
                for i, p in enumerate(request.phases)
            ]
            return row, phases

        per_account = pending // ACCOUNTS

        async def write(a: int) -> None:
            for start in range(0, per_account, 2000):
                async with db.transaction() as tx:
                    for k in range(start, min(per_account, start + 2000)):
                        await verification_store.insert(tx, *rows(a, k))

        if db.dialect == "postgresql":
            await asyncio.gather(*(write(a) for a in range(ACCOUNTS)))
        else:
            for a in range(ACCOUNTS):
                await write(a)
    finally:
        await db.disconnect()
