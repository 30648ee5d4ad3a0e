"""Webhook latency: p50/p99 of signed BOOKING_CREATED webhooks at a steady 100 events/s.

    .venv/bin/python bench/latency.py --db both [--repeat 3] [--append]

An open-loop client (asyncio streams, keep-alive connections, a new connection whenever none is
idle) schedules one webhook every 10 ms and measures each from its *scheduled* send time to the end
of its response, so a slow answer cannot hide the ones queued behind it (no coordinated omission).
2 s warm-up, then 30 s measured, against the bare HMAC endpoint (the reference) and
`python -m service web` on a fresh copy of the 10,000-pending database, back to back.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c

TARGET_P99_MS = 10.0


async def open_loop(port: int, first: int, rate: float, seconds: float, warmup: float) -> dict[str, object]:
    """Send `rate` webhooks per second for warmup + seconds; latencies of the measured part, in ms."""
    client = c.Client(port)
    clock = time.perf_counter  # uvloop's loop.time() ticks in whole milliseconds
    total = int(rate * (warmup + seconds))
    skip = int(rate * warmup)
    bookings = [c.load_booking(first + k) for k in range(total)]
    latencies: list[float] = [0.0] * total
    statuses: list[int] = [0] * total
    start = clock() + 0.05

    async def one(k: int, scheduled: float) -> None:
        try:
            status, _ = await c.post_webhook(client, bookings[k])
        except (OSError, asyncio.IncompleteReadError):
            status = -1
        statuses[k] = status
        latencies[k] = (clock() - scheduled) * 1000

    tasks = []
    for k in range(total):
        scheduled = start + k / rate
        delay = scheduled - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(k, scheduled)))
    await asyncio.gather(*tasks)
    await client.close()
    measured = latencies[skip:]
    return {
        "p50": c.percentile(measured, 50),
        "p99": c.percentile(measured, 99),
        "max": max(measured),
        "n": len(measured),
        "non200": sum(1 for s in statuses if s != 200),
        "connections": client.opened,
        "kinds": {kind: sum(1 for b in bookings[skip:] if b.kind == kind) for kind in ("match", "near", "far")},
    }


def measure(
    dbs: list[str], *, rate: float = 100.0, seconds: float = 30.0, warmup: float = 2.0, repeat: int = 3
) -> tuple[str, list[tuple[str, str, str]]]:
    results: dict[str, list[dict[str, object]]] = {"bare": [], **{d: [] for d in dbs}}
    benches = {d: c.BenchDB(d) for d in dbs}
    verdicts: dict[str, list[int]] = {d: [] for d in dbs}
    try:
        for d in dbs:
            benches[d].template("p", 10_000)
        for rep in range(repeat):
            with c.bare() as server:
                r = c.run_async(open_loop(server.port, 0, rate, seconds, warmup))
            results["bare"].append(r)
            print(f"  rep {rep + 1} bare: p50 {r['p50']:.2f} p99 {r['p99']:.2f} max {r['max']:.1f} ms", flush=True)
            for d in dbs:
                url = benches[d].fresh("p")
                try:
                    with c.web(url) as server:
                        r = c.run_async(open_loop(server.port, 0, rate, seconds, warmup))
                    verdicts[d].append(int(benches[d].query(url, "SELECT COUNT(*) FROM verifications WHERE status = 'verified'")))
                finally:
                    benches[d].drop(url)
                results[d].append(r)
                print(
                    f"  rep {rep + 1} {d}: p50 {r['p50']:.2f} p99 {r['p99']:.2f} max {r['max']:.1f} ms, non-200 {r['non200']}, "
                    f"verdicts {verdicts[d][-1]}",
                    flush=True,
                )
    finally:
        for bdb in benches.values():
            bdb.cleanup()

    bare_p99 = c.median([r["p99"] for r in results["bare"]])  # type: ignore[misc]
    rows, summary = [], []
    for name in ["bare", *dbs]:
        runs = results[name]
        p50 = c.median([r["p50"] for r in runs])  # type: ignore[misc]
        p99 = c.median([r["p99"] for r in runs])  # type: ignore[misc]
        ratios = [r["p99"] / b["p99"] for r, b in zip(runs, results["bare"])]  # type: ignore[operator]
        bad = sum(r["non200"] for r in runs)  # type: ignore[misc]
        rows.append(
            [
                name if name == "bare" else f"web, {name}",
                f"{p50:.2f}",
                f"**{p99:.2f}** (" + ", ".join(f"{r['p99']:.1f}" for r in runs) + ")",
                f"{c.median([r['max'] for r in runs]):.1f}",
                "1" if name == "bare" else f"{c.median(ratios):.1f}×",
                str(bad),
                "" if name == "bare" else str(int(c.median(verdicts[name]))),
            ]
        )
        if name != "bare":
            summary.append(
                (
                    f"latency {name}",
                    f"p99 {p99:.1f} ms ({c.median(ratios):.1f}× bare {bare_p99:.1f} ms)",
                    c.verdict(p99 <= TARGET_P99_MS and bad == 0),
                )
            )
    kinds = results[dbs[0]][0]["kinds"] if dbs else {}
    body = "\n".join(
        [
            f"Open loop, {rate:g} webhooks/s on a fixed grid, {warmup:g} s warm-up + {seconds:g} s measured "
            f"({int(rate * seconds)} requests), latency from the scheduled send time; median of {repeat} repetitions "
            "(each repetition's p99 in brackets). The web server holds 10,000 pending verifications.",
            "",
            c.table(["server", "p50 ms", "p99 ms", "max ms", "p99 vs bare", "non-200", "verdicts/run"], rows),
            "",
            f"Measured requests by kind: {kinds}.",
        ]
    )
    return body, summary


def main() -> None:
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--rate", type=float, default=100.0)
    args = p.parse_args()
    m = c.machine()
    body, summary = measure(c.databases(args.db), rate=args.rate, seconds=args.seconds, repeat=args.repeat)
    c.report("Webhook latency", m, body, summary, args.append)


if __name__ == "__main__":
    main()
