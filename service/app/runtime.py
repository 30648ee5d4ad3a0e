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
from service.app.console import Console
from service.app.counting import Flusher, flush
from service.app.duplicates import Duplicates
from service.app.guard import Guard
from service.app.guard_create import BookingCreates
from service.app.ingest import Ingestor
from service.app.intake import Intake
from service.app.notify import Notifier
from service.app.operators import Operators
from service.app.recheck import Rechecks
from service.app.status import collect
from service.app.tokens import Tokens
from service.clients.calcom import CalcomClient, connected
from service.clients.forward import forwarding
from service.clock import Clock, system_clock
from service.core.tallies import Tally
from service.errors import ServiceError
from service.settings import ConfigError, Settings, describe_database, ensure_env_value, new_secret_key, require_secret_keys
from service.store import migrations, secretbox
from service.store.connector import Database, open_database
from service.store.diagnose import connect_problem
from service.store.files import sqlite_file_exists
from service.store.queries import accounts as account_store

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
    operators: Operators
    console: Console
    tokens: Tokens
    tally: Tally = field(default_factory=Tally)
    ingestor: Ingestor | None = None
    guard: Guard | None = None  # the booking guard (web process only)
    bookings: BookingCreates | None = None
    duplicates: Duplicates | None = None
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
    intake = Intake(db, settings, notifier)
    accounts = Accounts(db, settings, calcom=calcom, clock=clock)
    operators = Operators(db)
    return Runtime(
        settings=settings,
        clock=clock,
        db=db,
        notifier=notifier,
        intake=intake,
        accounts=accounts,
        secrets=SecretCache(db, clock=clock),
        rechecks=Rechecks(db, settings, notifier),
        operators=operators,
        console=Console(db, intake, accounts, operators, settings.match_tolerance_seconds),
        tokens=Tokens(db),
        tally=tally,
    )


def install_secret_keys(settings: Settings) -> None:
    """Install SECRET_KEYS for the store's secrets. PostgreSQL refuses to run without them; SQLite in
    development generates one into .env (as `make run` does), so the next start finds it."""
    require_secret_keys(settings)
    keys = settings.secret_key_list
    if not keys:
        try:
            fresh = ensure_env_value(".env", "SECRET_KEYS", new_secret_key)
        except OSError as exc:
            raise ConfigError(
                f"configuration error: SECRET_KEYS: not set, and no key could be generated into .env ({exc.strerror or type(exc).__name__}); "
                "set SECRET_KEYS"
            ) from None
        if fresh is None:  # .env has one that these settings did not read (e.g. settings built without it)
            raise ConfigError("configuration error: SECRET_KEYS: not set (see .env); the accounts' secrets are stored encrypted under it")
        log.warning("generated SECRET_KEYS into .env", extra={"event": "secret_key_generated"})
        keys = [fresh]
    secretbox.install(secretbox.SecretBox(keys))


async def check_secret_keys(db: Database) -> None:
    """A ConfigError (one line, no secret) when the stored secrets do not open with SECRET_KEYS."""
    async with db.read() as tx:
        if not await migrations.applied(tx):
            return
    try:
        await account_store.check_keys(db)
    except secretbox.SecretKeyError as exc:
        raise ConfigError(f"configuration error: {exc}") from None


async def connect_database(settings: Settings) -> Database:
    """Connect to DATABASE_URL; a database that cannot be opened is a ConfigError (one line, no password)."""
    install_secret_keys(settings)
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
    try:
        await check_secret_keys(db)
    finally:
        await db.disconnect()


@asynccontextmanager
async def serving(settings: Settings, clock: Clock = system_clock, *, calcom_transport: Any = None) -> AsyncIterator[Runtime]:
    """The web process: connect, apply what `release` has not, start the notifier, webhook writer and counter flusher."""
    db = await connect_database(settings)
    tally = Tally()
    try:
        await migrations.apply_pending_migrations(db)
        await check_secret_keys(db)
        notifier = Notifier(db)
        async with (
            connected(
                timeout_seconds=settings.calcom_timeout_seconds,
                tally=tally,
                clock=clock,
                transport=calcom_transport,
                allow_private=settings.allow_private_targets,
            ) as calcom,
            contextlib.AsyncExitStack() as stack,
        ):
            runtime = _runtime(settings, clock, db, notifier, calcom, tally)
            runtime.ingestor = Ingestor(
                db, notifier, clock, settle_seconds=settings.settle_seconds, hold_matching=settings.hold_webhook_matching
            )
            forwarder = await stack.enter_async_context(
                forwarding(transport=calcom_transport, allow_private=settings.allow_private_targets)
            )
            runtime.guard = Guard(db, settings, forwarder, clock)
            runtime.secrets.also_forget.append(runtime.guard.forget)
            runtime.bookings = BookingCreates(runtime.guard, runtime.intake, tally)
            runtime.duplicates = Duplicates(db)
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
        await check_secret_keys(db)
        # The notifier is never started: no long-polls wait in this process, `resolved()` wakes no one.
        async with connected(
            timeout_seconds=settings.calcom_timeout_seconds,
            tally=tally,
            clock=clock,
            transport=calcom_transport,
            allow_private=settings.allow_private_targets,
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
        applied = await migrations.migrate(db)
        await check_secret_keys(db)
        return applied
    finally:
        await db.disconnect()


async def rotate_secrets(settings: Settings) -> int:
    """`secrets rotate`: every stored secret re-encrypted under the first of SECRET_KEYS; answer the accounts rewritten."""
    db = await connect_database(settings)
    try:
        missing = await migrations.pending(db)
        if missing:
            raise NotMigrated(f"{len(missing)} pending migration(s): run `python -m service migrate` first")
        await check_secret_keys(db)
        try:
            return await account_store.reseal_all(db, rotate=True)
        except secretbox.SecretKeyError as exc:
            raise ConfigError(f"configuration error: {exc}") from None
    finally:
        await db.disconnect()
