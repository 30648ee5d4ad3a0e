"""Forward-only SQL migrations: `<dialect>/NNNN_name.sql` beside this file, shipped inside the package.

Each file runs in its own transaction together with the row that records it, so a crash leaves a
file either applied or not. A lock held for the whole run (`Database.session_lock`: an advisory lock
on PostgreSQL; SQLite's `BEGIN IMMEDIATE` is enough there) makes concurrent `release` processes take
turns. SQLite changes a column's type by rebuilding its table, which `Database.schema_transaction`
allows (foreign keys are checked once, before COMMIT).
"""

from __future__ import annotations

import logging
import re
from importlib import resources
from importlib.resources.abc import Traversable

from service.core import times
from service.store.connector import Database, Tx, sql
from service.store.queries import accounts as account_store

log = logging.getLogger("service.migrations")

_LOCK_KEY = 7_202_611  # any constant; shared by every release process of this product
_FILE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

_CREATE_TABLE = sql("CREATE TABLE IF NOT EXISTS schema_migrations (version TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
_APPLIED = sql("SELECT version FROM schema_migrations ORDER BY version")
_RECORD = sql("INSERT INTO schema_migrations (version, applied_at) VALUES (:version, :applied_at)")
_TABLE_EXISTS = sql(
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
    postgresql="SELECT to_regclass('schema_migrations') IS NOT NULL AS present",
)


def available(dialect: str) -> list[tuple[str, Traversable]]:
    """The migration files for one dialect, in order: [(version, file)] (read from the installed package)."""
    folder = resources.files(__name__) / dialect
    found = [(entry.name[: -len(".sql")], entry) for entry in folder.iterdir() if _FILE.match(entry.name)] if folder.is_dir() else []
    if not found:
        # An installation without its schema must not report an empty database as "current".
        raise RuntimeError(f"no {dialect} migrations found in the installed package {__name__}: the installation is incomplete")
    return sorted(found, key=lambda item: item[0])


def statements(script: str) -> list[str]:
    """Split a migration file into statements (our files keep ';' out of strings and comments)."""
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    return [part.strip() for part in "\n".join(lines).split(";") if part.strip()]


async def applied(tx: Tx) -> list[str]:
    present = await tx.fetch_one(_TABLE_EXISTS)
    if not present or (tx.dialect == "postgresql" and not present["present"]):
        return []
    return [row["version"] for row in await tx.fetch_all(_APPLIED)]


async def pending(db: Database) -> list[str]:
    """Versions on disk that the database has not applied yet."""
    async with db.read() as tx:
        done = set(await applied(tx))
    return [version for version, _ in available(db.dialect) if version not in done]


SECRETS_AT_REST = "0008_security"  # from this version on, the accounts' secrets are stored encrypted


async def migrate(db: Database, *, until: str | None = None) -> list[str]:
    """Apply every pending migration (up to version `until`, if given); answer the versions applied by this call.

    Then the data step SQL cannot do (it does not know SECRET_KEYS): every account secret still in
    plaintext is encrypted. It is idempotent (ciphertext carries a marker), so it runs on every
    migrate and start-up.
    """
    async with db.session_lock(_LOCK_KEY):
        done = await _apply_all(db, until)
        async with db.read() as tx:
            current = SECRETS_AT_REST in await applied(tx)
        if current:
            sealed = await account_store.reseal_all(db, rotate=False)
            if sealed:
                log.info("secrets encrypted", extra={"event": "secrets_encrypted", "accounts": sealed})
        return done


async def _apply_all(db: Database, until: str | None) -> list[str]:
    done: list[str] = []
    for version, path in available(db.dialect):
        if until is not None and version[:4] > until[:4]:  # "0004" or "0004_history_indexes"
            break
        async with db.schema_transaction() as tx:
            await tx.execute(_CREATE_TABLE)
            if version in await applied(tx):
                continue
            for statement in statements(path.read_text(encoding="utf-8")):
                await tx.execute(sql(statement))
            await tx.execute(_RECORD, version=version, applied_at=_now_text())
            done.append(version)
            log.info("migration applied", extra={"event": "migration_applied", "version": version})
    if done:
        await db.optimize(full=True)  # new indexes start without planner statistics (SQLite)
    return done


def _now_text() -> str:
    return times.sortable(times.now())


async def apply_pending_migrations(db: Database) -> None:
    """At process start: apply what `release` has not (concurrent starts take turns), and say so."""
    if await pending(db):
        applied_now = await migrate(db)
        if applied_now:
            log.warning(
                "migrations applied at start-up; run the release process before starting web/poller",
                extra={"event": "migrations_applied_at_start", "versions": applied_now},
            )
