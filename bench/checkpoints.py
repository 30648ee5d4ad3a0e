"""SQLite WAL checkpoints: inside the commits (SQLite's default) or beside them (service.store.checkpointer).

    .venv/bin/python bench/checkpoints.py [--repeat 3] [--seconds 30] [--append]

In-process (no HTTP, so only the database side differs): `service.app.ingest.Ingestor` takes signed
BOOKING_CREATED events of the load stream on an open-loop 100 events/s grid, and each event's time
from its scheduled submission to its stored answer is measured, 2 s warm-up excluded. Two databases:
a fresh copy of the 10,000-pending one, and the same after 50,000 stored webhooks. Two policies per
database, alternating: `sqlite` (the writer checkpoints when the WAL passes 1,000 pages, inside the
commit that got there; `PRAGMA wal_autocheckpoint=1000`) and `checkpointer` (what the service runs:
no checkpoint in any commit, PASSIVE checkpoints every second from another connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c
import history

POLICIES = ("sqlite", "checkpointer")


async def open_loop(path: str, policy: str, first: int, rate: float, seconds: float, warmup: float) -> dict[str, float]:
    from service.app.ingest import Ingestor, Submission
    from service.app.notify import Notifier
    from service.core.webhooks import parse
    from service.store.connector import Database, sql

    db = Database(f"sqlite+aiosqlite:///{path}", checkpoints=policy == "checkpointer")
    await db.connect()
    if policy == "sqlite":
        async with db.transaction() as tx:
            await tx.execute(sql("PRAGMA wal_autocheckpoint=1000"))  # SQLite's default, which the service turns off
    ingestor = Ingestor(db, Notifier(db), lambda: dt.datetime.now(dt.timezone.utc))
    await ingestor.start()
    latencies: list[float] = []
    skip = int(rate * warmup)

    async def one(k: int, scheduled: float) -> None:
        body = c.load_booking(first + k).body
        now = dt.datetime.now(dt.timezone.utc)
        await ingestor.submit(
            Submission(
                account=c.account_id((first + k) % c.ACCOUNTS),
                body=body,
                body_sha256=hashlib.sha256(body).hexdigest(),
                event=parse(body, "application/json", now),
                received_at=now,
            )
        )
        if k >= skip:
            latencies.append((time.perf_counter() - scheduled) * 1000)

    tasks = []
    start = time.perf_counter() + 0.05
    for k in range(int(rate * (warmup + seconds))):
        scheduled = start + k / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(k, scheduled)))
    await asyncio.gather(*tasks)
    wal_mb = os.path.getsize(f"{path}-wal") / 1e6
    await ingestor.stop()
    await db.disconnect()
    return {"p50": c.percentile(latencies, 50), "p99": c.percentile(latencies, 99), "max": max(latencies), "wal_mb": wal_mb}


async def _store(path: str, count: int) -> None:
    from service.store.connector import Database

    db = Database(f"sqlite+aiosqlite:///{path}")
    await db.connect()
    try:
        await history._ingest(db, 0, count, 64)
    finally:
        await db.disconnect()


def measure(
    *, stored: int = 50_000, repeat: int = 3, rate: float = 100.0, seconds: float = 30.0, warmup: float = 2.0
) -> tuple[str, list[tuple[str, str, str]]]:
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    with c.BenchDB("sqlite") as bdb:
        bdb.template("p", 10_000)
        fresh = bdb.templates["p"]
        grown = str(bdb.dir / f"tmpl_history_{bdb.tag}.sqlite3")
        shutil.copyfile(fresh, grown)
        c.run_async(_store(grown, stored))
        bdb.templates["history"] = grown  # dropped with the other templates at the end
        sizes = {"10,000 pending": fresh, f"+ {stored:,} stored webhooks": grown}
        first = 10 * stored  # past every body stored above: each run's events are new
        for rep in range(repeat):
            for size, template in sizes.items():
                for policy in POLICIES:
                    path = str(bdb.dir / f"run_ckpt_{bdb.tag}.sqlite3")
                    shutil.copyfile(template, path)
                    try:
                        r = c.run_async(open_loop(path, policy, first, rate, seconds, warmup))
                    finally:
                        for suffix in ("", "-wal", "-shm"):
                            with contextlib.suppress(OSError):
                                os.unlink(path + suffix)
                    first += int(rate * (warmup + seconds))
                    results.setdefault((size, policy), []).append(r)
                    print(
                        f"  rep {rep + 1} {size}, {policy}: p50 {r['p50']:.2f} p99 {r['p99']:.2f} max {r['max']:.1f} ms, "
                        f"WAL file {r['wal_mb']:.1f} MB",
                        flush=True,
                    )
    rows, summary = [], []
    for (size, policy), runs in results.items():
        p99 = c.median([r["p99"] for r in runs])
        rows.append(
            [
                size,
                policy,
                f"{c.median([r['p50'] for r in runs]):.2f}",
                f"**{p99:.2f}** (" + ", ".join(f"{r['p99']:.1f}" for r in runs) + ")",
                f"{c.median([r['max'] for r in runs]):.1f}",
                f"{c.median([r['wal_mb'] for r in runs]):.1f}",
            ]
        )
    for size in sizes:
        own, ours = (c.median([r["p99"] for r in results[(size, p)]]) for p in POLICIES)
        summary.append((f"checkpoints, {size}", f"p99 {own:.1f} ms (sqlite) → {ours:.1f} ms (checkpointer)", c.verdict(ours <= own)))
    body = "\n".join(
        [
            f"In-process Ingestor, open loop at {rate:g} events/s, {warmup:g} s warm-up + {seconds:g} s measured, latency from the scheduled "
            f"submission to the stored answer; median of {repeat} runs (each run's p99 in brackets); WAL file size when the run ended.",
            "",
            c.table(["database", "checkpoints", "p50 ms", "p99 ms", "max ms", "WAL MB"], rows),
        ]
    )
    return body, summary


def main() -> None:
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--stored", type=int, default=50_000)
    args = p.parse_args()
    m = c.machine()
    body, summary = measure(stored=args.stored, repeat=args.repeat, seconds=args.seconds)
    c.report("SQLite checkpoints", m, body, summary, args.append)


if __name__ == "__main__":
    main()
