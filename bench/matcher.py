"""Deciding a group of competing verifications: a chain of 200 against a group of 1, same run.

    .venv/bin/python bench/matcher.py [--db both] [--append] [--repeat 30]

A chain: single-phase verifications 4 minutes apart, each with a booking one minute after its own
start, so every booking is within the tolerance of two verifications and the group is the whole
chain (the decision must see all of it; there is exactly one best assignment). Two figures:

* **decide**: the pure decision (matching + plan) in this process, no I/O.
* **settle**: the whole thing as the poller's check does it, in one write transaction on a real
  database: load the group (transitive closure), decide, claim, write verdicts and phases.

Target: the group of 200 decided within 100 ms.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common as c

from service.app.settle import settle
from service.core.bookings import Booking
from service.core.observations import Observation
from service.core.plan import Context, decide
from service.store.connector import Database
from service.store.migrations import migrate
from service.store.queries import accounts as account_store
from service.store.queries import observations as observation_store
from service.store.queries import verifications as verification_store

T = dt.datetime(2027, 3, 1, 8, 0, tzinfo=dt.timezone.utc)
HOST = "anna@salon.example"


def chain_rows(n: int) -> tuple[dict, dict, list[Booking]]:
    rows, phases, bookings = {}, {}, []
    for i in range(n):
        start = T + dt.timedelta(minutes=4 * i)
        rows[i] = {
            "seq": i,
            "id": f"v{i}",
            "account": "a",
            "appointment_id": str(i),
            "created_at": T - dt.timedelta(hours=1),
            "complete_checks": 1,
        }
        phases[i] = [
            {
                "key": "A",
                "start_at": start,
                "event_type_id": None,
                "host_email": HOST,
                "attendee_email": None,
                "attendee_phone": None,
                "staff_required": True,
                "status": "pending",
                "booking_uid": None,
                "booking_seat": None,
            }
        ]
        bookings.append(Booking("a", f"b{i}", start + dt.timedelta(minutes=1), hosts=frozenset({HOST})))
    return rows, phases, bookings


def time_decide(n: int, repeat: int) -> list[float]:
    rows, phases, bookings = chain_rows(n)
    ctx = Context(now=T, mode="check", trigger="poll", settle_seconds=2, tolerance_seconds=300)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        plan = decide(rows, phases, bookings, ctx)
        times.append((time.perf_counter() - started) * 1000)
        assert len(plan.verdicts) == n and not plan.gave_up, "the chain must be decided completely"
    return times


async def seed_chain(db: Database, account: str, n: int) -> set[int]:
    async with db.transaction() as tx:
        await account_store.upsert(
            tx,
            account,
            {
                "calcom_api_key": f"key-{account}",
                "webhook_secret": "s",
                "calcom_api_base": None,
                "callback_url": None,
                "callback_secret": None,
                "match_tolerance_seconds": 300,
                "enabled": True,
            },
            T,
        )
        seqs = set()
        for i in range(n):
            start = T + dt.timedelta(minutes=4 * i)
            row = {
                "id": f"{account}-v{i}",
                "account": account,
                "appointment_id": str(i),
                "service": None,
                "sync_error": None,
                "fingerprint": "x",
                "status": "pending",
                "review_reason": None,
                "resolved_via": None,
                "resolved_at": None,
                "window_start_at": start,
                "window_end_at": start + dt.timedelta(minutes=30),
                "next_check_at": T,
                "deadline_at": T + dt.timedelta(minutes=15),
                "now": T - dt.timedelta(hours=1),
            }
            phase = {
                "key": "A",
                "position": 0,
                "account": account,
                "start_at": start,
                "end_at": start + dt.timedelta(minutes=30),
                "event_type_id": None,
                "host_email": HOST,
                "attendee_email": None,
                "attendee_phone": None,
                "staff_required": True,
                "active": True,
                "status": "pending",
            }
            seqs.add(await verification_store.insert(tx, row, [phase]))
            seen = Observation(
                uid=f"{account}-b{i}", start=start + dt.timedelta(minutes=1), state="exists", event_at=T, source="webhook", hosts=(HOST,)
            )
            await observation_store.upsert(tx, account, [seen], T)
    return seqs


async def time_settle(url: str, n: int, repeat: int) -> list[float]:
    db = Database(url)
    await db.connect()
    try:
        await migrate(db)
        times = []
        for r in range(repeat):
            account = f"chain-{n}-{r}"
            seqs = await seed_chain(db, account, n)
            async with db.read() as tx:
                acc = await account_store.get(tx, account)
            assert acc is not None
            started = time.perf_counter()
            async with db.transaction() as tx:
                await tx.lock_account(account)
                settled = await settle(tx, acc, T, mode="check", trigger="poll", settle_seconds=2, seqs=[min(seqs)])
            times.append((time.perf_counter() - started) * 1000)
            assert len(settled.resolved) == n, (len(settled.resolved), n)
        return times
    finally:
        await db.disconnect()


def measure(dbs: list[str], repeat: int) -> tuple[str, list]:
    rows = []
    decided = {n: time_decide(n, repeat) for n in (1, 200)}
    rows.append(["decide (pure)", "-", *(f"{c.median(decided[n]):.2f} / {max(decided[n]):.2f}" for n in (1, 200))])
    worst = max(decided[200])
    for name in dbs:
        if name == "sqlite":
            c.RESULTS.mkdir(exist_ok=True)
            url = f"sqlite+aiosqlite:///{tempfile.mkdtemp(dir=c.RESULTS)}/matcher.sqlite3"
        else:
            url = c.with_db(c.PG_ADMIN.replace("postgresql://", "postgresql+asyncpg://", 1), f"bench_run_matcher_{int(time.time())}")
            c.admin(f"CREATE DATABASE {url.rsplit('/', 1)[1]}")
        try:
            settled = {n: asyncio.run(time_settle(url, n, max(3, repeat // 5))) for n in (1, 200)}
        finally:
            if name == "postgresql":
                c.admin(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")
        rows.append([f"settle ({name})", "-", *(f"{c.median(settled[n]):.2f} / {max(settled[n]):.2f}" for n in (1, 200))])
        worst = max(worst, c.median(settled[200]))
    body = c.table(["what", "", "group of 1: median / max ms", "chain of 200: median / max ms"], rows)
    summary = [
        ("group of 200 chained decided within 100 ms", f"{worst:.1f} ms (worst of pure max and settle medians)", c.verdict(worst <= 100))
    ]
    return body, summary


def main() -> None:
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=30)
    args = p.parse_args()
    m = c.machine()
    body, summary = measure(c.databases(args.db), args.repeat)
    c.report("Matcher: a chained group of 200 vs a group of 1 (bench/matcher.py)", m, body, summary, args.append)


if __name__ == "__main__":
    main()
