"""Shared benchmark machinery: processes on free ports, seeded databases and fresh copies, signed
Cal.com webhook bodies, wrk with a body-cycling Lua script, a small open-loop HTTP client, RSS and
CPU readings, and the BENCHMARKS.md writer.

Everything here drives the service from outside (its CLI, its HTTP interface) except seeding, which
writes rows with the service's own store functions so 100,000 pending verifications take seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
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


# --- processes --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout} s")


class Server:
    """A child process listening on `port`, its output in bench/results/logs/."""

    def __init__(self, name: str, args: list[str], env: dict[str, str] | None = None, port: int | None = None) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.port = port or free_port()
        self.log_path = LOGS / f"{name}-{os.getpid()}-{self.port}.log"
        self.log = self.log_path.open("wb")
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = subprocess.Popen(args, cwd=ROOT, env=full_env, stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_port(self.port, proc=self.proc)
        except Exception:
            self.stop()
            raise RuntimeError(f"{name} did not start; see {self.log_path}:\n{self.log_path.read_text(errors='replace')[-2000:]}")  # noqa: B904

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss_mb(self) -> float:
        return rss_mb(self.pid)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def rss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", text).group(1)) / 1024  # type: ignore[union-attr]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def web(database_url: str, **env: str) -> Server:
    """`python -m service web` as the Procfile runs it (one process, the CLI's uvicorn settings)."""
    port = free_port()
    settings = {"DATABASE_URL": database_url, "API_TOKEN": API_TOKEN, "PORT": str(port), "LOG_LEVEL": "WARNING", **env}
    return Server("web", [PY, "-m", "service", "web"], settings, port)


def bare() -> Server:
    """bench/bare_app.py: a Starlette endpoint that only checks the HMAC, same uvicorn settings."""
    port = free_port()
    secrets = json.dumps({account_id(a): webhook_secret(a) for a in range(ACCOUNTS)})
    return Server("bare", [PY, str(BENCH / "bare_app.py"), "--port", str(port)], {"BENCH_SECRETS": secrets}, port)


def fake_calcom(api_keys: Sequence[str], limit: int = 120) -> Server:
    port = free_port()
    args = [PY, "-m", "service.testing.fakecalcom", "--port", str(port), "--limit", str(limit)]
    for key in api_keys:
        args += ["--api-key", key]
    return Server("fakecalcom", args, {}, port)


def migrate(database_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "LOG_LEVEL": "WARNING"}
    subprocess.run([PY, "-m", "service", "migrate"], cwd=ROOT, env=env, check=True, capture_output=True)


# --- accounts and pending verifications -------------------------------------------------------------


def account_id(a: int) -> str:
    return f"bench-{a}"


def webhook_secret(a: int) -> str:
    return f"bench-webhook-secret-{a}-4f1c9a"


def api_key(a: int) -> str:
    return f"cal_live_bench_{a}_8d2e7b"


def phase_start(k: int) -> dt.datetime:
    return T0 + k * GRID


def host(k: int) -> str:
    return f"staff{k % 5}@salon.example"


def attendee(a: int, k: int) -> str:
    return f"kunde-{a}-{k}@example.com"


def verification_phases(a: int, k: int) -> list[dict[str, Any]]:
    """Every fourth one a Dauerwelle (A–D, A and C staff-required), the rest a one-phase haircut."""
    s = phase_start(k)
    m = dt.timedelta(minutes=1)
    common = {"host_email": host(k), "attendee_email": attendee(a, k)}
    if k % 4 == 3:
        return [
            {"key": "A", "start": s, "end": s + 30 * m, "event_type_id": 101, **common},
            {"key": "B", "start": s + 30 * m, "end": s + 75 * m, "staff_required": False},
            {"key": "C", "start": s + 75 * m, "end": s + 105 * m, "event_type_id": 102, **common},
            {"key": "D", "start": s + 105 * m, "end": s + 120 * m, "staff_required": False},
        ]
    return [{"key": "A", "start": s, "end": s + 30 * m, "event_type_id": 100, **common}]


async def seed(database_url: str, pending: int, *, calcom_api_base: str | None = None, created_at: dt.datetime | None = None) -> None:
    """Accounts bench-0…9 and `pending` pending verifications spread evenly over them.

    Rows are shaped as `service.intake.Intake._insert` shapes them and written with
    `service.store.verifications.insert`, a few thousand per transaction.
    """
    from service.core import schedule
    from service.core.models import VerificationIn
    from service.settings import normalize_database_url
    from service.store.connector import Database
    from service.store.queries import accounts as account_store
    from service.store.queries import verifications as verification_store

    db = Database(normalize_database_url(database_url))
    await db.connect()
    created = created_at or dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=5)
    deadline = schedule.deadline(created, 2.0, (10.0, 30.0, 120.0, 600.0))
    try:
        async with db.transaction() as tx:
            for a in range(ACCOUNTS):
                await account_store.upsert(
                    tx,
                    account_id(a),
                    {
                        "calcom_api_key": api_key(a),
                        "webhook_secret": webhook_secret(a),
                        "calcom_api_base": calcom_api_base,
                        "callback_url": None,
                        "callback_secret": None,
                        "match_tolerance_seconds": TOLERANCE,
                        "enabled": True,
                    },
                    created,
                )

        def rows(a: int, k: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
            request = VerificationIn.model_validate(
                {"account": account_id(a), "appointment_id": str(k), "service": "Dauerwelle" if k % 4 == 3 else "Herrenhaarschnitt",
                 "sync_error": "Cal.com HTTP 400: bench", "phases": verification_phases(a, k)}
            )
            required = [p for p in request.phases if p.staff_required]
            row = {
                "id": str(uuid.uuid4()), "account": request.account, "appointment_id": request.appointment_id,
                "service": request.service, "sync_error": request.sync_error, "fingerprint": request.fingerprint(),
                "status": "pending", "review_reason": None, "resolved_via": None, "resolved_at": None,
                "window_start_at": min(p.start for p in required),
                "window_end_at": max((p.end or p.start + dt.timedelta(hours=12)) for p in required),
                "next_check_at": created + dt.timedelta(seconds=2), "deadline_at": deadline, "now": created,
            }
            phases = [
                {"key": p.key, "position": i, "account": request.account, "start_at": p.start, "end_at": p.end,
                 "event_type_id": p.event_type_id, "host_email": p.host_email, "attendee_email": p.attendee_email,
                 "staff_required": p.staff_required, "active": p.staff_required,
                 "status": "pending" if p.staff_required else "not_required"}
                for i, p in enumerate(request.phases)
            ]
            return row, phases

        per_account = pending // ACCOUNTS

        async def write(a: int) -> None:
            for start in range(0, per_account, 2000):
                async with db.transaction() as tx:
                    for k in range(start, min(per_account, start + 2000)):
                        await verification_store.insert(tx, *rows(a, k))

        if db.dialect == "postgresql":
            await asyncio.gather(*(write(a) for a in range(ACCOUNTS)))
        else:
            for a in range(ACCOUNTS):
                await write(a)
    finally:
        await db.disconnect()


# --- databases: a seeded template per size, a fresh copy per run -------------------------------------


class BenchDB:
    """Seeded templates and fresh copies of them, for one dialect."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self.tag = f"{os.getpid()}_{uuid.uuid4().hex[:4]}"
        self.templates: dict[str, str] = {}
        self.copies: list[str] = []
        self.dir = RESULTS / "db"
        self.dir.mkdir(parents=True, exist_ok=True)

    def template(self, name: str, pending: int, **seed_options: Any) -> str:
        """Create (once) a migrated template with `pending` pending verifications; its name."""
        if name in self.templates:
            return name
        started = time.monotonic()
        if self.dialect == "sqlite":
            path = self.dir / f"tmpl_{name}_{self.tag}.sqlite3"
            url = f"sqlite:///{path}"
            migrate(url)
            asyncio.run(seed(url, pending, **seed_options))
            with contextlib.closing(sqlite3.connect(path)) as c:
                c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self.templates[name] = str(path)
        else:
            db = f"bench_tmpl_{name}_{self.tag}"
            admin(f"CREATE DATABASE {db}")
            url = with_db(PG_ADMIN, db)
            migrate(url)
            asyncio.run(seed(url, pending, **seed_options))
            admin("ANALYZE", database=db)  # what autovacuum would have done by then in production
            self.templates[name] = db
        print(f"  seeded {self.dialect} template {name!r}: {pending} pending in {time.monotonic() - started:.1f} s", flush=True)
        return name

    def fresh(self, name: str) -> str:
        """A new database copied from a template; its URL."""
        if self.dialect == "sqlite":
            path = self.dir / f"run_{uuid.uuid4().hex[:8]}.sqlite3"
            shutil.copyfile(self.templates[name], path)
            url = f"sqlite:///{path}"
        else:
            db = f"bench_run_{uuid.uuid4().hex[:8]}"
            # FILE_COPY: copy the files after a checkpoint instead of WAL-logging every page of the
            # template (PostgreSQL 15's default), whose writes and checkpoint would overlap the run.
            admin(f"CREATE DATABASE {db} TEMPLATE {self.templates[name]} STRATEGY = FILE_COPY")
            url = with_db(PG_ADMIN, db)
        self.copies.append(url)
        return url

    def drop(self, url: str) -> None:
        if url in self.copies:
            self.copies.remove(url)
        if self.dialect == "sqlite":
            path = url.split(":///", 1)[1]
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(OSError):
                    os.unlink(path + suffix)
        else:
            admin(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")

    def query(self, url: str, statement: str) -> Any:
        """One value from a copy (after its server stopped, or any time on PostgreSQL)."""
        if self.dialect == "sqlite":
            with contextlib.closing(sqlite3.connect(url.split(":///", 1)[1])) as c:
                return c.execute(statement).fetchone()[0]
        return admin(statement, database=url.rsplit("/", 1)[1], fetch=True)

    def cleanup(self) -> None:
        for url in list(self.copies):
            with contextlib.suppress(Exception):
                self.drop(url)
        for value in self.templates.values():
            with contextlib.suppress(Exception):
                self.drop(f"sqlite:///{value}" if self.dialect == "sqlite" else with_db(PG_ADMIN, value))
        self.templates.clear()
        self.copies.clear()

    def __enter__(self) -> BenchDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def with_db(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


def admin(statement: str, *, database: str | None = None, fetch: bool = False) -> Any:
    import asyncpg

    async def run() -> Any:
        connection = await asyncpg.connect(with_db(PG_ADMIN, database) if database else PG_ADMIN)
        try:
            return await connection.fetchval(statement) if fetch else await connection.execute(statement)
        finally:
            await connection.close()

    return asyncio.run(run())


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
        if server.name != "bare":  # the bare endpoint stores nothing: repeats cost it the same
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


def measure_web(bdb: BenchDB, template: str, script: Path, connections: int, *, warmup: float = 2.0, seconds: float = 10.0) -> LoadRun:
    """`python -m service web` on a fresh copy of `template` under wrk; then count what it stored."""
    url = bdb.fresh(template)
    try:
        with web(url) as server:
            run = load(server, script, connections, warmup=warmup, seconds=seconds)
        run.stored = int(bdb.query(url, "SELECT COUNT(*) FROM webhook_events"))
        run.verdicts = int(bdb.query(url, "SELECT COUNT(*) FROM verifications WHERE status = 'verified'"))
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


# --- a small open-loop HTTP/1.1 client ----------------------------------------------------------------


class Client:
    """Keep-alive HTTP/1.1 over asyncio streams: little client overhead, one request per connection at a time."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.host, self.port = host, port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self.opened = 0

    async def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        for attempt in (1, 2):
            reader, writer = await self._connection()
            writer.write(data)
            status_line = await reader.readline()
            if status_line:
                break
            # uvicorn closes keep-alive connections idle for 5 s; the request was not read: resend once.
            writer.close()
            if attempt == 2:
                raise ConnectionError("the server closed the connection without answering")
        length = 0
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value.strip())
        payload = await reader.readexactly(length) if length else b""
        self.idle.append((reader, writer, time.monotonic()))
        return int(status_line.split()[1]), payload

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while self.idle:
            reader, writer, since = self.idle.pop()
            if time.monotonic() - since < 3.0:
                return reader, writer
            writer.close()
        self.opened += 1
        return await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        for _, writer, _since in self.idle:
            writer.close()
        self.idle.clear()


async def post_webhook(client: Client, booking: Booking) -> tuple[int, bytes]:
    return await client.request(
        "POST", booking.path, booking.body, {"Content-Type": "application/json", "X-Cal-Signature-256": booking.signature}
    )


async def api(client: Client, method: str, path: str, payload: Any = None) -> tuple[int, Any]:
    body = json.dumps(payload).encode() if payload is not None else b""
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    if payload is not None:
        headers["Content-Type"] = "application/json"
    status, raw = await client.request(method, path, body, headers)
    return status, (json.loads(raw) if raw else None)


def run_async(coro: Any) -> Any:
    with contextlib.suppress(ImportError):
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)
