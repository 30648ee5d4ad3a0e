"""The accounts' secrets are stored encrypted: the raw database holds no secret, keys rotate, a wrong key is one clear line."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import asyncpg
import httpx
import pytest

from service.app.runtime import check_secret_keys, connect_database
from service.cli.parser import main
from service.settings import ConfigError, Settings, new_secret_key
from service.store import migrations, secretbox
from service.store.connector import Database, sql
from service.store.queries import accounts as account_store

from .conftest import _plain
from .helpers import API_KEY, AUTH, CALLBACK_SECRET, TEST_SECRET_KEY, WEBHOOK_SECRET, create_account

SECRETS = (API_KEY, WEBHOOK_SECRET, CALLBACK_SECRET, CALLBACK_SECRET.removeprefix("whsec_"))


@pytest.fixture
def restore_box() -> Iterator[None]:
    """Tests that install other keys put the suite's key back."""
    yield
    secretbox.install(secretbox.SecretBox([TEST_SECRET_KEY]))


async def raw_rows(url: str) -> str:
    """Everything the accounts table holds (SQLite: the whole database), read past the service, as text."""
    return await raw_table(url, "accounts")


async def raw_table(url: str, table: str) -> str:
    """A table's rows read past the service (sqlite3 / asyncpg), as text; SQLite: a dump of the whole database."""
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1]
        with sqlite3.connect(path) as connection:
            dump = "\n".join(connection.iterdump())
        return dump
    connection = await asyncpg.connect(_plain(url))
    try:
        rows = await connection.fetch(f"SELECT * FROM {table}")
    finally:
        await connection.close()
    return repr([dict(row) for row in rows])


async def test_the_raw_database_holds_no_secret(client: httpx.AsyncClient, database_url: str) -> None:
    await create_account(client, callback_url="https://platform.example/verdicts", callback_secret=CALLBACK_SECRET)
    raw = await raw_rows(database_url)
    assert "fernet:" in raw  # the rows are there, sealed
    for secret in SECRETS:
        assert secret not in raw
    answer = await client.get("/api/accounts", headers=AUTH)
    assert answer.json()["items"][0]["calcom_api_key"] == "set"


async def test_the_sqlite_file_on_disk_holds_no_secret(client: httpx.AsyncClient, database_url: str, app: object) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("the file check is SQLite's")
    await create_account(client, callback_url="https://platform.example/verdicts", callback_secret=CALLBACK_SECRET)
    await app.state.services.db.disconnect()  # type: ignore[attr-defined]  # checkpoint the WAL into the file
    path = Path(database_url.split(":///", 1)[1])
    data = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    for secret in SECRETS:
        assert secret.encode() not in data


async def test_plaintext_rows_of_an_older_database_are_encrypted_once(database_url: str, db: Database) -> None:
    # An account written in plaintext (as before encryption), then the upgrade's data step, twice.
    async with db.transaction() as tx:
        await tx.execute(
            sql(
                "INSERT INTO accounts (id, calcom_api_key, webhook_secret, callback_secret, match_tolerance_seconds, enabled, "
                "credentials, created_at, updated_at) VALUES ('salon-1', :key, :secret, :callback, 300, :on, 'ok', :now, :now)"
            ),
            key=API_KEY,
            secret=WEBHOOK_SECRET,
            callback=CALLBACK_SECRET,
            on=True,
            now=datetime.now(timezone.utc),
        )
    await migrations.migrate(db)
    first = await raw_rows(database_url)
    for secret in SECRETS:
        assert secret not in first
    await migrations.migrate(db)  # idempotent: ciphertext is marked, never encrypted twice
    assert await raw_rows(database_url) == first
    async with db.read() as tx:
        account = await account_store.get(tx, "salon-1")
    assert account is not None
    assert (account.calcom_api_key, account.webhook_secret, account.callback_secret) == (API_KEY, WEBHOOK_SECRET, CALLBACK_SECRET)


async def test_rotate_re_encrypts_under_the_first_key(
    client: httpx.AsyncClient,
    database_url: str,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    restore_box: None,
) -> None:
    await create_account(client)
    before = await raw_rows(database_url)
    new = new_secret_key()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SECRET_KEYS", f"{new},{TEST_SECRET_KEY}")
    assert await asyncio.to_thread(main, ["secrets", "rotate"]) == 0
    assert "1 account(s) re-encrypted" in capsys.readouterr().out
    after = await raw_rows(database_url)
    assert after != before and API_KEY not in after
    # The old key is no longer needed: the new one alone opens every secret.
    only_new = settings.model_copy(update={"secret_keys": settings.secret_keys.__class__(new)})
    db = await connect_database(only_new)
    try:
        await check_secret_keys(db)
        async with db.read() as tx:
            account = await account_store.get(tx, "salon-1")
        assert account is not None and account.calcom_api_key == API_KEY
    finally:
        await db.disconnect()


async def test_a_wrong_key_is_one_clear_line_without_secrets(
    client: httpx.AsyncClient,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    settings: Settings,
    restore_box: None,
) -> None:
    await create_account(client)
    wrong = settings.model_copy(update={"secret_keys": settings.secret_keys.__class__(new_secret_key())})
    db = await connect_database(wrong)
    try:
        with pytest.raises(ConfigError) as refused:
            await check_secret_keys(db)
    finally:
        await db.disconnect()
    message = str(refused.value)
    assert message.startswith("configuration error: SECRET_KEYS: no key given decrypts the stored secrets")
    assert "\n" not in message and API_KEY not in message
    # The command line says the same in one line, exit 2 (a process manager sees a configuration error, not a crash).
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SECRET_KEYS", wrong.secret_key_list[0])
    assert await asyncio.to_thread(main, ["accounts", "list"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "SECRET_KEYS" in err and "Traceback" not in err
    for secret in SECRETS:
        assert secret not in err
