"""Booking guard: what a create costs through the guard vs straight to the same fake Cal.com, and recovery time.

    .venv/bin/python bench/guard.py --db sqlite [--seconds 20] [--recoveries 200] [--append]

Two processes: the fake Cal.com (which sends its booking webhooks to the service inside each create,
as Cal.com does) and `python -m service web`. In the same run:

* Successful creates, open loop at `--rate` creates/s (default 50), alternating one straight to the
  fake and one through `/calcom/{account}/v2/bookings`, each to its own slot; every latency is
  measured from its *scheduled* send time to the end of its answer. Added = guard p99 − direct p99.
* Recovered false negatives: creates the fake answers 500 after writing the booking and sending its
  webhook (so the webhook is in), one at a time, alternating direct (the 500 itself) and guarded
  (the recovered 201). Recovery = guarded p99 − direct p99: the time from Cal.com's error answer to
  the guard's 201.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c

ADDED_P99_TARGET_MS = 3.0
RECOVERY_P99_TARGET_MS = 20.0
ACCOUNT = "bench-guard"
KEY = "cal_live_bench_guard_0123456789ab"
SECRET = "bench-guard-webhook-secret-0123"
EVENT_TYPE = 1001


def _body(k: int, tag: str) -> dict[str, Any]:
    start = c.T0 + dt.timedelta(minutes=30 * k)
    return {
        "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventTypeId": EVENT_TYPE,
        "attendee": {"name": "Bench", "email": f"{tag}{k}@bench.example", "timeZone": "Europe/Berlin"},
        "metadata": {"appointment_id": f"{tag}-{k}", "phase": "A"},
    }


async def _setup(fake: httpx.AsyncClient, web: httpx.AsyncClient, fake_url: str, web_url: str) -> None:
    await fake.post("/_fake/api-keys", json={"api_key": KEY})
    await fake.post("/_fake/webhooks", json={"api_key": KEY, "url": f"{web_url}/webhooks/calcom/{ACCOUNT}", "secret": SECRET})
    account = {"calcom_api_key": KEY, "webhook_secret": SECRET, "calcom_api_base": fake_url}
    answer = await web.put(f"/api/accounts/{ACCOUNT}", json=account, headers={"Authorization": f"Bearer {c.API_TOKEN}"})
    assert answer.status_code in (200, 201), answer.text


async def _successes(
    fake: httpx.AsyncClient, web: httpx.AsyncClient, rate: float, seconds: float, warmup: float, first: int
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {KEY}", "cal-api-version": "2024-08-13"}
    total = int(rate * (warmup + seconds))
    skip = int(rate * warmup)
    latencies: dict[str, list[float]] = {"direct": [], "guard": []}
    failures: dict[str, int] = {"direct": 0, "guard": 0}
    clock = time.perf_counter
    begin = clock() + 0.05

    async def one(k: int, scheduled: float) -> None:
        path = "direct" if k % 2 == 0 else "guard"
        client, url = (fake, "/v2/bookings") if path == "direct" else (web, f"/calcom/{ACCOUNT}/v2/bookings")
        try:
            response = await client.post(url, json=_body(first + k, "ok"), headers=headers)
            ok = response.status_code == 201
        except httpx.HTTPError:
            ok = False
        if k >= skip:
            latencies[path].append((clock() - scheduled) * 1000)
            failures[path] += 0 if ok else 1

    tasks = []
    for k in range(total):
        scheduled = begin + k / rate
        delay = scheduled - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(k, scheduled)))
    await asyncio.gather(*tasks)
    return {"latencies": latencies, "failures": failures}


async def _recoveries(fake: httpx.AsyncClient, web: httpx.AsyncClient, n: int, first: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {KEY}", "cal-api-version": "2024-08-13"}
    latencies: dict[str, list[float]] = {"direct": [], "guard": []}
    wrong = 0
    for k in range(2 * n):
        path = "direct" if k % 2 == 0 else "guard"
        await fake.post("/_fake/fail-next-create", json={"mode": "error_after_write_500"})
        client, url = (fake, "/v2/bookings") if path == "direct" else (web, f"/calcom/{ACCOUNT}/v2/bookings")
        began = time.perf_counter()
        response = await client.post(url, json=_body(first + k, "fn"), headers=headers)
        latencies[path].append((time.perf_counter() - began) * 1000)
        expected = 500 if path == "direct" else 201
        wrong += response.status_code != expected
    return {"latencies": latencies, "wrong": wrong}


def _row(name: str, values: list[float]) -> list[Any]:
    return [name, len(values), f"{c.percentile(values, 50):.2f}", f"{c.percentile(values, 99):.2f}", f"{max(values):.2f}"]


def measure(dbs: list[str], *, rate: float, seconds: float, recoveries: int) -> tuple[str, list[list[Any]]]:
    body, summary = [], []
    for dialect in dbs:
        if dialect == "sqlite":
            c.RESULTS.mkdir(parents=True, exist_ok=True)
            url = f"sqlite:///{c.RESULTS / f'guard-{uuid.uuid4().hex[:6]}.sqlite3'}"
        else:
            url = c.PG_ADMIN  # the database BENCH_PG_URL names, used as it is
        c.migrate(url)
        with c.fake_calcom([KEY], limit=1_000_000) as fake_server, c.web(url) as web_server:

            async def run() -> tuple[dict[str, Any], dict[str, Any]]:
                limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
                async with (
                    httpx.AsyncClient(base_url=fake_server.url, limits=limits, timeout=60) as fake,
                    httpx.AsyncClient(base_url=web_server.url, limits=limits, timeout=60) as web,
                ):
                    await _setup(fake, web, fake_server.url, web_server.url)
                    offset = int(time.time()) % 100_000 * 10  # fresh slots on a reused database
                    ok = await _successes(fake, web, rate, seconds, 2.0, offset)
                    fn = await _recoveries(fake, web, recoveries, offset + int(rate * (seconds + 2)) + 10)
                    return ok, fn

            ok, fn = c.run_async(run())
        direct, guard = ok["latencies"]["direct"], ok["latencies"]["guard"]
        added = c.percentile(guard, 99) - c.percentile(direct, 99)
        fn_direct, fn_guard = fn["latencies"]["direct"], fn["latencies"]["guard"]
        recovery = c.percentile(fn_guard, 99) - c.percentile(fn_direct, 99)
        body.append(
            f"### {dialect}\n\n"
            + c.table(
                ["creates", "n", "p50 ms", "p99 ms", "max ms"],
                [
                    _row("successful, direct to the fake", direct),
                    _row("successful, through the guard", guard),
                    _row("500 after the write, direct (the error)", fn_direct),
                    _row("500 after the write, guard (recovered 201)", fn_guard),
                ],
            )
            + f"\n\nfailed successful creates: direct {ok['failures']['direct']}, guard {ok['failures']['guard']}; "
            f"recoveries answered other than expected: {fn['wrong']}"
        )
        summary.append(
            [
                f"{dialect}: guard p99 added at {rate:g} creates/s ≤ {ADDED_P99_TARGET_MS:g} ms",
                f"{added:.2f} ms",
                c.verdict(added <= ADDED_P99_TARGET_MS and not ok["failures"]["guard"] and not ok["failures"]["direct"]),
            ]
        )
        summary.append(
            [
                f"{dialect}: recovery (error answer → 201) p99 ≤ {RECOVERY_P99_TARGET_MS:g} ms",
                f"{recovery:.2f} ms",
                c.verdict(recovery <= RECOVERY_P99_TARGET_MS and not fn["wrong"]),
            ]
        )
    return "\n\n".join(body), summary


if __name__ == "__main__":
    c.script(
        __doc__ or "", "Booking guard overhead and recovery", measure, rate=(float, 50.0), seconds=(float, 20.0), recoveries=(int, 200)
    )
