"""The operator CLI: simulate, accounts, verifications, status, and its configuration errors."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from service.app.intake import Intake
from service.app.notify import Notifier
from service.cli import commands as cli_commands
from service.cli import parser as cli
from service.cli.parser import main
from service.core.models import VerificationIn
from service.core.observations import Observation
from service.settings import Settings
from service.store.connector import Database
from service.store.queries import accounts as account_store
from service.store.queries import observations as observation_store
from service.testing.world import SimulationSecrets

from .helpers import API_KEY, CALLBACK_SECRET, WEBHOOK_SECRET

ROOT = Path(__file__).resolve().parents[1]
START = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
SIM_KEYS = SimulationSecrets(
    api_token="sim-api-token-4f1c2e9a8b7d6c5e",
    calcom_api_key="cal_live_sim_9a8b7c6d5e4f3a2b",
    webhook_secret="sim-webhook-secret-0e1d2c3b4a",
    callback_secret="whsec_c2ltdWxhdGlvbi1jYWxsYmFjay1zZWNyZXQtMzJi",
)
OUTCOMES = ("Dauerwelle", "Herrenhaarschnitt", "Real failure", "manual_review (no_booking_found)")


@pytest.fixture
def operator_env(database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """DATABASE_URL points at a fresh migrated database (SQLite, and PostgreSQL with TEST_DATABASE_URL)."""
    monkeypatch.chdir(tmp_path)  # no stray .env from the working tree
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


def assert_no_secret(*texts: str, secrets: tuple[str, ...] = (API_KEY, WEBHOOK_SECRET, CALLBACK_SECRET)) -> None:
    for text in texts:
        for secret in secrets:
            assert secret not in text
            assert secret.removeprefix("whsec_") not in text


# -- simulate --------------------------------------------------------------------------------------


def test_simulate_runs_the_three_seed_scenarios_and_exits_0(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SimulationSecrets, "generate", classmethod(lambda cls: SIM_KEYS))
    code, out, err = run(capsys, "simulate")
    assert code == 0, out + err
    for phrase in OUTCOMES:
        assert phrase in out
    assert "✅ Verified phase booking in Cal.com (Phase A, Booking 13068988)" in out
    assert "✅ POST-SYNC VERIFICATION SUCCESS: All composite bookings verified" in out
    assert "⚠️ POST-SYNC VERIFICATION: No matching booking found → manual review" in out
    assert "all three outcomes as expected" in out
    summary = out.split("━━ Summary ━━", 1)[1]
    assert summary.count("verified") >= 4 and "webhook" in summary and "poll" in summary
    assert "3 with a valid signature: verified, verified, manual_review" in summary
    assert_no_secret(out, err, secrets=(SIM_KEYS.api_token, SIM_KEYS.calcom_api_key, SIM_KEYS.webhook_secret, SIM_KEYS.callback_secret))


def test_simulate_ignores_the_operators_configuration(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POST_SYNC_VERIFICATION", "false")
    monkeypatch.setenv("SETTLE_SECONDS", "60")
    code, out, _ = run(capsys, "simulate")
    assert code == 0 and "all three outcomes as expected" in out


def test_simulate_as_a_real_process(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "API_TOKEN")}
    done = subprocess.run([sys.executable, "-m", "service", "simulate"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    for phrase in OUTCOMES:
        assert phrase in done.stdout
    assert done.stderr == ""  # the service's log lines stay out of the narration
    assert not (tmp_path / "var").exists()


# -- configuration -------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [("accounts", "list"), ("verifications", "list"), ("status",), ("migrate",)])
def test_bad_configuration_exits_2_with_one_line_naming_the_variable(
    argv: tuple[str, ...], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://db.example/verifier")
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("configuration error: DATABASE_URL: ")


def test_unmigrated_database_says_to_migrate_naming_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "empty.sqlite3"
    sqlite3.connect(path).close()  # a database file without our tables
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{path}")
    code, out, err = run(capsys, "accounts", "list")
    assert code == 1 and out == ""
    assert err.startswith(f"error: the SQLite file {path} has ") and "pending migration(s)" in err
    assert "run `python -m service migrate` first" in err and err.count("\n") == 1


def test_console_script_is_declared() -> None:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'calcom-verifier = "service.cli:main"' in text
    assert cli.build_parser().prog == "calcom-verifier"


# -- accounts --------------------------------------------------------------------------------------


def test_accounts_add_reads_secrets_from_stdin_and_never_prints_them(operator_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys, "accounts", "add", "salon-1", "--api-key", "-", "--webhook-secret", "-", stdin=f"{API_KEY}\n{WEBHOOK_SECRET}\n"
    )
    assert code == 0, err
    account = json.loads(out)
    assert account["account"] == "salon-1" and account["calcom_api_key"] == "set" and account["webhook_secret"] == "set"
    assert account["match_tolerance_seconds"] == 300 and account["enabled"] is True and account["callback_secret"] is None
    assert err == "account salon-1 created\n"
    assert_no_secret(out, err)
    stored = asyncio.run(read_account(operator_env, "salon-1"))
    assert (stored.calcom_api_key, stored.webhook_secret) == (API_KEY, WEBHOOK_SECRET)


def test_accounts_add_from_env_with_callback_replaces_and_lists(
    operator_env: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SALON_KEY", API_KEY)
    monkeypatch.setenv("SALON_CALLBACK", CALLBACK_SECRET)
    args = ("accounts", "add", "salon-2", "--api-key-env", "SALON_KEY", "--webhook-secret", WEBHOOK_SECRET)
    assert run(capsys, *args)[0] == 0
    code, out, err = run(
        capsys,
        *args,
        "--callback-url",
        "https://platform.example/hooks",
        "--callback-secret-env",
        "SALON_CALLBACK",
        "--tolerance",
        "120",
        "--disabled",
        "--calcom-api-base",
        "https://cal.example.com/",
    )
    assert code == 0 and err == "account salon-2 replaced\n"
    account = json.loads(out)
    assert account["callback_url"] == "https://platform.example/hooks" and account["callback_secret"] == "set"
    assert (account["match_tolerance_seconds"], account["enabled"], account["calcom_api_base"]) == (120, False, "https://cal.example.com")
    code, table, _ = run(capsys, "accounts", "list")
    assert code == 0
    header, row = table.splitlines()
    assert header.split() == ["ACCOUNT", "ENABLED", "CREDENTIALS", "TOLERANCE", "CALLBACK"]
    assert row.split() == ["salon-2", "no", "ok", "120", "s", "yes"]
    code, listed, _ = run(capsys, "accounts", "list", "--json")
    assert [a["account"] for a in json.loads(listed)] == ["salon-2"]
    assert_no_secret(out, table, listed)


def test_accounts_add_and_update_set_the_time_zone(operator_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = ("accounts", "add", "salon-4", "--api-key", API_KEY, "--webhook-secret", WEBHOOK_SECRET)
    code, out, err = run(capsys, *args, "--time-zone", "Europe/Berlin")
    assert code == 0, err
    assert json.loads(out)["time_zone"] == "Europe/Berlin"
    code, out, err = run(capsys, "accounts", "update", "salon-4", "--time-zone", "Asia/Tokyo")
    assert code == 0 and json.loads(out)["time_zone"] == "Asia/Tokyo"
    code, out, err = run(capsys, "accounts", "update", "salon-4", "--time-zone", "Mars/Olympus")
    assert code == 2 and out == "" and err.startswith("error: --time-zone: must be an IANA time zone name") and err.count("\n") == 1
    assert asyncio.run(read_account(operator_env, "salon-4")).time_zone == "Asia/Tokyo"


def test_accounts_add_prompts_on_a_terminal(operator_env: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter([API_KEY, WEBHOOK_SECRET])
    monkeypatch.setattr(cli_commands.getpass, "getpass", lambda prompt: next(answers))
    monkeypatch.setattr(sys, "stdin", type("Tty", (io.StringIO,), {"isatty": lambda self: True})())
    code = main(["accounts", "add", "salon-3"])
    out, err = capsys.readouterr()
    assert code == 0 and json.loads(out)["account"] == "salon-3"
    assert_no_secret(out, err)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ("--webhook-secret", WEBHOOK_SECRET),
            "error: --api-key is required (give a value, - to read it from stdin, or --api-key-env NAME)",
        ),
        (
            ("--api-key-env", "NOT_SET_ANYWHERE", "--webhook-secret", WEBHOOK_SECRET),
            "error: --api-key-env: the environment variable NOT_SET_ANYWHERE is not set",
        ),
        (
            (
                "--api-key",
                API_KEY,
                "--webhook-secret",
                WEBHOOK_SECRET,
                "--callback-url",
                "https://p.example/h",
                "--callback-secret",
                "whsec_short",
            ),
            "error: --callback-secret: must be a Standard Webhooks secret: whsec_ + base64 of 24 to 64 random bytes",
        ),
        (
            ("--api-key", API_KEY, "--webhook-secret", WEBHOOK_SECRET, "--calcom-api-base", "ftp://x"),
            "error: --calcom-api-base: must be an http(s) URL",
        ),
        (
            ("--api-key", API_KEY, "--webhook-secret", WEBHOOK_SECRET, "--tolerance", "99999"),
            "error: --tolerance: Input should be less than or equal to 3600",
        ),
    ],
)
def test_accounts_add_rejects_bad_input_with_one_line(
    argv: tuple[str, ...], message: str, operator_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "accounts", "add", "salon-1", *argv, stdin="")
    assert code == 2 and out == ""
    assert err.startswith(message) and err.count("\n") == 1
    assert_no_secret(err)


def test_accounts_add_rejects_a_bad_account_id(operator_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "accounts", "add", "Salon 1", "--api-key", API_KEY, "--webhook-secret", WEBHOOK_SECRET)
    assert code == 2 and err == "error: account: must match [a-z0-9][a-z0-9_-]{0,62}\n"


# -- verifications ---------------------------------------------------------------------------------


async def read_account(url: str, account_id: str) -> account_store.Account:
    db = Database(url)
    await db.connect()
    try:
        async with db.read() as tx:
            found = await account_store.get(tx, account_id)
    finally:
        await db.disconnect()
    assert found is not None
    return found


async def seed(url: str) -> dict[str, str]:
    """An account; appointment 762 verified by a webhook observation, 763 pending, 764 pending."""
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
            seen = Observation(
                uid="bk-762",
                start=START,
                state="exists",
                event_at=START,
                source="webhook",
                booking_id=13068988,
                attendees=("kunde@example.com",),
            )
            await observation_store.upsert(tx, "salon-1", [seen], START)
        intake = Intake(db, settings, Notifier(db))
        ids = {}
        for n, appointment in enumerate(("762", "763", "764")):
            start = START + timedelta(hours=3 * n)
            request = VerificationIn.model_validate_json(
                json.dumps(
                    {
                        "account": "salon-1",
                        "appointment_id": appointment,
                        "service": "Herrenhaarschnitt",
                        "phases": [
                            {
                                "key": "A",
                                "start": start.isoformat(),
                                "end": (start + timedelta(minutes=30)).isoformat(),
                                "attendee_email": "kunde@example.com",
                            }
                        ],
                    }
                )
            )
            ids[appointment] = (await intake.record(request, START)).view["id"]
        return ids
    finally:
        await db.disconnect()


def test_verifications_list_show_and_resolve(operator_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    ids = asyncio.run(seed(operator_env))
    code, out, _ = run(capsys, "verifications", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "ACCOUNT", "APPOINTMENT", "STATUS", "VIA", "DETAIL", "CREATED"]
    assert [line.split()[2] for line in lines[1:]] == ["764", "763", "762"]  # newest first
    assert lines[3].split()[3:5] == ["verified", "webhook"]

    code, out, _ = run(capsys, "verifications", "list", "--status", "pending", "--limit", "1", "--json")
    page = json.loads(out)
    assert [v["appointment_id"] for v in page["items"]] == ["764"] and page["next_cursor"]
    code, out, _ = run(capsys, "verifications", "list", "--status", "pending", "--limit", "1", "--cursor", page["next_cursor"])
    assert out.splitlines()[1].split()[2] == "763" and "more: --cursor" not in out

    code, out, _ = run(capsys, "verifications", "show", ids["762"])
    shown = json.loads(out)
    assert shown["status"] == "verified" and shown["phases"][0]["booking"]["uid"] == "bk-762"

    code, out, err = run(
        capsys, "verifications", "resolve", ids["763"], "--outcome", "synced", "--note", "found by hand", "--booking", "A=bk-manual"
    )
    assert code == 0 and err == f"verification {ids['763']} resolved as synced\n"
    resolved = json.loads(out)
    assert (resolved["status"], resolved["resolution"], resolved["resolved_via"], resolved["note"]) == (
        "resolved",
        "synced",
        "operator",
        "found by hand",
    )
    assert resolved["phases"][0]["booking"]["uid"] == "bk-manual"

    code, out, _ = run(capsys, "verifications", "list", "--status", "resolved", "--account", "salon-1")
    assert out.splitlines()[1].split()[3:6] == ["resolved", "operator", "synced"]


def test_resolving_a_verified_verification_exits_1_with_one_clear_line(operator_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    ids = asyncio.run(seed(operator_env))
    code, out, err = run(capsys, "verifications", "resolve", ids["762"], "--outcome", "failed")
    assert code == 1 and out == ""
    assert err == f"error: verification {ids['762']} is already verified; only pending or manual_review can be resolved\n"


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (("verifications", "show", "no-such-id"), 1, "error: no verification 'no-such-id'\n"),
        (("verifications", "resolve", "no-such-id", "--outcome", "synced"), 1, "error: no verification 'no-such-id'\n"),
        (("verifications", "resolve", "X", "--outcome", "synced", "--booking", "A"), 2, "error: --booking: expected PHASE=UID, got 'A'\n"),
        (("verifications", "list", "--cursor", "nonsense"), 2, "error: cursor: not a cursor this API handed out\n"),
    ],
)
def test_verification_errors_are_one_line(
    argv: tuple[str, ...], code: int, message: str, operator_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, *argv)[0:3:2] == (code, message)


def test_resolve_naming_an_unknown_phase_exits_2(operator_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    ids = asyncio.run(seed(operator_env))
    code, _, err = run(capsys, "verifications", "resolve", ids["764"], "--outcome", "synced", "--booking", "Z=bk")
    assert code == 2 and err == "error: bookings names phases this verification has no staff-required phase for: Z\n"


# -- status ----------------------------------------------------------------------------------------


def test_status_summary_and_json(operator_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("service.app.status")
    asyncio.run(seed(operator_env))
    code, out, _ = run(capsys, "status", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["verifications"]["by_status"]["pending"] == 2 and report["verifications"]["by_status"]["verified"] == 1
    code, out, _ = run(capsys, "status")
    assert code == 0
    assert "verifications: 3 — pending 2, verified 1, manual_review 0, resolved 0" in out
    assert "auto-recovery rate: 100.0% (target > 90 %)" in out
    assert "review queue: 0" in out
