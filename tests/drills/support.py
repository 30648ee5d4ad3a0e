"""What the fault drills share: a private PostgreSQL cluster, fresh databases, HTTP servers in
threads (a callback receiver, an in-process fake Cal.com with request timestamps), database
inspection, and the check that no process wrote a secret to its log.

Drills run real processes (`python -m service migrate|web|poll`) from tests/processes.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..helpers import ALL_SECRETS, API_TOKEN
from ..processes import ROOT, Process, free_port, service_env, wait_until

PG_BIN = Path(os.environ.get("DRILL_PG_BIN", "/usr/lib/postgresql/15/bin"))
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


# --- PostgreSQL ---------------------------------------------------------------------------------


def _as_postgres(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    command = list(args)
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    return subprocess.run(command, check=check, capture_output=True, text=True, timeout=timeout)


def private_cluster_available() -> str | None:
    """None when a private cluster can be started here, else why not."""
    if not (PG_BIN / "initdb").exists():
        return f"no PostgreSQL binaries in {PG_BIN} (set DRILL_PG_BIN)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root but there is no postgres user to own the cluster"
    return None


class PrivateCluster:
    """A PostgreSQL cluster of our own on a free port, so a drill may stop it without hurting anyone."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="drill-pg-"))
        self.data = self.base / "data"
        self.log = self.base / "postgres.log"
        self.port = free_port()
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
        _as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        self.stops = 0

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=on"
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """`pg_ctl stop -m fast`: sessions are terminated, the server shuts down cleanly."""
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")
        self.stops += 1

    def running(self) -> bool:
        return _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "status", check=False).returncode == 0

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            if self.running():
                self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


async def _admin(url: str, *statements: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


def _database_url(server_url: str, name: str) -> str:
    return urlunsplit(urlsplit(server_url)._replace(path="/" + name))


@contextlib.contextmanager
def fresh_database(server_url: str, prefix: str) -> Iterator[str]:
    """CREATE DATABASE <prefix>_<random>, migrated by the real `release` command; dropped afterwards."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    asyncio.run(_admin(server_url, f"CREATE DATABASE {name}"))
    url = _database_url(server_url, name)
    try:
        migrate(url)
        yield url
    finally:
        with contextlib.suppress(Exception):
            asyncio.run(_admin(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def migrate(url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "service", "migrate"], cwd=ROOT, env=service_env(url), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def query(url: str, statement: str, *args: Any) -> list[dict[str, Any]]:
    """Rows of one statement on a fresh connection (the drill's view of the truth)."""

    async def run() -> list[dict[str, Any]]:
        connection = await asyncpg.connect(url, timeout=10)
        try:
            return [dict(row) for row in await connection.fetch(statement, *args)]
        finally:
            await connection.close()

    return asyncio.run(run())


def scalar(url: str, statement: str, *args: Any) -> Any:
    rows = query(url, statement, *args)
    return next(iter(rows[0].values())) if rows else None


# --- processes ----------------------------------------------------------------------------------


class Service:
    """A `python -m service <command>` process whose log survives until the drill has read it."""

    def __init__(self, command: str, env: dict[str, str], name: str) -> None:
        self.command, self.env, self.name = command, env, name
        self.process = Process([sys.executable, "-m", "service", command], env, name)
        self.stopped_log: str | None = None

    @property
    def pid(self) -> int:
        return self.process.popen.pid

    def alive(self) -> bool:
        return self.process.popen.poll() is None

    def output(self) -> str:
        return self.stopped_log if self.stopped_log is not None else self.process.output()

    def tail(self, lines: int = 40) -> str:
        return f"--- {self.name} (last {lines} lines) ---\n" + "\n".join(self.output().splitlines()[-lines:])

    def kill(self, signum: int) -> int:
        self.process.signal(signum)
        return self.process.wait(30)

    def stop(self) -> str:
        """SIGTERM (as a process manager would) and answer the whole log; stopping twice is fine."""
        if self.stopped_log is None:
            popen = self.process.popen
            if popen.poll() is None:
                popen.send_signal(signal.SIGTERM)
                try:
                    popen.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    popen.kill()
                    popen.wait()
            text = self.process.output()  # read after the process ended, so nothing is missed
            self.process.stop()
            self.stopped_log = text
        return self.stopped_log


@contextlib.contextmanager
def services(*specs: tuple[str, dict[str, str], str]) -> Iterator[list[Service]]:
    running = [Service(*spec) for spec in specs]
    try:
        yield running
    finally:
        for service in running:
            service.stop()


def web_env(database_url: str, port: int, **extra: str) -> dict[str, str]:
    return service_env(database_url, PORT=str(port), API_TOKEN=API_TOKEN, **extra)


def wait_healthy(base: str, timeout: float = 30) -> None:
    with httpx.Client(base_url=base, timeout=5) as http:
        wait_until(lambda: http.get("/healthz").status_code == 200, timeout, f"{base} to listen")


def secrets_in(text: str) -> list[str]:
    """Known test secrets that appear in a process log (SPEC §9: never in logs)."""
    return [secret for secret in ALL_SECRETS if secret in text]


# --- HTTP servers in threads -------------------------------------------------------------------


class ServerThread:
    """An ASGI app served by uvicorn on a free port in a daemon thread."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            access_log=False,
            lifespan="off",
            ws="none",
            loop="asyncio",
            http="h11",
            timeout_keep_alive=30,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"server-{self.port}", daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        wait_until(lambda: self.server.started, 15, "a server thread to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)


@dataclass
class Delivery:
    webhook_id: str
    verification_id: str | None
    status: str | None
    review_reason: str | None
    signature_ok: bool
    at: float


@dataclass
class CallbackReceiver:
    """The platform's callback endpoint: records every POST by `webhook-id` and checks its signature."""

    secret: str
    deliveries: list[Delivery] = field(default_factory=list)
    hold: threading.Event = field(default_factory=threading.Event)  # set: requests wait until cleared
    held: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Starlette:
        from standardwebhooks.webhooks import Webhook, WebhookVerificationError

        verifier = Webhook(self.secret)

        async def hook(request: Request) -> Response:
            body = await request.body()
            try:
                event = verifier.verify(body, dict(request.headers))
                ok = True
            except WebhookVerificationError:
                event, ok = {}, False
            verification = event.get("verification", {}) if isinstance(event, dict) else {}
            delivery = Delivery(
                request.headers.get("webhook-id", ""),
                verification.get("id"),
                verification.get("status"),
                verification.get("review_reason"),
                ok,
                time.monotonic(),
            )
            with self.lock:
                self.deliveries.append(delivery)
                holding = self.hold.is_set()
                if holding:
                    self.held += 1
            while self.hold.is_set():  # the poller is inside its POST for as long as the drill wants
                await asyncio.sleep(0.02)
            return JSONResponse({"ok": ok}, 200 if ok else 400)

        return Starlette(routes=[Route("/hook", hook, methods=["POST"])])

    def ids(self) -> Counter[str]:
        with self.lock:
            return Counter(d.webhook_id for d in self.deliveries)

    def snapshot(self) -> list[Delivery]:
        with self.lock:
            return list(self.deliveries)


@contextlib.contextmanager
def callback_receiver(secret: str) -> Iterator[tuple[CallbackReceiver, str]]:
    receiver = CallbackReceiver(secret)
    with ServerThread(receiver.app()) as server:
        try:
            yield receiver, server.base + "/hook"
        finally:
            receiver.hold.clear()


class TimedFake:
    """An in-process fake Cal.com whose `GET /v2/bookings` requests are timestamped (monotonic) and
    answered by a fault script: the n-th request gets the n-th entry, applied with the fake's own
    fault switches just before it answers — an HTTP status (`fail_next`), "slow" (`set_delay` past
    the client's timeout) or "ok" — and every request after the script gets `then`."""

    def __init__(self, *api_keys: str, script: list[int | str] = (), then: int | str = "ok", slow_seconds: float = 3.0) -> None:
        from service.testing.fakecalcom import FakeCalcom

        self.fake = FakeCalcom()
        for key in api_keys:
            self.fake.add_api_key(key)
        self.script, self.then, self.slow_seconds = list(script), then, slow_seconds
        self.calls: list[tuple[float, int | str]] = []  # (when, the scripted answer)
        inner = self.fake.app

        async def app(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http" and scope["path"] == "/v2/bookings":
                action = self.script[len(self.calls)] if len(self.calls) < len(self.script) else self.then
                self.calls.append((time.monotonic(), action))
                self.fake.set_delay(self.slow_seconds if action == "slow" else 0.0)
                if isinstance(action, int):
                    self.fake.fail_next(1, action)
            await inner(scope, receive, send)

        self.server = ServerThread(app)

    @property
    def base(self) -> str:
        return self.server.base

    def __enter__(self) -> TimedFake:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__(*exc)

    def times(self) -> list[float]:
        return [t for t, _ in list(self.calls)]


# --- API helpers -------------------------------------------------------------------------------


def put_account(base: str, account: str, **fields: Any) -> None:
    from ..helpers import API_KEY, WEBHOOK_SECRET

    body = {"calcom_api_key": API_KEY, "webhook_secret": WEBHOOK_SECRET, **fields}
    with httpx.Client(base_url=base, timeout=10) as http:
        response = http.put(f"/api/accounts/{account}", json=body, headers=AUTH)
    assert response.status_code in (200, 201), response.text


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))]
