"""Benchmark basics: paths and constants, the command line, the machine, numbers and the BENCHMARKS.md writer."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import re
import sqlite3
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
LOGS = RESULTS / "logs"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
EXAMPLE = ROOT / "tests" / "calcom_examples" / "booking_created.docs-v2021-10-20.json"
PY = sys.executable
PG_ADMIN = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
API_TOKEN = "bench-api-token-0123456789abcdef"
ACCOUNTS = 10
TOLERANCE = 300
GRID = dt.timedelta(minutes=10)  # phase starts of one account's pending verifications, 10 min apart
HOT = 100  # bookings of the load stream touch only the first HOT verifications of each account
SEED_SECONDS = 2.6  # the first version's time to verdict (a blocking 2 s sleep plus one Cal.com query)
TARGETS = {
    "ingest": "≥ 0.5× the bare HMAC endpoint",
    "latency": "p99 ≤ 10 ms at 100 events/s",
    "verdict": "p99 ≤ 20 ms (both orders)",
    "economy": "≤ 0.02 Cal.com calls per due verification per tick",
    "scale": "cost(100k pending) ≤ 1.5 × cost(1k pending)",
    "memory": "web RSS ≤ 150 MB with 100k pending",
}

sys.path.insert(0, str(ROOT))

# The accounts' secrets are stored encrypted under SECRET_KEYS: one fixed bench key, for the filling
# done in this process and for every process the benchmarks start. The fakes listen on localhost,
# which only ALLOW_PRIVATE_TARGETS lets an account (or CALCOM_API_BASE) point at.
BENCH_SECRET_KEY = "YmVuY2gtc2VjcmV0LWtleS1vZi10aGUtYmVuY2gtMDE="
os.environ.setdefault("SECRET_KEYS", BENCH_SECRET_KEY)
os.environ.setdefault("ALLOW_PRIVATE_TARGETS", "true")
from service.store import secretbox

secretbox.install(secretbox.SecretBox(os.environ["SECRET_KEYS"].split(",")))

# The moment every benchmark's calendar hangs off: the first pending phase of every account.
T0 = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30)).replace(hour=6, minute=0, second=0, microsecond=0)


# --- command line ---------------------------------------------------------------------------------


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    p.add_argument("--append", action="store_true", help="append the results to BENCHMARKS.md")
    return p


def databases(choice: str) -> list[str]:
    return ["sqlite", "postgresql"] if choice == "both" else [choice]


def command_line() -> str:
    args = [a for a in sys.argv]
    args[0] = os.path.relpath(args[0], ROOT) if os.path.isabs(args[0]) else args[0]
    return ".venv/bin/python " + " ".join(args)


# --- machine ----------------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = "?"
    with contextlib.suppress(OSError):
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))  # type: ignore[union-attr]
        ram = f"{kb / 1024 / 1024:.1f} GiB"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    pg = "?"
    with contextlib.suppress(Exception):
        pg = subprocess.run(["psql", PG_ADMIN, "-Atc", "SHOW server_version"], capture_output=True, text=True, timeout=10).stdout.strip()
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "ram": ram,
        "python": platform.python_version(),
        "postgresql": pg,
        "sqlite": sqlite3.sqlite_version,
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit,
        "load": Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?",
    }


def machine_line(m: dict[str, str]) -> str:
    return (
        f"{m['date']}, commit `{m['commit']}` (plus the uncommitted working tree of that moment), "
        f"{m['nproc']} × {m['cpu']}, {m['ram']} RAM, Python {m['python']}, PostgreSQL {m['postgresql']}, SQLite {m['sqlite']}; "
        f"1-min load average at the start {m['load']} (other engineers' test runs share the machine)"
    )


# --- numbers ----------------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[rank]


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (also readable on a terminal)."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"
    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(line(r) for r in cells[1:])])


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def report(title: str, m: dict, body: str, summary: list, append_to_file: bool) -> None:
    """Print one script's result (machine, command, tables, PASS/MISS) and optionally append it."""
    text = f"{machine_line(m)}\n\n`{command_line()}`\n\n{body}\n\n" + table(["target", "figure", ""], summary)
    print("\n" + text)
    if append_to_file:
        append(f"{title} — {m['date']}", text)


def append(title: str, body: str) -> None:
    """Append a dated section to BENCHMARKS.md (created with a stub intro if missing)."""
    if not BENCHMARKS_MD.exists():
        BENCHMARKS_MD.write_text("# Benchmarks\n\nSee bench/README.md for how each figure is measured.\n")
    with BENCHMARKS_MD.open("a", encoding="utf-8") as out:
        out.write(f"\n## {title}\n\n{body.rstrip()}\n")
    print(f"appended to {BENCHMARKS_MD.relative_to(ROOT)}")


def script(doc: str, title: str, measure: Any, **options: tuple[type, Any]) -> None:
    """A benchmark's command line: `--db`, `--append` and its own `options` (name=(type, default)), then one report."""
    p = parser(doc.splitlines()[0])
    for name, (kind, default) in options.items():
        p.add_argument(f"--{name}", type=kind, default=default)
    args = p.parse_args()
    m = machine()
    body, summary = measure(databases(args.db), **{name: getattr(args, name) for name in options})
    report(title, m, body, summary, args.append)
