"""Shared fixtures: every database test runs on SQLite and, with TEST_DATABASE_URL, on PostgreSQL.

Each test gets a fresh database: SQLite a new migrated file, PostgreSQL a copy of a migrated
template (`CREATE DATABASE … TEMPLATE`), dropped afterwards.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from service.logs import JsonFormatter, quiet_libraries, secret_registry
from service.settings import Settings, normalize_database_url
from service.store import secretbox
from service.store.connector import Database
from service.store.migrations import migrate
from service.web.app import create_app

from .helpers import API_TOKEN, TEST_SECRET_KEY, FakeClock

PG_URL = os.environ.get("TEST_DATABASE_URL")

# The accounts' secrets are stored encrypted under SECRET_KEYS; the suite (and every process it
# starts) uses one fixed test key. Its fakes listen on localhost, which only ALLOW_PRIVATE_TARGETS
# lets an account point at.
os.environ.setdefault("SECRET_KEYS", TEST_SECRET_KEY)
os.environ.setdefault("ALLOW_PRIVATE_TARGETS", "true")
secretbox.install(secretbox.SecretBox(os.environ["SECRET_KEYS"].split(",")))
PG_SKIP_REASON = (
    "PostgreSQL tests skipped: set TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test to run them (CI does, see .ci/run)"
)
_counter = itertools.count()
_template: dict[str, str] = {}


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def _plain(url: str) -> str:
    return normalize_database_url(url).replace("postgresql+asyncpg://", "postgresql://", 1)


async def _admin_execute(statement: str) -> None:
    assert PG_URL
    connection = await asyncpg.connect(_plain(PG_URL))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def _pg_template() -> str:
    if "name" not in _template:
        name = f"verifier_tmpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        await _admin_execute(f"DROP DATABASE IF EXISTS {name}")
        await _admin_execute(f"CREATE DATABASE {name}")
        db = Database(normalize_database_url(_with_database(PG_URL or "", name)))
        await db.connect()
        try:
            await migrate(db)
        finally:
            await db.disconnect()
        _template["name"] = name
    return _template["name"]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    name = _template.pop("name", None)
    if name and PG_URL:
        asyncio.run(_admin_execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "/drills/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.drill)


def pytest_report_header(config: pytest.Config) -> str:
    return f"databases: sqlite + {'postgresql (TEST_DATABASE_URL)' if PG_URL else 'postgresql SKIPPED (no TEST_DATABASE_URL)'}"


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, migrated, empty database; its URL."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'verifier.sqlite3'}"
        db = Database(url)
        await db.connect()
        try:
            await migrate(db)
        finally:
            await db.disconnect()
        yield url
        return
    if not PG_URL:
        pytest.skip(PG_SKIP_REASON)
    template = await _pg_template()
    name = f"verifier_t_{os.getpid()}_{next(_counter)}"
    await _admin_execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    try:
        yield normalize_database_url(_with_database(PG_URL, name))
    finally:
        await _admin_execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc))


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        _env_file=None,
        database_url=database_url,
        api_token=API_TOKEN,
        settle_seconds=2,
        check_schedule=(10, 30, 120, 600),
        max_body_bytes=65536,
    )


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    await database.connect()
    try:
        yield database
    finally:
        await database.disconnect()


@pytest.fixture
def calcom_transport() -> httpx.AsyncBaseTransport:
    """Cal.com as the web app reaches it (a replaced API key is tried at once): a 503 unless a test routes it."""
    return httpx.MockTransport(lambda request: httpx.Response(503, json={"status": "error"}))


@pytest.fixture
async def app(settings: Settings, clock: FakeClock, calcom_transport: httpx.AsyncBaseTransport) -> AsyncIterator[object]:
    application = create_app(settings, clock=clock, calcom_transport=calcom_transport)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: object) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://verifier.test") as http:
        yield http


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.formatter_ = JsonFormatter()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            raw = record.getMessage() + " " + " ".join(f"{k}={v}" for k, v in vars(record).items())
            self.lines.append(raw)
            self.lines.append(self.formatter_.format(record))
        except Exception:  # a log record that cannot format is a bug, but not this check's
            pass


@pytest.fixture(autouse=True)
def no_secret_in_logs(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test: no known test secret may appear in any log record, raw or formatted."""
    from . import helpers

    handler = _Capture()
    quiet_libraries()
    root = logging.getLogger()
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
        secret_registry.clear()
    leaked = [(s, line) for line in handler.lines for s in helpers.ALL_SECRETS if s in line]
    assert not leaked, f"secret leaked into a log line: {leaked[0][1][:300]}"


def at(minutes: float = 0, *, base: datetime | None = None) -> datetime:
    base = base or datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
    return base + timedelta(minutes=minutes)
