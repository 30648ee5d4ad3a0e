"""Every benchmark for both databases; appends one dated section to BENCHMARKS.md.

    .venv/bin/python bench/run_all.py [--db both] [--repeat 3] [--no-profile] [--no-append]

Runs ingest, latency, time to verdict, API economy, scale/memory and history (each as its own script
would; history without its in-process per-statement table), then — unless --no-profile — a py-spy
profile (`--gil`) of the web process under ingest load for each database whose ingest or scale
target was missed. Takes about 40 minutes on 2 cores.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c
import economy
import history
import ingest
import latency
import profile_web as profiling
import scale
import verdict


def main() -> None:
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--no-profile", action="store_true")
    p.add_argument("--no-append", action="store_true")
    args = p.parse_args()
    dbs = c.databases(args.db)
    m = c.machine()
    started = time.monotonic()
    sections: list[tuple[str, str]] = []
    summary: list[tuple[str, str, str]] = []
    for title, run in (
        ("Webhook ingest (bench/ingest.py)", lambda: ingest.measure(dbs, repeat=args.repeat)),
        ("Webhook latency at 100 events/s (bench/latency.py)", lambda: latency.measure(dbs, repeat=args.repeat)),
        ("Time to verdict (bench/verdict.py)", lambda: verdict.measure(dbs, repeat=args.repeat)),
        ("API economy (bench/economy.py)", lambda: economy.measure(dbs)),
        ("Scale and memory (bench/scale.py)", lambda: scale.measure(dbs, repeat=args.repeat)),
        ("History: before and after 50,000 stored webhooks (bench/history.py)", lambda: history.measure(dbs, repeat=args.repeat)),
    ):
        print(f"== {title}", flush=True)
        body, rows = run()
        sections.append((title, body))
        summary += rows
        print(body, flush=True)

    if not args.no_profile:
        for d in dbs:
            for pending in (10_000, 100_000):
                kind = "ingest" if pending == 10_000 else "scale"
                if any(r[0].startswith(f"{kind} {d}") and r[2] == "MISS" for r in summary):
                    print(f"== profile {d} {pending}", flush=True)
                    raw = profiling.record(d, pending, 15, 32, "gil")
                    sections.append(
                        (
                            f"Profile: {d}, {pending:,} pending, wrk -c32, py-spy --gil (bench/profile_web.py; raw stacks in bench/results/{raw.name})",
                            profiling.aggregate(raw),
                        )
                    )

    text = "\n".join(
        [
            c.machine_line(m),
            "",
            f"`{c.command_line()}` ({(time.monotonic() - started) / 60:.0f} min)",
            "",
            c.table(["target", "measured", ""], summary),
            "",
            *(f"### {title}\n\n{body}\n" for title, body in sections),
        ]
    )
    print("\n" + text)
    if not args.no_append:
        c.append(f"Results — {m['date']}", text)


if __name__ == "__main__":
    main()
