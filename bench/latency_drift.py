"""Does the webhook latency tail drift inside one long-running web process?

    .venv/bin/python bench/latency_drift.py --db both [--windows 6] [--seconds 30] [--append]

One `python -m service web` per database on a fresh copy of the 10,000-pending database, driven at a
steady 100 webhooks/s (the open loop of bench/latency.py) for several consecutive windows without a
restart; per window p50/p99/max, and on PostgreSQL the checkpoints the cluster was asked for during
it (each `CREATE DATABASE … TEMPLATE`, from any test or benchmark on the machine, forces one), and
how long the disk itself stalled (a probe thread fsyncing 8 KiB every 10 ms beside it).
The reference: the first window of the same process.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c
from latency import TARGET_P99_MS, open_loop

CHECKPOINTS = "SELECT checkpoints_req FROM pg_stat_bgwriter"


class DiskProbe:
    """A thread that writes and fsyncs 8 KiB every 10 ms next to the results: how long the disk itself stalls."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        path = c.RESULTS / f"fsync-probe-{os.getpid()}.bin"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while not self._stop.wait(0.01):
                t = time.perf_counter()
                os.pwrite(fd, b"x" * 8192, 0)
                os.fsync(fd)
                self.samples.append((time.perf_counter() - t) * 1000)
        finally:
            os.close(fd)
            path.unlink()

    def __enter__(self) -> DiskProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def window(self) -> tuple[float, int]:
        """The slowest fsync since the last call, and how many took over 20 ms; starts the next window."""
        samples, self.samples = self.samples, []
        return (max(samples) if samples else 0.0), sum(1 for x in samples if x > 20)


def measure(dbs: list[str], *, windows: int, seconds: float, rate: float = 100.0) -> tuple[str, list[tuple[str, str, str]]]:
    rows, summary = [], []
    for d in dbs:
        bdb = c.BenchDB(d)
        try:
            bdb.template("p", 10_000)
            url = bdb.fresh("p")
            with c.web(url) as server, DiskProbe() as disk:
                first = 0
                for w in range(windows):
                    before = int(bdb.query(url, CHECKPOINTS)) if d == "postgresql" else None
                    r = c.run_async(open_loop(server.port, first, rate, seconds, 2.0 if w == 0 else 0.0))
                    after = int(bdb.query(url, CHECKPOINTS)) if d == "postgresql" else None
                    first += int(rate * (seconds + 2))
                    forced = "" if before is None or after is None else str(after - before)
                    slowest, stalls = disk.window()
                    rows.append(
                        [
                            d,
                            str(w + 1),
                            f"{r['p50']:.2f}",
                            f"{r['p99']:.2f}",
                            f"{r['max']:.1f}",
                            str(r["non200"]),
                            forced,
                            f"{slowest:.1f}",
                            str(stalls),
                        ]
                    )
                    print(
                        f"  {d} window {w + 1}: p50 {r['p50']:.2f} p99 {r['p99']:.2f} max {r['max']:.1f} ms, "
                        f"checkpoints forced {forced or '-'}, slowest fsync {slowest:.1f} ms ({stalls} over 20 ms)",
                        flush=True,
                    )
            p99s = [float(row[3]) for row in rows if row[0] == d]
            drift = max(p99s) / p99s[0]
            summary.append(
                (
                    f"latency drift {d}",
                    f"p99 {min(p99s):.1f}–{max(p99s):.1f} ms over {windows} windows ({drift:.1f}× the first)",
                    c.verdict(max(p99s) <= TARGET_P99_MS),
                )
            )
        finally:
            bdb.cleanup()
    body = "\n".join(
        [
            f"One web process per database, {rate:g} webhooks/s, {windows} consecutive windows of {seconds:g} s without a restart.",
            "",
            c.table(
                [
                    "db",
                    "window",
                    "p50 ms",
                    "p99 ms",
                    "max ms",
                    "non-200",
                    "checkpoints forced meanwhile",
                    "slowest fsync ms",
                    "fsyncs over 20 ms",
                ],
                rows,
            ),
            "",
            "The fsync columns come from a probe thread in the benchmark writing and fsyncing 8 KiB every 10 ms on the "
            "same disk: how long the disk itself stalled during the window, whatever the service does.",
        ]
    )
    return body, summary


def main() -> None:
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--windows", type=int, default=6)
    p.add_argument("--seconds", type=float, default=30.0)
    args = p.parse_args()
    m = c.machine()
    body, summary = measure(c.databases(args.db), windows=args.windows, seconds=args.seconds)
    c.report("Webhook latency over time", m, body, summary, args.append)


if __name__ == "__main__":
    main()
