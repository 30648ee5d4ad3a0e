"""What the entry points stand on: the database and the use cases, opened and closed in one place.

`serving()` is the web process' runtime (migrations applied if `release` was skipped, long-poll
notifier, webhook writer and counter flusher running); `operating()` is an operator command's (the
database must exist and be migrated already: the command line never creates or upgrades a
database by accident). A database that cannot be opened at all is a `ConfigError`: one line
naming DATABASE_URL, never its password.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from service.app.accounts import Accounts, SecretCache
from service.app.counting import Flusher, flush
from service.app.ingest import Ingestor
from service.app.intake import Intake
from service.app.notify import Notifier
from service.app.recheck import Rechecks
from service.app.status import collect
from service.clients.calcom import CalcomClient, connected
from service.clock import Clock, system_clock
from service.core.tallies import Tally
from service.errors import ServiceError
from service.settings import ConfigError, Settings, describe_database
from service.store import migrations
from service.store.connector import Database, open_database
from service.store.diagnose import connect_problem
from service.store.files import sqlite_file_exists

log = logging.getLogger("service.app.runtime")


class NotMigrated(ServiceError):
    status_code = 503
    code = "migrations_pending"


@dataclass
class Runtime:
    """What handlers and commands use; built by `serving()` or `operating()`, torn down with it."""

    settings: Settings
    clock: Clock
    db: Database
    notifier: Notifier
    intake: Intake
    accounts: Accounts
    secrets: SecretCache
    rechecks: Rechecks
    tally: Tally = field(default_factory=Tally)
    ingestor: Ingestor | None = None
    loop_time: Callable[[], float] = field(default=lambda: asyncio.get_running_loop().time())

    async def status(self, *, show_accounts: bool | None = None) -> dict[str, Any]:
        """The /status document (this process' own counts written first, so they are in it)."""
        try:
            await flush(self.db, self.tally)
        except Exception as exc:
            log.warning("counters not written yet", extra={"event": "counters_flush_failed", "error": type(exc).__name__})
        show = self.settings.status_show_accounts if show_accounts is None else show_accounts
        return await collect(self.db, self.clock(), self.settings, show_accounts=show)

    async def pending_migrations(self) -> list[str]:
        return await migrations.pending(self.db)


class NoDatabase(ConfigError):
    """An operator command found no database where DATABASE_URL points."""


def _runtime(settings: Settings, clock: Clock, db: Database, notifier: Notifier, calcom: CalcomClient, tally: Tally) -> Runtime:
    return Runtime(
        settings=settings,
        clock=clock,
        db=db,
        notifier=notifier,
        intake=Intake(db, settings, notifier),
        accounts=Accounts(db, settings, calcom=calcom, clock=clock),
        secrets=SecretCache(db),
        rechecks=Rechecks(db, settings, notifier),
        tally=tally,
    )


async def connect_database(settings: Settings) -> Database:
    """Connect to DATABASE_URL; a database that cannot be opened is a ConfigError (one line, no password)."""
    db = open_database(settings.database_url)
    try:
        await db.connect()
    except Exception as exc:
        with contextlib.suppress(Exception):
            await db.disconnect()
        raise ConfigError(f"configuration error: {connect_problem(exc, settings.database_url)}") from None
    return db


async def check_database(settings: Settings) -> None:
    """Open and close the database once: a process refuses to start (in one line) when it cannot."""
    db = await connect_database(settings)
    await db.disconnect()


@asynccontextmanager
async def serving(settings: Settings, clock: Clock = system_clock, *, calcom_transport: Any = None) -> AsyncIterator[Runtime]:
    """The web process: connect, apply what `release` has not, start the notifier, webhook writer and counter flusher."""
    db = await connect_database(settings)
    tally = Tally()
    try:
        await migrations.apply_pending_migrations(db)
        notifier = Notifier(db)
        async with connected(
            timeout_seconds=settings.calcom_timeout_seconds, tally=tally, clock=clock, transport=calcom_transport
        ) as calcom:
            runtime = _runtime(settings, clock, db, notifier, calcom, tally)
            runtime.ingestor = Ingestor(
                db, notifier, clock, settle_seconds=settings.settle_seconds, hold_matching=settings.hold_webhook_matching
            )
            runtime.intake.catch_up = runtime.ingestor.caught_up
            flusher = Flusher(db, tally)
            await notifier.start()
            await runtime.ingestor.start()
            await flusher.start()
            try:
                yield runtime
            finally:
                await runtime.ingestor.stop()
                await notifier.stop()
                await flusher.stop()
    finally:
        await db.disconnect()


@asynccontextmanager
async def operating(settings: Settings, clock: Clock = system_clock, *, calcom_transport: Any = None) -> AsyncIterator[Runtime]:
    """An operator command: the database must exist and be current; nothing waits for verdicts here."""
    where = describe_database(settings.database_url)
    if settings.is_sqlite and not sqlite_file_exists(settings.database_url.split(":///", 1)[1]):
        raise NoDatabase(
            f"no database: {where} does not exist (DATABASE_URL). Run this command where the service runs "
            "(a relative path counts from the current directory), or set DATABASE_URL; nothing was created"
        )
    db = await connect_database(settings)
    tally = Tally()
    try:
        missing = await migrations.pending(db)
        if missing:
            raise NotMigrated(
                f"{where} has {len(missing)} pending migration(s): if that is the service's database, "
                "run `python -m service migrate` first (otherwise set DATABASE_URL)"
            )
        # The notifier is never started: no long-polls wait in this process, `resolved()` wakes no one.
        async with connected(
            timeout_seconds=settings.calcom_timeout_seconds, tally=tally, clock=clock, transport=calcom_transport
        ) as calcom:
            yield _runtime(settings, clock, db, Notifier(db), calcom, tally)
        with contextlib.suppress(Exception):
            await flush(db, tally)
    finally:
        await db.disconnect()


async def release(settings: Settings) -> list[str]:
    """The release process: apply pending migrations; answer the versions applied."""
    db = await connect_database(settings)
    try:
        return await migrations.migrate(db)
    finally:
        await db.disconnect()
