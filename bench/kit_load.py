"""Benchmark load: signed Cal.com webhook bodies, wrk with a body-cycling Lua script, load runs against a server."""

from __future__ import annotations

import atexit
import datetime as dt
import hashlib
import hmac
import json
import os
import re
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit_base import *
from kit_servers import *

# --- signed webhook bodies -------------------------------------------------------------------------

FIELDS = ("UID", "BID", "START", "END", "CREATED", "HOST", "ATT", "ETID")


def _template() -> list[str]:
    """Cal.com's documented BOOKING_CREATED example with placeholders, split at them."""
    envelope = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    p = envelope["payload"]
    envelope["createdAt"] = "@@CREATED@@"
    p["uid"] = "@@UID@@"
    p["bookingId"] = "@@BID@@"
    p["startTime"], p["endTime"] = "@@START@@", "@@END@@"
    p["eventTypeId"] = "@@ETID@@"
    p["organizer"]["email"] = "@@HOST@@"
    p["attendees"] = p["attendees"][:1]
    p["attendees"][0]["email"] = "@@ATT@@"
    p["responses"]["email"]["value"] = "@@ATT@@"
    p["responses"]["guests"]["value"] = []
    p["iCalUID"] = "@@UID@@@example.com"
    p["metadata"] = {"videoCallUrl": "https://app.example.com/video/@@UID@@"}
    text = json.dumps(envelope, separators=(",", ":"))
    text = text.replace('"@@BID@@"', "@@BID@@").replace('"@@ETID@@"', "@@ETID@@")
    return re.split(r"@@[A-Z]+@@", text), re.findall(r"@@([A-Z]+)@@", text)  # type: ignore[return-value]


SEGMENTS, ORDER = _template()


@dataclass(frozen=True)
class Booking:
    """One Cal.com booking the load stream announces, and what it is for."""

    index: int
    account: int
    kind: str  # "match" (completes a pending phase), "near" (a candidate that does not fit), "far"
    values: dict[str, str]

    @property
    def path(self) -> str:
        return f"/webhooks/calcom/{account_id(self.account)}"

    @property
    def body(self) -> bytes:
        return render(self.values)

    @property
    def signature(self) -> str:
        return hmac.new(webhook_secret(self.account).encode(), self.body, hashlib.sha256).hexdigest()


def render(values: dict[str, str]) -> bytes:
    out = [SEGMENTS[0]]
    for name, segment in zip(ORDER, SEGMENTS[1:]):
        out.append(values[name])
        out.append(segment)
    return "".join(out).encode()


def _iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def load_booking(i: int, tag: str = "ld") -> Booking:
    """Booking i of the load stream, the same for every run and every database size.

    Accounts round-robin. Of every 20 bookings of one account (stream positions j = i // 10):
    1 completes a pending phase of one of its first HOT verifications (its start, event type, host
    and attendee): "match" → a verdict when it completes the verification; 5 start 2 min after such
    a phase with another attendee: "near", a real candidate search that ends without a match; 14 start
    three years out, near no pending phase: "far" (the probe finds nothing).
    """
    a, j = i % ACCOUNTS, i // ACCOUNTS
    slot = j % 20
    m = dt.timedelta(minutes=1)
    if slot == 0:
        k = (j // 20) % HOT
        phase = "C" if (k % 4 == 3 and (j // 20 // HOT) % 2 == 1) else "A"
        start = phase_start(k) + (75 * m if phase == "C" else 0 * m)
        etid = "102" if phase == "C" else ("101" if k % 4 == 3 else "100")
        kind, who, host_email = "match", attendee(a, k), host(k)
    elif slot <= 5:
        k = (j * 7 + slot) % HOT
        start, etid, kind = phase_start(k) + 2 * m, "100", "near"
        who, host_email = f"walk-in-{i}@example.com", host(k)
    else:
        start, etid, kind = T0 + dt.timedelta(days=3 * 365) + j * m, "100", "far"
        who, host_email = f"other-{i}@example.com", "staff9@salon.example"
    created = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + i * dt.timedelta(milliseconds=1)
    values = {
        "UID": f"{tag}{i:07d}x{hashlib.sha1(str(i).encode()).hexdigest()[:8]}",
        "BID": str(50_000_000 + i),
        "START": _iso(start),
        "END": _iso(start + 30 * m),
        "CREATED": created.strftime("%Y-%m-%dT%H:%M:%S.") + f"{created.microsecond // 1000:03d}Z",
        "HOST": host_email,
        "ATT": who,
        "ETID": etid,
    }
    return Booking(i, a, kind, values)


def booking_for(a: int, start: dt.datetime, attendee_email: str, index: int, tag: str) -> Booking:
    """A booking outside the load stream's calendar (time-to-verdict runs)."""
    values = {
        "UID": f"{tag}{index:07d}x{uuid.uuid4().hex[:8]}",
        "BID": str(80_000_000 + index),
        "START": _iso(start),
        "END": _iso(start + dt.timedelta(minutes=30)),
        "CREATED": _iso(dt.datetime.now(dt.timezone.utc)),
        "HOST": "anna@salon.example",
        "ATT": attendee_email,
        "ETID": "101",
    }
    return Booking(index, a, "verdict", values)


def write_wrk_data(count: int) -> Path:
    """The load stream's first `count` bookings as lines: path, signature, then the fields in ORDER."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"webhooks-{T0:%Y%m%d}-{count}.tsv"
    if path.exists() and sum(1 for _ in path.open()) == count:
        return path
    with path.open("w", encoding="utf-8") as out:
        for i in range(count):
            b = load_booking(i)
            out.write("\t".join([b.path, b.signature, *(b.values[name] for name in ORDER)]) + "\n")
    return path


WRK_LUA = r"""
-- Cycles through pre-signed, unique Cal.com BOOKING_CREATED bodies: the body is the template's
-- segments joined with each line's fields, exactly as bench/common.py rendered it to sign it.
local segments = {SEGMENTS}
local data_path = "{DATA}"
local lines = {}
for line in io.lines(data_path) do lines[#lines + 1] = line end
local n = #lines
local offset = 0
issued = 0

function init(args)
  offset = tonumber(args[1] or "0") or 0
end

function request()
  local line = lines[((offset + issued) % n) + 1]
  issued = issued + 1
  local f = {}
  for part in string.gmatch(line, "[^\t]+") do f[#f + 1] = part end
  local body = {segments[1]}
  for k = 3, #f do
    body[#body + 1] = f[k]
    body[#body + 1] = segments[k - 1]
  end
  return wrk.format("POST", f[1], {["Content-Type"] = "application/json", ["X-Cal-Signature-256"] = f[2]}, table.concat(body))
end

local threads = {}
function setup(thread) threads[#threads + 1] = thread end

function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + t:get("issued") end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"issued":%d,"bodies":%d,"p50_us":%d,"p99_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout, total, n,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
"""


def wrk_script(data: Path) -> Path:
    lua = WRK_LUA.replace("{SEGMENTS}", "{" + ", ".join(_lua_string(s) for s in SEGMENTS) + "}").replace("{DATA}", str(data))
    path = RESULTS / f"webhooks-{os.getpid()}.lua"
    path.write_text(lua, encoding="utf-8")
    atexit.register(lambda: path.unlink(missing_ok=True))
    return path


def _lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


@dataclass
class WrkResult:
    requests: int
    seconds: float
    errors: int
    non2xx: int
    issued: int
    p50_ms: float
    p99_ms: float
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def wrk(url: str, script: Path, *, connections: int, seconds: float, offset: int = 0) -> WrkResult:
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s", "-s", str(script), url, "--", str(offset)]
    out = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60)
    match = re.search(r"WRKJSON (\{.*\})", out.stdout)
    if not match:
        raise RuntimeError(f"wrk failed: {out.stdout}\n{out.stderr}")
    r = json.loads(match.group(1))
    errors = r["connect"] + r["read"] + r["write"] + r["timeout"]
    return WrkResult(r["requests"], r["duration_us"] / 1e6, errors, r["status"], r["issued"], r["p50_us"] / 1000, r["p99_us"] / 1000, r)


@dataclass
class LoadRun:
    """One server under wrk: 2 s warm-up, then the measured run, with its checks."""

    rate: float
    p50_ms: float
    p99_ms: float
    requests: int
    completed: int  # warm-up + measured responses
    issued: int  # bodies handed to wrk's connections (≥ completed: some in flight at the end)
    errors: int
    non2xx: int
    cpu_ms_per_event: float
    rss_mb: float
    stored: int | None = None
    verdicts: int | None = None

    @property
    def ok(self) -> bool:
        stored_ok = self.stored is None or self.completed <= self.stored <= self.issued
        return self.errors == 0 and self.non2xx == 0 and stored_ok


def load(server: Server, script: Path, connections: int, *, warmup: float = 2.0, seconds: float = 10.0) -> LoadRun:
    warm = wrk(server.url, script, connections=connections, seconds=warmup, offset=0)
    cpu0 = server.cpu_seconds()
    run = wrk(server.url, script, connections=connections, seconds=seconds, offset=warm.issued)
    cpu = server.cpu_seconds() - cpu0
    if warm.issued + run.issued >= run.raw["bodies"]:
        if not server.name.startswith("bare"):  # the references neither dedupe nor match: repeats cost them the same
            print(f"  warning: {warm.issued + run.issued} requests cycled through {run.raw['bodies']} bodies (duplicates)", flush=True)
    return LoadRun(
        rate=run.rate,
        p50_ms=run.p50_ms,
        p99_ms=run.p99_ms,
        requests=run.requests,
        completed=warm.requests + run.requests,
        issued=warm.issued + run.issued,
        errors=warm.errors + run.errors,
        non2xx=warm.non2xx + run.non2xx,
        cpu_ms_per_event=cpu * 1000 / max(1, run.requests),
        rss_mb=server.rss_mb(),
    )


def measure_web(
    bdb: BenchDB, template: str, script: Path, connections: int, *, warmup: float = 2.0, seconds: float = 10.0, **env: str
) -> LoadRun:
    """`python -m service web` on a fresh copy of `template` under wrk; then count what it stored."""
    url = bdb.fresh(template)
    try:
        with web(url, **env) as server:
            run = load(server, script, connections, warmup=warmup, seconds=seconds)
        run.stored = int(bdb.query(url, "SELECT COUNT(*) FROM webhook_events"))
        run.verdicts = int(bdb.query(url, "SELECT COUNT(*) FROM verifications WHERE status = 'verified'"))
    finally:
        bdb.drop(url)
    return run


def measure_bare_store(
    bdb: BenchDB, template: str, script: Path, connections: int, *, warmup: float = 2.0, seconds: float = 10.0
) -> LoadRun:
    """bare_store_app.py on a fresh copy of `template` under wrk; then count the bodies it stored."""
    url = bdb.fresh(template)
    try:
        with bare_store(url) as server:
            run = load(server, script, connections, warmup=warmup, seconds=seconds)
        run.stored = int(bdb.query(url, "SELECT COUNT(*) FROM bare_bodies"))
    finally:
        bdb.drop(url)
    return run


def measure_bare(script: Path, connections: int, *, warmup: float = 2.0, seconds: float = 10.0) -> LoadRun:
    with bare() as server:
        return load(server, script, connections, warmup=warmup, seconds=seconds)


def count_kinds(n: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    for i in range(n):
        kind = load_booking(i).kind
        counts[kind] = counts.get(kind, 0) + 1
    return counts
