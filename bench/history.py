"""History: webhook latency and time to verdict, before and after 50,000 stored webhooks.

    .venv/bin/python bench/history.py --db both [--repeat 3] [--stored 50000] [--append]

One `python -m service web` on a fresh copy of the 10,000-pending database, in one run:
1. before: webhook latency at 100 events/s (bench/latency.py's open loop, 2 s warm-up + 30 s) and
   time to verdict in both orders (bench/verdict.py, 300 each after 20 warm-ups);
2. history: the next 50,000 unique BOOKING_CREATED webhooks of the load stream through the real
   endpoint, 16 in flight (every one stored: an observation and a webhook body each); then the
   database settles as weeks of history would have let it (PostgreSQL: VACUUM ANALYZE, CHECKPOINT;
   SQLite: 3 s of the web process' own checkpoints), not 30 s after a burst of 50,000 inserts;
3. after: the same measurements again; the latency stream continues where the history stopped, the
   verdict bookings lie in calendar regions of their own (as before), so only the history differs.
Target: each p99 after ≤ 1.3 × before, and still ≤ 10 ms (latency) and ≤ 20 ms (verdict).
Then, in-process (no HTTP): the SQL time per statement of the webhook and intake paths on a fresh
copy, and again after the same 50,000 webhooks.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c
import latency
import verdict

RATIO = 1.3
IN_FLIGHT = 16
# After the history, the verdict bookings move 10 days on: as empty a calendar as before.
AFTER_BASE = c.T0 + dt.timedelta(days=2 * 365 + 10)


async def store_history(port: int, first: int, count: int) -> float:
    """Send bookings first … first+count-1 of the load stream, IN_FLIGHT at a time; answer events/s."""
    client = c.Client(port)
    following = iter(range(first, first + count))
    failed = 0

    async def sender() -> None:
        nonlocal failed
        for i in following:
            status, _ = await c.post_webhook(client, c.load_booking(i))
            failed += status != 200

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(IN_FLIGHT)))
    elapsed = time.perf_counter() - started
    await client.close()
    assert failed == 0, f"{failed} webhooks of the history were not answered 200"
    return count / elapsed


async def settle(url: str) -> None:
    """What weeks of history would have let the database do meanwhile, not 30 s after a burst of 50,000 inserts."""
    if url.startswith("postgresql"):
        import asyncpg

        connection = await asyncpg.connect(url)
        try:
            await connection.execute("VACUUM (ANALYZE)")  # autovacuum's work on the new rows
            await connection.execute("CHECKPOINT")
        finally:
            await connection.close()
    else:
        await asyncio.sleep(3)  # the web process' own checkpoints (one a second) catch up with the WAL


async def one_run(url: str, port: int, stored: int, rate: float, seconds: float, warmup: float, n: int) -> dict[str, Any]:
    per_run = int(rate * (warmup + seconds))
    out: dict[str, Any] = {"before": {}, "after": {}}
    out["before"]["latency"] = await latency.open_loop(port, 0, rate, seconds, warmup)
    out["before"]["verdict"] = await verdict.orders(port, n)
    out["fill_rate"] = await store_history(port, per_run, stored)
    await settle(url)
    out["after"]["latency"] = await latency.open_loop(port, per_run + stored, rate, seconds, warmup)
    out["after"]["verdict"] = await verdict.orders(port, n, tag="h", base=AFTER_BASE)
    return out


def _figures(run: dict[str, Any]) -> dict[str, float]:
    return {
        "latency": run["latency"]["p99"],
        "verdict a": run["verdict"]["a"]["p99"],
        "verdict b": run["verdict"]["b"]["p99"],
    }


TARGETS_MS = {"latency": latency.TARGET_P99_MS, "verdict a": verdict.TARGET_P99_MS, "verdict b": verdict.TARGET_P99_MS}
LABELS = {
    "latency": "webhook latency at 100/s",
    "verdict a": "time to verdict (a) webhook first",
    "verdict b": "time to verdict (b) failure first",
}


def measure(
    dbs: list[str], *, stored: int = 50_000, repeat: int = 3, rate: float = 100.0, seconds: float = 30.0, warmup: float = 2.0, n: int = 300
) -> tuple[str, list[tuple[str, str, str]]]:
    results: dict[str, list[dict[str, Any]]] = {d: [] for d in dbs}
    counts: dict[str, list[tuple[int, int]]] = {d: [] for d in dbs}
    benches = {d: c.BenchDB(d) for d in dbs}
    try:
        for d in dbs:
            benches[d].template("p", 10_000)
        for rep in range(repeat):
            for d in dbs:
                url = benches[d].fresh("p")
                try:
                    with c.web(url) as server:
                        r = c.run_async(one_run(url, server.port, stored, rate, seconds, warmup, n))
                    counts[d].append(
                        (
                            int(benches[d].query(url, "SELECT COUNT(*) FROM webhook_events")),
                            int(benches[d].query(url, "SELECT COUNT(*) FROM booking_observations")),
                        )
                    )
                finally:
                    benches[d].drop(url)
                results[d].append(r)
                wrong = sum(r[when]["verdict"][o]["wrong"] for when in ("before", "after") for o in ("a", "b"))
                non200 = sum(r[when]["latency"]["non200"] for when in ("before", "after"))
                b, a = _figures(r["before"]), _figures(r["after"])
                print(
                    f"  rep {rep + 1} {d}: "
                    + "; ".join(f"{k} p99 {b[k]:.2f} → {a[k]:.2f} ms" for k in b)
                    + f"; history stored at {r['fill_rate']:.0f}/s; stored {counts[d][-1][0]} webhooks, {counts[d][-1][1]} observations; "
                    f"not verified {wrong}, non-200 {non200}",
                    flush=True,
                )
    finally:
        for bdb in benches.values():
            bdb.cleanup()

    rows, summary = [], []
    for d in dbs:
        runs = results[d]
        for key in ("latency", "verdict a", "verdict b"):
            before = [_figures(r["before"])[key] for r in runs]
            after = [_figures(r["after"])[key] for r in runs]
            ratios = [y / x for x, y in zip(before, after)]
            ratio, p99_after = c.median(ratios), c.median(after)
            rows.append(
                [
                    d,
                    LABELS[key],
                    f"{c.median(before):.2f} (" + ", ".join(f"{x:.1f}" for x in before) + ")",
                    f"**{p99_after:.2f}** (" + ", ".join(f"{y:.1f}" for y in after) + ")",
                    f"**{ratio:.2f}×**",
                ]
            )
            ok = ratio <= RATIO and p99_after <= TARGETS_MS[key]
            summary.append((f"history {d} {key}", f"p99 {c.median(before):.1f} → {p99_after:.1f} ms ({ratio:.2f}×)", c.verdict(ok)))
        wrong = sum(r[w]["verdict"][o]["wrong"] for r in runs for w in ("before", "after") for o in ("a", "b"))
        non200 = sum(r[w]["latency"]["non200"] for r in runs for w in ("before", "after"))
        events = int(c.median([x for x, _ in counts[d]]))
        observations = int(c.median([y for _, y in counts[d]]))
        rows.append(
            [
                d,
                f"history stored at {c.median([r['fill_rate'] for r in runs]):.0f} webhooks/s; at the end {events:,} webhook "
                f"bodies, {observations:,} observations; not verified {wrong}, non-200 {non200}",
                "",
                "",
                "",
            ]
        )
        if wrong or non200:
            summary.append((f"history {d} correctness", f"not verified {wrong}, non-200 {non200}", "MISS"))
    body = "\n".join(
        [
            f"One web server per run on a fresh 10,000-pending copy: p99 before, then {stored:,} unique webhooks stored through the "
            f"endpoint ({IN_FLIGHT} in flight) and the database settled (PostgreSQL: VACUUM ANALYZE + CHECKPOINT; SQLite: 3 s), "
            f"then p99 after, in the same run; median of {repeat} runs (each run's p99 in brackets). "
            f"Latency: open loop at {rate:g}/s, {warmup:g} s warm-up + {seconds:g} s; verdicts: {n} per order after {verdict.WARMUP} warm-ups.",
            "",
            c.table(["db", "figure (p99)", "before ms", "after ms", "after ÷ before"], rows),
        ]
    )
    return body, summary


# --- SQL time per statement, in-process ------------------------------------------------------------


async def _ingest(db: Any, first: int, count: int, in_flight: int) -> None:
    from service.app.ingest import Ingestor, Submission
    from service.app.notify import Notifier
    from service.core.webhooks import parse

    ingestor = Ingestor(db, Notifier(db), lambda: dt.datetime.now(dt.timezone.utc))
    await ingestor.start()
    following = iter(range(first, first + count))

    async def sender() -> None:
        for i in following:
            body = c.load_booking(i).body
            now = dt.datetime.now(dt.timezone.utc)
            await ingestor.submit(
                Submission(
                    account=c.account_id(i % c.ACCOUNTS),
                    body=body,
                    body_sha256=hashlib.sha256(body).hexdigest(),
                    event=parse(body, "application/json", now),
                    received_at=now,
                )
            )

    await asyncio.gather(*(sender() for _ in range(in_flight)))
    await ingestor.stop()


async def _intake(db: Any, url: str, tag: str, base: dt.datetime, count: int) -> None:
    """Time to verdict's order (a) in-process: the booking's webhook, then the failure, verified inside the call."""
    from service.app.intake import Intake
    from service.app.notify import Notifier
    from service.core.models import VerificationIn
    from service.core.webhooks import parse
    from service.settings import Settings

    settings = Settings(_env_file=None, database_url=url, api_token=c.API_TOKEN)
    intake = Intake(db, settings, Notifier(db))
    from service.app.ingest import Ingestor, Submission

    ingestor = Ingestor(db, Notifier(db), lambda: dt.datetime.now(dt.timezone.utc))
    await ingestor.start()
    for i in range(count):
        a, start = i % c.ACCOUNTS, base + i * dt.timedelta(minutes=30)
        who = f"statements-{tag}-{i}@example.com"
        body = c.booking_for(a, start, who, i, tag).body
        now = dt.datetime.now(dt.timezone.utc)
        await ingestor.submit(
            Submission(
                account=c.account_id(a),
                body=body,
                body_sha256=hashlib.sha256(body).hexdigest(),
                event=parse(body, "application/json", now),
                received_at=now,
            )
        )
        request = VerificationIn.model_validate_json(json.dumps(verdict.verification(a, f"{tag}-{i}", start, who)))
        recorded = await intake.record(request, now)
        assert recorded.view["status"] == "verified", recorded.view["status"]
    await ingestor.stop()


STATS: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])


def _instrument() -> None:
    """Sum wall time and count per statement, named as the store modules name them."""
    from service.app.ingest import Ingestor
    from service.store import connector as dbmod
    from service.store.queries import accounts, observations, outbox, verifications

    names = {
        id(value): f"{module.__name__.rsplit('.', 1)[1]}.{name}"
        for module in (accounts, observations, outbox, verifications)
        for name, value in vars(module).items()
        if isinstance(value, dbmod.Query)
    }

    def timed(original: Any, key: Any) -> Any:
        async def run(*args: Any, **params: Any) -> Any:
            t = time.perf_counter()
            try:
                return await original(*args, **params)
            finally:
                entry = STATS[key(*args)]
                entry[0] += 1
                entry[1] += time.perf_counter() - t

        return run

    def statement(_tx: Any, query: Any, *_: Any) -> str:
        text = " ".join(query.text.split())
        return names.get(id(query)) or ("observations.insert_events" if text.startswith("INSERT INTO webhook_events") else text[:60])

    for method in ("fetch_all", "execute", "execute_many"):
        setattr(dbmod.Tx, method, timed(getattr(dbmod.Tx, method), statement))
    Ingestor._store = timed(Ingestor._store, lambda *_: "(one webhook batch stored: its statement and commit)")  # type: ignore[method-assign]


def statements(d: str, *, stored: int = 50_000, events: int = 2000, verdicts: int = 300) -> str:
    """Per-statement SQL time of the webhook path (one event at a time) and of the intake path, before and after the history."""
    from service.settings import normalize_database_url
    from service.store.connector import Database

    _instrument()
    stats: dict[str, dict[str, tuple[float, float]]] = {}
    with c.BenchDB(d) as bdb:
        bdb.template("p", 10_000)
        url = bdb.fresh("p")

        async def run() -> None:
            db = Database(normalize_database_url(url))
            await db.connect()
            try:
                STATS.clear()
                await _ingest(db, 0, events, 1)
                await _intake(db, url, "sa", c.T0 + dt.timedelta(days=2 * 365), verdicts)
                stats["before"] = {k: tuple(v) for k, v in STATS.items()}
                started = time.perf_counter()
                await _ingest(db, events, stored, 64)
                print(f"  {d}: {stored:,} webhooks stored in-process in {time.perf_counter() - started:.0f} s", flush=True)
                STATS.clear()
                await _ingest(db, events + stored, events, 1)
                await _intake(db, url, "sb", AFTER_BASE, verdicts)
                stats["after"] = {k: tuple(v) for k, v in STATS.items()}
            finally:
                await db.disconnect()

        c.run_async(run())
        bdb.drop(url)
    keys = sorted(set(stats["before"]) | set(stats["after"]), key=lambda k: -stats["after"].get(k, (0, 0.0))[1])
    rows = []
    for k in keys:
        n1, t1 = stats["before"].get(k, (0, 0.0))
        n2, t2 = stats["after"].get(k, (0, 0.0))
        us1, us2 = t1 * 1e6 / max(1, n1), t2 * 1e6 / max(1, n2)
        rows.append([f"`{k}`", n1, f"{us1:.0f}", n2, f"{us2:.0f}", f"{us2 / us1:.2f}×" if us1 else ""])
    return (
        f"{d}: {events} webhooks one at a time, then {verdicts} intake calls (webhook first) — on a fresh 10,000-pending copy, "
        f"and again after {stored:,} more webhooks were stored.\n\n"
        + c.table(["statement", "n before", "µs before", "n after", "µs after", "after ÷ before"], rows)
    )


def main() -> None:
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--stored", type=int, default=50_000)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--no-statements", action="store_true", help="skip the in-process per-statement timing")
    args = p.parse_args()
    m = c.machine()
    dbs = c.databases(args.db)
    body, summary = measure(dbs, stored=args.stored, repeat=args.repeat, seconds=args.seconds, n=args.n)
    if not args.no_statements:
        for d in dbs:
            body += "\n\nSQL time per statement (in-process, wall time around each call), " + statements(d, stored=args.stored)
    c.report("History", m, body, summary, args.append)


if __name__ == "__main__":
    main()
