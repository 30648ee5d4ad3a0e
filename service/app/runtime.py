"""What the entry points stand on: the database and the use cases, opened and closed in one place.

`serving()` is the web process' runtime (migrations applied if `release` was skipped, long-poll
notifier and webhook writer running); `operating()` is an operator command's (the database must
be migrated already: the command line never creates or upgrades a database by accident).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from service.app.accounts import Accounts, SecretCache
from service.app.ingest import Ingestor
from service.app.intake import Intake
from service.app.notify import Notifier
from service.app.status import collect
from service.clock import Clock, system_clock
from service.errors import ServiceError
from service.settings import Settings
from service.store import migrations
from service.store.connector import Database, open_database

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
    ingestor: Ingestor | None = None
    loop_time: Callable[[], float] = field(default=lambda: asyncio.get_running_loop().time())

    async def status(self) -> dict[str, Any]:
        """The /status document."""
        return await collect(self.db, self.clock(), self.settings)

    async def pending_migrations(self) -> list[str]:
        return await migrations.pending(self.db)


def _runtime(settings: Settings, clock: Clock, db: Database, notifier: Notifier) -> Runtime:
    return Runtime(
        settings=settings,
        clock=clock,
        db=db,
        notifier=notifier,
        intake=Intake(db, settings, notifier),
        accounts=Accounts(db, settings),
        secrets=SecretCache(db),
    )


@asynccontextmanager
async def serving(settings: Settings, clock: Clock = system_clock) -> AsyncIterator[Runtime]:
    """The web process: connect, apply what `release` has not, start the notifier and the webhook writer."""
    db = open_database(settings.database_url)
    await db.connect()
    try:
        await migrations.apply_pending_migrations(db)
        notifier = Notifier(db)
        runtime = _runtime(settings, clock, db, notifier)
        runtime.ingestor = Ingestor(db, notifier, clock, settle_seconds=settings.settle_seconds)
        await notifier.start()
        await runtime.ingestor.start()
        try:
            yield runtime
        finally:
            await runtime.ingestor.stop()
            await notifier.stop()
    finally:
        await db.disconnect()


@asynccontextmanager
async def operating(settings: Settings, clock: Clock = system_clock) -> AsyncIterator[Runtime]:
    """An operator command: the database must exist and be current; nothing waits for verdicts here."""
    db = open_database(settings.database_url)
    await db.connect()
    try:
        missing = await migrations.pending(db)
        if missing:
            raise NotMigrated(f"the database has {len(missing)} pending migration(s): run `python -m service migrate` first")
        # The notifier is never started: no long-polls wait in this process, `resolved()` wakes no one.
        yield _runtime(settings, clock, db, Notifier(db))
    finally:
        await db.disconnect()


async def release(settings: Settings) -> list[str]:
    """The release process: apply pending migrations; answer the versions applied."""
    db = open_database(settings.database_url)
    await db.connect()
    try:
        return await migrations.migrate(db)
    finally:
        await db.disconnect()
