"""Benchmark processes on free ports (the service, the bare reference, the fake Cal.com) and databases (a filled template, a fresh copy per run)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kit_base import *
from kit_seed import *

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


def bare_store(database_url: str) -> Server:
    """bench/bare_store_app.py: the bare endpoint plus a group-committed durable insert of the raw body."""
    port = free_port()
    secrets = json.dumps({account_id(a): webhook_secret(a) for a in range(ACCOUNTS)})
    env = {"BENCH_SECRETS": secrets, "DATABASE_URL": database_url}
    return Server("bare-store", [PY, str(BENCH / "bare_store_app.py"), "--port", str(port)], env, port)


def fake_calcom(api_keys: Sequence[str], limit: int = 120) -> Server:
    port = free_port()
    args = [PY, "-m", "service.testing.fakecalcom", "--port", str(port), "--limit", str(limit)]
    for key in api_keys:
        args += ["--api-key", key]
    return Server("fakecalcom", args, {}, port)


def migrate(database_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "LOG_LEVEL": "WARNING"}
    subprocess.run([PY, "-m", "service", "migrate"], cwd=ROOT, env=env, check=True, capture_output=True)


# --- databases: a filled template per size, a fresh copy per run -------------------------------------


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
        print(f"  filled {self.dialect} template {name!r}: {pending} pending in {time.monotonic() - started:.1f} s", flush=True)
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
