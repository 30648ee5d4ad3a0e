"""The command line an operator meets in the first hour: the database it opened, accounts, rechecks, outage wording."""

from __future__ import annotations

import asyncio
import io
import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
import respx

from service.app.intake import Intake
from service.app.notify import Notifier
from service.cli.parser import main
from service.core.models import VerificationIn
from service.settings import Settings
from service.store.connector import Database
from service.store.queries import accounts as account_store
from service.store.queries import verifications as verification_store

from .helpers import API_KEY, WEBHOOK_SECRET

START = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
NEW_KEY = "cal_live_replacement_key_9f8e7d"


@pytest.fixture
def operator_env(database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    return database_url


def run(capsys: pytest.CaptureFixture[str], *argv: str, stdin: str | None = None) -> tuple[int, str, str]:
    if stdin is not None:
        sys.stdin = io.StringIO(stdin)
    try:
        code = main(list(argv))
    finally:
        sys.stdin = sys.__stdin__
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def prepare(url: str, *, unknown: int = 0, pending: int = 0) -> list[str]:
    """Account salon-1 with `unknown` verifications in review as calcom_unavailable and `pending` pending ones."""
    settings = Settings(_env_file=None, database_url=url)
    db = Database(url)
    await db.connect()
    try:
        async with db.transaction() as tx:
            values = {
                "calcom_api_key": API_KEY,
                "webhook_secret": WEBHOOK_SECRET,
                "calcom_api_base": None,
                "callback_url": None,
                "callback_secret": None,
                "match_tolerance_seconds": 300,
                "enabled": True,
            }
            await account_store.upsert(tx, "salon-1", values, START)
        intake = Intake(db, settings, Notifier(db))
        ids = []
        for n in range(unknown + pending):
            start = START + timedelta(hours=n)
            request = VerificationIn.model_validate_json(
                json.dumps(
                    {
                        "account": "salon-1",
                        "appointment_id": str(700 + n),
                        "phases": [{"key": "A", "start": start.isoformat(), "attendee_email": "k@example.com"}],
                    }
                )
            )
            ids.append((await intake.record(request, START)).view["id"])
        async with db.transaction() as tx:
            for verification_id in ids[:unknown]:
                row = await verification_store.by_id(tx, verification_id)
                assert row is not None
                await verification_store.resolve(
                    tx,
                    row["seq"],
                    expected="pending",
                    status="manual_review",
                    now=START,
                    resolved_via="system",
                    review_reason="calcom_unavailable",
                )
                await verification_store.set_phases(
                    tx,
                    [
                        {
                            "verification_seq": row["seq"],
                            "key": "A",
                            "status": "unknown",
                            "active": False,
                            "booking_uid": None,
                            "booking_seat": None,
                            "booking_id": None,
                            "booking_start_at": None,
                            "booking_source": None,
                            "booking_identity": None,
                        }
                    ],
                )
        return ids
    finally:
        await db.disconnect()


async def statuses(url: str) -> dict[str, tuple[str, str | None]]:
    db = Database(url)
    await db.connect()
    try:
        async with db.read() as tx:
            rows = await verification_store.list_page(tx, limit=100)
        return {row["id"]: (row["status"], row["review_reason"]) for row in rows}
    finally:
        await db.disconnect()


# -- the database the command line opens -------------------------------------------------------------


def test_cli_refuses_to_create_a_database_where_there_is_none(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # "another directory": the default ./var/verifier.sqlite3 is not here
    monkeypatch.delenv("DATABASE_URL", raising=False)
    for argv in (("accounts", "list"), ("status",), ("verifications", "list")):
        code, out, err = run(capsys, *argv)
        assert code == 2 and out == ""
        assert err.count("\n") == 1
        assert f"{tmp_path / 'var' / 'verifier.sqlite3'} does not exist" in err
        assert "nothing was created" in err and "DATABASE_URL" in err
    assert not (tmp_path / "var").exists()


# -- accounts ----------------------------------------------------------------------------------------


@respx.mock(assert_all_mocked=True)
def test_accounts_update_changes_only_what_is_given_and_tries_the_new_key(
    respx_mock: respx.MockRouter, operator_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(prepare(operator_env))
    route = respx_mock.get("https://api.cal.com/v2/bookings").mock(return_value=httpx.Response(401, json={"status": "error"}))
    code, out, err = run(capsys, "accounts", "update", "salon-1", "--api-key", "-", stdin=NEW_KEY + "\n")
    assert code == 0, err
    assert route.calls.last.request.headers["authorization"] == f"Bearer {NEW_KEY}"
    account = json.loads(out)
    assert account["credentials"] == "broken" and "credentials: broken" in err
    assert (account["match_tolerance_seconds"], account["enabled"]) == (300, True)  # untouched
    assert NEW_KEY not in out + err
    code, out, _ = run(capsys, "accounts", "update", "salon-1", "--tolerance", "120")
    assert code == 0 and json.loads(out)["match_tolerance_seconds"] == 120 and route.call_count == 1  # same key: not tried again
    assert run(capsys, "accounts", "update", "salon-1")[0] == 2  # nothing to change


def test_accounts_update_can_keep_the_old_webhook_secret_until_a_time(operator_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(prepare(operator_env))
    until = "2099-12-02T12:00:00Z"
    code, out, err = run(
        capsys, "accounts", "update", "salon-1", "--webhook-secret", "-", "--old-secret-until", until, stdin="whk-new-0000\n"
    )
    assert code == 0, err
    assert json.loads(out)["webhook_secret_previous_until"] == until
    assert WEBHOOK_SECRET not in out + err and "whk-new-0000" not in out + err
    code, _, err = run(capsys, "accounts", "update", "salon-1", "--old-secret-until", until)
    assert code == 2 and "--old-secret-until goes with a new --webhook-secret" in err
    code, _, err = run(capsys, "accounts", "update", "salon-1", "--webhook-secret", "x-1", "--old-secret-until", "tomorrow")
    assert code == 2 and err.startswith("error: --old-secret-until:")


def test_accounts_disable_enable_and_delete(operator_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(prepare(operator_env, pending=1))
    code, out, _ = run(capsys, "accounts", "disable", "salon-1")
    assert code == 0 and json.loads(out)["enabled"] is False
    code, out, _ = run(capsys, "accounts", "enable", "salon-1")
    assert code == 0 and json.loads(out)["enabled"] is True
    code, _, err = run(capsys, "accounts", "delete", "salon-1", "--yes")
    assert code == 1 and "has verifications" in err and "disable it instead" in err
    assert run(capsys, "accounts", "add", "salon-typo", "--api-key", API_KEY, "--webhook-secret", WEBHOOK_SECRET)[0] == 0
    assert run(capsys, "accounts", "delete", "salon-typo", stdin="")[0] == 2  # no terminal to confirm on, no --yes
    code, out, _ = run(capsys, "accounts", "delete", "salon-typo", "--yes")
    assert code == 0 and out == "account salon-typo deleted\n"
    code, out, _ = run(capsys, "accounts", "list", "--json")
    assert [a["account"] for a in json.loads(out)] == ["salon-1"]
    code, _, err = run(capsys, "accounts", "disable", "Salon-1")
    assert code == 2 and "account ids are lower-case" in err


# -- rechecks and the outage's wording ---------------------------------------------------------------


def test_one_command_rechecks_every_unknown_outcome_of_an_account(operator_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    ids = asyncio.run(prepare(operator_env, unknown=3, pending=1))
    code, out, _ = run(capsys, "verifications", "list", "--status", "manual_review")
    assert code == 0 and out.count("calcom_unavailable: outcome unknown") == 3
    code, out, _ = run(capsys, "status")
    assert "outcome unknown (Cal.com never answered): 3, not failures" in out
    code, out, err = run(capsys, "verifications", "recheck", "--account", "salon-1")
    assert code == 0, err
    assert sorted(out.split()) == sorted(ids[:3]) and "3 verification(s) of account salon-1 are pending again" in err
    assert set(asyncio.run(statuses(operator_env)).values()) == {("pending", None)}
    code, out, _ = run(capsys, "verifications", "recheck", "--account", "salon-1")
    assert code == 0 and "no verification of account salon-1 is in review as calcom_unavailable" in out
    code, out, err = run(capsys, "verifications", "recheck", ids[3])  # a pending one: due now
    assert code == 0 and json.loads(out)["status"] == "pending" and "due for a check now" in err
