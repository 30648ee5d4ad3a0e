"""Webhook ingest: signed BOOKING_CREATED events/s through the real endpoint with 10,000
pending verifications, as a ratio to a bare Starlette endpoint that only checks the HMAC, and to
that endpoint plus a group-committed durable insert of the raw body (the floor of any receiver on
this stack that answers only once the event is on disk).

    .venv/bin/python bench/ingest.py --db both [--repeat 3] [--append]

Per repetition and per wrk concurrency (-c32, -c128; -t1; 2 s warm-up, then 10 s): the bare endpoint,
then per dialect the bare+store endpoint (`bare_store_app.py`) and `python -m service web`, each on
a fresh copy of the filled database, back to back. The figures are medians over repetitions of the
ratios within the same repetition.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c

BODIES = 200_000


def measure(
    dbs: list[str],
    *,
    pending: int = 10_000,
    connections: tuple[int, ...] = (32, 128),
    repeat: int = 3,
    seconds: float = 10.0,
    warmup: float = 2.0,
) -> tuple[str, list[tuple[str, str, str]]]:
    """Run the comparison; answer the Markdown section and the (target, figure, PASS/MISS) rows."""
    script = c.wrk_script(c.write_wrk_data(BODIES))
    bare: dict[int, list[c.LoadRun]] = {n: [] for n in connections}
    real: dict[tuple[str, int], list[c.LoadRun]] = {(d, n): [] for d in dbs for n in connections}
    floor: dict[tuple[str, int], list[c.LoadRun]] = {(d, n): [] for d in dbs for n in connections}
    benches = {d: c.BenchDB(d) for d in dbs}
    try:
        for d in dbs:
            benches[d].template("p", pending)
        for rep in range(repeat):
            for n in connections:
                b = c.measure_bare(script, n, warmup=warmup, seconds=seconds)
                bare[n].append(b)
                print(f"  rep {rep + 1} c{n} bare: {b.rate:.0f}/s p99 {b.p99_ms:.1f} ms", flush=True)
                for d in dbs:
                    f = c.measure_bare_store(benches[d], "p", script, n, warmup=warmup, seconds=seconds)
                    floor[(d, n)].append(f)
                    print(
                        f"  rep {rep + 1} c{n} {d} bare+store: {f.rate:.0f}/s ({f.rate / b.rate:.2f}×) p99 {f.p99_ms:.1f} ms, "
                        f"stored {f.stored}/{f.completed}..{f.issued}, ok={f.ok}",
                        flush=True,
                    )
                    r = c.measure_web(benches[d], "p", script, n, warmup=warmup, seconds=seconds)
                    real[(d, n)].append(r)
                    print(
                        f"  rep {rep + 1} c{n} {d}: {r.rate:.0f}/s ({r.rate / b.rate:.2f}× bare, {r.rate / f.rate:.2f}× bare+store) p99 {r.p99_ms:.1f} ms, "
                        f"{r.cpu_ms_per_event:.2f} CPU-ms/event, stored {r.stored}/{r.completed}..{r.issued}, "
                        f"verdicts {r.verdicts}, ok={r.ok}",
                        flush=True,
                    )
    finally:
        for bdb in benches.values():
            bdb.cleanup()

    rows, summary = [], []
    for d in dbs:
        for n in connections:
            runs, refs, floors = real[(d, n)], bare[n], floor[(d, n)]
            ratios = [r.rate / b.rate for r, b in zip(runs, refs)]
            ratio = c.median(ratios)
            to_floor = [r.rate / f.rate for r, f in zip(runs, floors)]
            ok = all(r.ok for r in runs) and all(f.ok for f in floors)
            rows.append(
                [
                    d,
                    f"-c{n}",
                    f"{c.median([r.rate for r in runs]):.0f}",
                    f"{c.median([b.rate for b in refs]):.0f}",
                    f"{c.median([f.rate for f in floors]):.0f}",
                    f"**{ratio:.2f}×** ({', '.join(f'{x:.2f}' for x in ratios)})",
                    f"{c.median(to_floor):.2f}× ({', '.join(f'{x:.2f}' for x in to_floor)})",
                    f"{c.median([f.rate / b.rate for f, b in zip(floors, refs)]):.2f}×",
                    f"{c.median([r.p50_ms for r in runs]):.1f} / {c.median([r.p99_ms for r in runs]):.1f}",
                    f"{c.median([b.p99_ms for b in refs]):.1f}",
                    f"{c.median([r.cpu_ms_per_event for r in runs]):.2f}",
                    f"{int(c.median([r.verdicts or 0 for r in runs]))}",
                    "yes"
                    if ok
                    else "NO: "
                    + "; ".join(
                        f"errors {r.errors}, non-2xx {r.non2xx}, stored {r.stored} of {r.completed}..{r.issued}" for r in runs if not r.ok
                    ),
                ]
            )
            summary.append((f"ingest {d} -c{n}", f"{ratio:.2f}× bare", c.verdict(ratio >= 0.5 and ok)))
    kinds = c.count_kinds(20_000)
    body = "\n".join(
        [
            f"Real endpoint vs bare HMAC endpoint and bare endpoint + group-committed insert of the raw body (bare_store_app.py), {pending:,} pending verifications over {c.ACCOUNTS} accounts; wrk -t1, "
            f"{warmup:g} s warm-up + {seconds:g} s; median of {repeat} back-to-back repetitions (each repetition's own ratio in brackets).",
            "",
            c.table(
                [
                    "db",
                    "wrk",
                    "real events/s",
                    "bare events/s",
                    "bare+store events/s",
                    "ratio real/bare",
                    "ratio real/bare+store",
                    "ratio bare+store/bare",
                    "real p50/p99 ms",
                    "bare p99 ms",
                    "web CPU-ms/event",
                    "verdicts/run",
                    "all 2xx, stored = sent",
                ],
                rows,
            ),
            "",
            f"Load stream: unique signed BOOKING_CREATED bodies ({len(c.load_booking(0).body):,} bytes) round-robin over the "
            f"accounts; {kinds['match'] / 200:.0f}% complete a pending phase, {kinds['near'] / 200:.0f}% start 2 min from a pending "
            f"phase but do not fit it (real candidate search), {kinds['far'] / 200:.0f}% lie far from any pending phase. "
            "CPU-ms/event is the web process' user+system time only (PostgreSQL's backend not included).",
        ]
    )
    return body, summary


def main() -> None:
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--pending", type=int, default=10_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--connections", default="32,128")
    args = p.parse_args()
    m = c.machine()
    body, summary = measure(
        c.databases(args.db),
        pending=args.pending,
        repeat=args.repeat,
        seconds=args.seconds,
        connections=tuple(int(x) for x in args.connections.split(",")),
    )
    c.report("Webhook ingest", m, body, summary, args.append)


if __name__ == "__main__":
    main()
