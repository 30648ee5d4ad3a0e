"""Where the web process spends its time under ingest load: py-spy samples, aggregated.

    .venv/bin/python bench/profile_web.py --db sqlite [--pending 10000] [--seconds 15] [--connections 32]

Starts `python -m service web` on a fresh copy of a filled database, drives it with the ingest load
(wrk -t1, the same unique signed bodies as bench/ingest.py), and records it with
`py-spy record -f raw`, by default with `--gil` (only the thread holding the GIL: where the Python
time goes); `--mode native` samples every thread with C frames (sqlite3, uvloop) instead.
Prints, per thread, the top self-time frames and the inclusive share of a few function groups; the
raw collapsed stacks are kept in bench/results/ (feed them to speedscope or flamegraph.pl).
py-spy: $PY_SPY, else `py-spy` on PATH, else /tmp/probe/bin/py-spy (not a project dependency).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c

GROUPS = {
    "HTTP server (uvicorn/httptools/h11)": re.compile(r"uvicorn/|httptools|h11/"),
    "Starlette routing/request/response": re.compile(r"starlette/"),
    "webhook handler (web/routes/webhooks)": re.compile(r"\bcalcom_webhook \("),
    "parse body (core/webhooks.parse)": re.compile(r"\bparse \(service/core/webhooks.py"),
    "store (Ingestor._store)": re.compile(r"\b_store \(service/app/ingest.py"),
    "match (Matcher._match)": re.compile(r"\b_match \(service/app/matcher.py"),
    "settle (verdicts)": re.compile(r"\bsettle_guarded \("),
    "search (pure)": re.compile(r"service/core/search.py"),
    "store statements (store/connector)": re.compile(r"service/store/(connector|sqlite|postgres).py"),
    "aiosqlite/sqlite3": re.compile(r"aiosqlite/|sqlite3/"),
    "asyncpg": re.compile(r"asyncpg/"),
    "databases (pool/connection)": re.compile(r"databases/"),
    "logging": re.compile(r"logging/|service/logs.py"),
}


def py_spy() -> str:
    for candidate in (os.environ.get("PY_SPY"), shutil.which("py-spy"), str(Path(c.PY).parent / "py-spy"), "/tmp/probe/bin/py-spy"):
        if candidate and Path(candidate).exists():
            return candidate
    raise SystemExit("py-spy not found: pip install py-spy (into .venv, not into pyproject) or set PY_SPY")


MODES = {
    "gil": ["--gil"],  # only the thread holding the GIL: where Python-level CPU goes
    "native": ["--threads", "--native"],  # every thread, with C frames (sqlite3, uvloop); pauses the process per sample
    "threads": ["--threads", "--nonblocking"],  # every thread, Python frames only
}


def record(db: str, pending: int, seconds: float, connections: int, mode: str = "gil", env: dict[str, str] | None = None) -> Path:
    script = c.wrk_script(c.write_wrk_data(200_000))
    out = c.RESULTS / f"profile-{db}-{pending}-c{connections}-{mode}.txt"
    with c.BenchDB(db) as bdb:
        bdb.template("p", pending)
        url = bdb.fresh("p")
        with c.web(url, **(env or {})) as server:
            warm = c.wrk(server.url, script, connections=connections, seconds=2)
            spy = subprocess.Popen(
                [
                    py_spy(),
                    "record",
                    "--pid",
                    str(server.pid),
                    *MODES[mode],
                    "--rate",
                    "200",
                    "--duration",
                    str(int(seconds)),
                    "--format",
                    "raw",
                    "--output",
                    str(out),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            result: list[c.WrkResult] = []
            runner = threading.Thread(
                target=lambda: result.append(c.wrk(server.url, script, connections=connections, seconds=seconds + 1, offset=warm.issued))
            )
            runner.start()
            spy.wait(timeout=seconds + 60)
            runner.join()
        r = result[0]
        print(f"  {db}, {pending} pending, -c{connections}: {r.rate:.0f} events/s under the profiler (non-2xx {r.non2xx})")
    return out


def aggregate(path: Path, top: int = 15) -> str:
    """Self time by function, inclusive time by group and by service function, per thread, as Markdown."""
    totals: Counter[str] = Counter()
    self_time: dict[str, Counter[str]] = defaultdict(Counter)
    inclusive: dict[str, Counter[str]] = defaultdict(Counter)
    groups: dict[str, Counter[str]] = defaultdict(Counter)
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        label, *frames = stack.split(";")
        if not label.startswith("thread ("):  # recorded without --threads: one anonymous thread
            label, frames = "thread (0): GIL holder", [label, *frames]
        if not frames:
            continue
        thread = _thread_name(label)
        frames = [_short(f) for f in frames]
        totals[thread] += n
        self_time[thread][frames[-1]] += n
        for f in set(frames):
            if "(service/" in f:
                inclusive[thread][f] += n
        joined = ";".join(frames)
        for name, pattern in GROUPS.items():
            if pattern.search(joined):
                groups[thread][name] += n
    total = sum(totals.values())
    parts = [f"{total} samples (200/s); by thread: " + ", ".join(f"{t} {v / total:.0%}" for t, v in totals.most_common())]
    for thread, samples in totals.most_common():
        if samples / total < 0.05:
            continue
        parts.append(f"\n**{thread}** ({samples / total:.0%} of samples) — top self time (share of this thread's samples):\n")
        parts.append(c.table(["self %", "function"], [[f"{v / samples:.1%}", f"`{k}`"] for k, v in self_time[thread].most_common(top)]))
        if groups[thread]:
            parts.append("\ninclusive, by group:\n")
            parts.append(c.table(["incl %", "group"], [[f"{v / samples:.1%}", k] for k, v in groups[thread].most_common()]))
        if inclusive[thread]:
            parts.append("\ninclusive, service functions:\n")
            parts.append(c.table(["incl %", "function"], [[f"{v / samples:.1%}", f"`{k}`"] for k, v in inclusive[thread].most_common(top)]))
    return "\n".join(parts)


def _thread_name(label: str) -> str:
    name = label.split(":", 1)[1].strip() if ":" in label else label
    return "MainThread (event loop)" if name.startswith("MainThread") else re.sub(r"-\d+", "-N", name)


def _short(frame: str) -> str:
    """`func (path:line)` → `func (path)`: functions, not lines."""
    return re.sub(r":\d+\)$", ")", frame)


def main() -> None:
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--pending", type=int, default=10_000)
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--mode", choices=sorted(MODES), default="gil")
    p.add_argument("--raw", type=Path, help="only aggregate an existing raw file")
    p.add_argument("--env", action="append", default=[], help="KEY=VALUE for the web process (e.g. HOLD_WEBHOOK_MATCHING=1)")
    args = p.parse_args()
    texts = []
    if args.raw:
        texts.append(aggregate(args.raw))
    else:
        for db in c.databases(args.db):
            out = record(db, args.pending, args.seconds, args.connections, args.mode, dict(e.split("=", 1) for e in args.env))
            texts.append(
                f"### {db}, {args.pending:,} pending, wrk -c{args.connections}, py-spy {' '.join(MODES[args.mode])} (raw: bench/results/{out.name})\n\n"
                + aggregate(out)
            )
    text = "\n\n".join(texts)
    print(text)
    if args.append:
        m = c.machine()
        c.append(f"Profile — {m['date']}", f"{c.machine_line(m)}\n\n`{c.command_line()}`\n\n{text}")


if __name__ == "__main__":
    main()
