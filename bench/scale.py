"""Scale: per-webhook cost with 100,000 pending vs 1,000 pending, and web RSS at 100,000.

    .venv/bin/python bench/scale.py --db both [--repeat 3] [--append]

The ingest measurement of bench/ingest.py (same load stream, wrk -t1 -c32, 2 s warm-up + 10 s) on fresh
copies of a 1,000-pending and a 100,000-pending database, alternating, back to back. Cost per webhook
is given two ways: wall time per event (1 / events per s) and the web process' CPU time per event.
RSS is the web process' VmRSS (/proc/<pid>/status) at the end of the 100,000-pending ingest run.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c

TARGET_RATIO = 1.5
TARGET_RSS_MB = 150.0
SMALL, LARGE = 1_000, 100_000


def measure(dbs: list[str], *, repeat: int = 3, connections: int = 32, seconds: float = 10.0) -> tuple[str, list[tuple[str, str, str]]]:
    script = c.wrk_script(c.write_wrk_data(200_000))
    runs: dict[tuple[str, int], list[c.LoadRun]] = {(d, n): [] for d in dbs for n in (SMALL, LARGE)}
    benches = {d: c.BenchDB(d) for d in dbs}
    try:
        for d in dbs:
            benches[d].template("small", SMALL)
            benches[d].template("large", LARGE)
        for rep in range(repeat):
            for d in dbs:
                for size, name in ((SMALL, "small"), (LARGE, "large")):
                    r = c.measure_web(benches[d], name, script, connections, seconds=seconds)
                    runs[(d, size)].append(r)
                    print(
                        f"  rep {rep + 1} {d} {size:>6} pending: {r.rate:.0f}/s, {r.cpu_ms_per_event:.3f} CPU-ms/event, "
                        f"RSS {r.rss_mb:.0f} MB, verdicts {r.verdicts}, ok={r.ok}",
                        flush=True,
                    )
    finally:
        for bdb in benches.values():
            bdb.cleanup()

    rows, summary = [], []
    for d in dbs:
        small, large = runs[(d, SMALL)], runs[(d, LARGE)]
        wall = [s.rate / big.rate for s, big in zip(small, large)]
        cpu = [big.cpu_ms_per_event / s.cpu_ms_per_event for s, big in zip(small, large)]
        rss = c.median([big.rss_mb for big in large])
        ok = all(r.ok for r in small + large)
        rows.append(
            [
                d,
                f"{c.median([s.rate for s in small]):.0f}",
                f"{c.median([big.rate for big in large]):.0f}",
                f"**{c.median(wall):.2f}×** (" + ", ".join(f"{x:.2f}" for x in wall) + ")",
                f"{c.median([s.cpu_ms_per_event for s in small]):.3f} → {c.median([big.cpu_ms_per_event for big in large]):.3f}",
                f"{c.median(cpu):.2f}×",
                f"{c.median([s.rss_mb for s in small]):.0f}",
                f"**{rss:.0f}**",
                "yes" if ok else "NO",
            ]
        )
        summary.append(
            (
                f"scale {d}",
                f"{c.median(wall):.2f}× wall, {c.median(cpu):.2f}× web CPU per webhook (100k vs 1k)",
                c.verdict(c.median(wall) <= TARGET_RATIO and ok),
            )
        )
        summary.append((f"memory {d}", f"{rss:.0f} MB RSS with 100k pending", c.verdict(rss <= TARGET_RSS_MB)))
    body = "\n".join(
        [
            f"wrk -t1 -c{connections}, 2 s warm-up + {seconds:g} s, fresh database copy per run, median of {repeat} alternating repetitions.",
            "",
            c.table(
                [
                    "db",
                    "events/s, 1k",
                    "events/s, 100k",
                    "wall cost 100k/1k",
                    "web CPU-ms/event 1k → 100k",
                    "CPU cost 100k/1k",
                    "RSS MB, 1k",
                    "RSS MB, 100k",
                    "all 2xx, stored = sent",
                ],
                rows,
            ),
        ]
    )
    return body, summary


def main() -> None:
    c.script(__doc__, "Scale and memory", measure, repeat=(int, 3), seconds=(float, 10.0))


if __name__ == "__main__":
    main()
