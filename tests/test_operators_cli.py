"""`operators add|list|remove`: named people with Argon2-hashed passwords, never echoed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from service.cli.parser import main
from service.store.connector import Database, sql

from .test_operator_cli import run

PASSWORD = "a long enough password"


@pytest.fixture
def operator_env(database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert main(["migrate"]) == 0
    return database_url


async def _hashes(url: str) -> list[str]:
    db = Database(url)
    await db.connect()
    try:
        async with db.read() as tx:
            return [row["password_hash"] for row in await tx.fetch_all(sql("SELECT password_hash FROM operators"))]
    finally:
        await db.disconnect()


def test_an_operator_is_added_with_an_argon2_hash_listed_and_removed(operator_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "operators", "add", "alice", stdin=PASSWORD + "\n")
    assert code == 0 and "operator alice added" in err and PASSWORD not in out + err
    hashes = asyncio.run(_hashes(operator_env))
    assert len(hashes) == 1 and hashes[0].startswith("$argon2id$") and PASSWORD not in hashes[0]
    code, out, _ = run(capsys, "operators", "list")
    assert code == 0 and "alice" in out
    code, _, err = run(capsys, "operators", "remove", "alice")
    assert code == 0 and "removed" in err
    code, _, err = run(capsys, "operators", "list")
    assert "no operators yet" in err


def test_adding_an_existing_operator_sets_a_new_password(operator_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "operators", "add", "alice", stdin=PASSWORD + "\n")
    code, _, err = run(capsys, "operators", "add", "alice", stdin="another long password\n")
    assert code == 0 and "new password" in err
    assert len(asyncio.run(_hashes(operator_env))) == 1


@pytest.mark.parametrize(("name", "password", "message"), [("alice", "short", "10 to 1024"), ("-bad name", PASSWORD, "operator name")])
def test_a_short_password_or_a_bad_name_is_refused(
    operator_env: str, capsys: pytest.CaptureFixture[str], name: str, password: str, message: str
) -> None:
    code, _, err = run(capsys, "operators", "add", "--", name, stdin=password + "\n")
    assert code == 2 and message in err
    assert asyncio.run(_hashes(operator_env)) == []


def test_removing_an_unknown_operator_fails(operator_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "operators", "remove", "nobody")
    assert code == 1 and "no operator" in err
