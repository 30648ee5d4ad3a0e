"""Which SQL statements of the webhook path cost what, at two database sizes (a diagnostic).

    .venv/bin/python bench/querytime.py --db postgresql [--events 6000] [--concurrency 32] [--sizes 1000,100000]

Drives `service.ingest.Ingestor` in-process (the group-commit writer behind the webhook route, with
the route's own `webhooks.parse`) with the load stream of bench/ingest.py, `concurrency` submissions
in flight, on fresh copies of a 1k- and a 100k-pending database; wraps `service.db.Tx`'s statement
methods to sum wall time and count per statement. No HTTP: this isolates the database side.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c

from service.store import connector as dbmod

STATS: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])


def _instrument() -> None:
    for name in ("fetch_all", "execute", "execute_many"):
        original = getattr(dbmod.Tx, name)

        def wrapped(self, query, *args, __original=original, **params):  # type: ignore[no-untyped-def]
            async def run():  # type: ignore[no-untyped-def]
                t = time.perf_counter()
                try:
                    return await __original(self, query, *args, **params)
                finally:
                    key = " ".join(query.text.split())[:90]
                    key = key if not key.startswith("INSERT INTO webhook_events") else "INSERT INTO webhook_events … (multi-row)"
                    STATS[key][0] += 1
                    STATS[key][1] += time.perf_counter() - t

            return run()

        setattr(dbmod.Tx, name, wrapped)

    from service.app.ingest import Ingestor

    commit = Ingestor._commit

    async def timed_commit(self, batch):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        try:
            return await commit(self, batch)
        finally:
            STATS["(whole Ingestor._commit: BEGIN … COMMIT)"][0] += 1
            STATS["(whole Ingestor._commit: BEGIN … COMMIT)"][1] += time.perf_counter() - t

    Ingestor._commit = timed_commit  # type: ignore[method-assign]


async def drive(url: str, events: int, concurrency: int) -> float:
    from service.app.ingest import Ingestor, Submission
    from service.app.notify import Notifier
    from service.core.webhooks import parse
    from service.settings import normalize_database_url
    from service.store.connector import Database

    db = Database(normalize_database_url(url))
    await db.connect()
    notifier = Notifier(db)
    ingestor = Ingestor(db, notifier, lambda: dt.datetime.now(dt.timezone.utc))
    await ingestor.start()
    queue = list(range(events))

    async def worker() -> None:
        while queue:
            b = c.load_booking(queue.pop(0))
            body = b.body
            now = dt.datetime.now(dt.timezone.utc)
            await ingestor.submit(
                Submission(
                    account=c.account_id(b.account),
                    body=body,
                    body_sha256=hashlib.sha256(body).hexdigest(),
                    event=parse(body, "application/json", now),
                    received_at=now,
                )
            )

    t = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t
    await ingestor.stop()
    await db.disconnect()
    return elapsed


def main() -> None:
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=6000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--sizes", default="1000,100000", help="pending verifications, two sizes")
    args = p.parse_args()
    _instrument()
    for d in c.databases(args.db):
        with c.BenchDB(d) as bdb:
            results = {}
            small, large = (int(x) for x in args.sizes.split(","))
            for size, name in ((small, "small"), (large, "large")):
                bdb.template(name, size)
                url = bdb.fresh(name)
                STATS.clear()
                elapsed = c.run_async(drive(url, args.events, args.concurrency))
                bdb.drop(url)
                results[size] = (elapsed, {k: tuple(v) for k, v in STATS.items()})
                print(f"  {d} {size:,} pending: {elapsed:.1f} s, {args.events / elapsed:.0f} events/s", flush=True)
            keys = sorted(set(results[small][1]) | set(results[large][1]), key=lambda k: -results[large][1].get(k, (0, 0))[1])
            rows = []
            for k in keys:
                n1, t1 = results[small][1].get(k, (0, 0.0))
                n2, t2 = results[large][1].get(k, (0, 0.0))
                rows.append(
                    [
                        f"`{k}`",
                        n1,
                        f"{t1 * 1e6 / max(1, n1):.0f}",
                        f"{t1 * 1e3 / args.events:.3f}",
                        n2,
                        f"{t2 * 1e6 / max(1, n2):.0f}",
                        f"{t2 * 1e3 / args.events:.3f}",
                    ]
                )
            print(
                f"\n### {d}: {args.events} events, {args.concurrency} in flight; wall {results[small][0]:.1f} s ({small:,} pending) "
                f"vs {results[large][0]:.1f} s ({large:,} pending)\n"
            )
            print(c.table(["statement", f"n {small:,}", "µs/stmt", "ms/event", f"n {large:,}", "µs/stmt", "ms/event"], rows))


if __name__ == "__main__":
    main()
