"""Time to verdict, both orders, against the first version's ≥ 2.6 s (a blocking 2 s sleep + a query).

    .venv/bin/python bench/verdict.py --db both [--n 300] [--append]

(a) webhook first: the BOOKING_CREATED webhook is answered, then `POST /api/verifications` records the
    failure; measured: the POST's latency, which must return `verified` (it matches inside the call).
(b) failure first: `POST /api/verifications` (pending), a `GET /api/verifications/{id}?wait=10` is left
    waiting, then the webhook is sent; measured: from sending the webhook until that GET returns `verified`.
Sequential, one appointment at a time, on a fresh copy of the 10,000-pending database; bookings lie in
a calendar region of their own, so each has exactly one candidate phase.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c

TARGET_P99_MS = 20.0
WARMUP = 20


def verification(a: int, appointment: str, start: dt.datetime, attendee: str) -> dict[str, object]:
    return {
        "account": c.account_id(a),
        "appointment_id": appointment,
        "service": "Herrenhaarschnitt",
        "sync_error": "Cal.com HTTP 400: bench",
        "phases": [
            {
                "key": "A",
                "start": start.isoformat(),
                "end": (start + dt.timedelta(minutes=30)).isoformat(),
                "event_type_id": 101,
                "host_email": "anna@salon.example",
                "attendee_email": attendee,
            }
        ],
    }


async def orders(port: int, n: int, *, tag: str = "v", base: dt.datetime | None = None) -> dict[str, dict[str, object]]:
    """Both orders once; `tag` and `base` keep a second call on the same database apart from the first."""
    client = c.Client(port)
    waiter = c.Client(port)
    base = base or c.T0 + dt.timedelta(days=2 * 365)
    out: dict[str, dict[str, object]] = {}

    # (a) webhook already in → POST /api/verifications returns verified
    times, wrong = [], 0
    for i in range(WARMUP + n):
        a, start = i % c.ACCOUNTS, base + i * dt.timedelta(minutes=30)
        who = f"verdict-{tag}a-{i}@example.com"
        status, _ = await c.post_webhook(client, c.booking_for(a, start, who, i, f"{tag}a"))
        assert status == 200, status
        t = time.perf_counter()
        status, view = await c.api(client, "POST", "/api/verifications", verification(a, f"{tag}a-{i}", start, who))
        elapsed = (time.perf_counter() - t) * 1000
        if i >= WARMUP:
            times.append(elapsed)
            wrong += status != 201 or view["status"] != "verified"
    out["a"] = {"p50": c.percentile(times, 50), "p99": c.percentile(times, 99), "max": max(times), "n": len(times), "wrong": wrong}

    # (b) failure recorded first → webhook → a waiting GET ?wait=10 returns verified
    times, hook, wrong = [], [], 0
    base = base + dt.timedelta(days=365)
    for i in range(WARMUP + n):
        a, start = i % c.ACCOUNTS, base + i * dt.timedelta(minutes=30)
        who = f"verdict-{tag}b-{i}@example.com"
        status, view = await c.api(client, "POST", "/api/verifications", verification(a, f"{tag}b-{i}", start, who))
        assert status == 201 and view["status"] == "pending", (status, view)
        waiting = asyncio.create_task(c.api(waiter, "GET", f"/api/verifications/{view['id']}?wait=10"))
        await asyncio.sleep(0.03)  # let the GET reach its wait (its own read is not part of the figure)
        t = time.perf_counter()
        status, _ = await c.post_webhook(client, c.booking_for(a, start, who, i, f"{tag}b"))
        answered = time.perf_counter()
        status_get, final = await waiting
        elapsed = (time.perf_counter() - t) * 1000
        if i >= WARMUP:
            times.append(elapsed)
            hook.append((answered - t) * 1000)
            wrong += status != 200 or status_get != 200 or final["status"] != "verified"
    out["b"] = {
        "p50": c.percentile(times, 50),
        "p99": c.percentile(times, 99),
        "max": max(times),
        "n": len(times),
        "wrong": wrong,
        "webhook_p99": c.percentile(hook, 99),
    }
    await client.close()
    await waiter.close()
    return out


def measure(dbs: list[str], *, n: int = 300, repeat: int = 3) -> tuple[str, list[tuple[str, str, str]]]:
    results: dict[str, list[dict[str, dict[str, object]]]] = {d: [] for d in dbs}
    benches = {d: c.BenchDB(d) for d in dbs}
    try:
        for d in dbs:
            benches[d].template("p", 10_000)
        for rep in range(repeat):
            for d in dbs:
                url = benches[d].fresh("p")
                try:
                    with c.web(url) as server:
                        r = c.run_async(orders(server.port, n))
                finally:
                    benches[d].drop(url)
                results[d].append(r)
                print(
                    f"  rep {rep + 1} {d}: (a) p50 {r['a']['p50']:.2f} p99 {r['a']['p99']:.2f} ms, wrong {r['a']['wrong']}; "
                    f"(b) p50 {r['b']['p50']:.2f} p99 {r['b']['p99']:.2f} ms, wrong {r['b']['wrong']}",
                    flush=True,
                )
    finally:
        for bdb in benches.values():
            bdb.cleanup()

    rows, summary = [], []
    seed_ms = c.SEED_SECONDS * 1000
    for d in dbs:
        for order, label in (("a", "(a) webhook first: POST latency"), ("b", "(b) failure first: webhook → GET ?wait")):
            runs = [r[order] for r in results[d]]
            p99 = c.median([r["p99"] for r in runs])  # type: ignore[misc]
            wrong = sum(r["wrong"] for r in runs)  # type: ignore[misc]
            rows.append(
                [
                    d,
                    label,
                    f"{c.median([r['p50'] for r in runs]):.2f}",  # type: ignore[misc]
                    f"**{p99:.2f}** (" + ", ".join(f"{r['p99']:.1f}" for r in runs) + ")",
                    f"{c.median([r['max'] for r in runs]):.1f}",
                    f"{p99 / seed_ms:.4f}× (1/{seed_ms / p99:.0f})",  # type: ignore[misc]
                    f"{runs[0]['n']} × {len(runs)}",
                    str(wrong),
                ]
            )
            summary.append(
                (
                    f"verdict {d} {order}",
                    f"p99 {p99:.1f} ms (first version ≥ {seed_ms:.0f} ms)",
                    c.verdict(p99 <= TARGET_P99_MS and wrong == 0),
                )
            )
        hook = c.median([r["b"]["webhook_p99"] for r in results[d]])  # type: ignore[misc]
        rows.append([d, "(b) the webhook's own answer", "", f"{hook:.2f}", "", "", "", ""])
    body = "\n".join(
        [
            f"Reference: the first version's time to verdict, ≥ {c.SEED_SECONDS:g} s (its 2 s blocking sleep plus one Cal.com query; not re-run). "
            f"{n} appointments per order per repetition after {WARMUP} warm-up ones, one at a time; median of {repeat} repetitions.",
            "",
            c.table(["db", "order", "p50 ms", "p99 ms", "max ms", "p99 vs first version", "n", "not verified"], rows),
        ]
    )
    return body, summary


def main() -> None:
    c.script(__doc__, "Time to verdict", measure, n=(int, 300), repeat=(int, 3))


if __name__ == "__main__":
    main()
