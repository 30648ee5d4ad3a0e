from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.settings import ConfigError, Settings, load_settings, normalize_database_url

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name in Settings.model_fields or name.upper() in {f.upper() for f in Settings.model_fields}:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults_follow_the_spec() -> None:
    settings = load_settings()
    assert settings.database_url == "sqlite+aiosqlite:///var/verifier.sqlite3"
    assert settings.api_token is None
    assert settings.port == 8000
    assert settings.calcom_api_base == "https://api.cal.com"
    assert settings.settle_seconds == 2
    assert settings.check_schedule == (10, 30, 120, 600)
    assert settings.match_tolerance_seconds == 300
    assert settings.max_body_bytes == 1_048_576
    assert settings.post_sync_verification is True


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///var/x.db", "sqlite+aiosqlite:///var/x.db"),
        ("sqlite+aiosqlite:////abs/x.db", "sqlite+aiosqlite:////abs/x.db"),
        ("postgresql://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+asyncpg://u@h:5433/db", "postgresql+asyncpg://u@h:5433/db"),
    ],
)
def test_database_url_spellings_are_accepted(given: str, expected: str) -> None:
    assert normalize_database_url(given) == expected


def test_schedule_is_a_comma_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHECK_SCHEDULE", "5, 15,60")
    assert load_settings().check_schedule == (5, 15, 60)


def test_kill_switch_reads_false(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POST_SYNC_VERIFICATION", "false")
    assert load_settings().post_sync_verification is False


def test_dotenv_file_supplies_values(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PORT=9123\nMATCH_TOLERANCE_SECONDS=120\n")
    settings = load_settings()
    assert (settings.port, settings.match_tolerance_seconds) == (9123, 120)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DATABASE_URL", "mysql://x/y"),
        ("DATABASE_URL", "sqlite:relative"),
        ("PORT", "eighty"),
        ("PORT", "70000"),
        ("CALCOM_API_BASE", "ftp://api.cal.com"),
        ("SETTLE_SECONDS", "-1"),
        ("CHECK_SCHEDULE", "10,abc"),
        ("CHECK_SCHEDULE", "10,0"),
        ("MATCH_TOLERANCE_SECONDS", "soon"),
        ("MAX_BODY_BYTES", "0"),
        ("POST_SYNC_VERIFICATION", "perhaps"),
        ("API_TOKEN", "short"),
    ],
)
def test_bad_value_fails_with_one_line_naming_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"configuration error: {name}:")


def test_bad_api_token_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_TOKEN", "tiny-secret")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert "tiny-secret" not in str(raised.value)


def test_process_refuses_to_start_on_bad_config(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k.upper() not in {f.upper() for f in Settings.model_fields}}
    env["SETTLE_SECONDS"] = "abc"
    result = subprocess.run([sys.executable, "-m", "service", "migrate"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "configuration error: SETTLE_SECONDS: Input should be a valid number, unable to parse string as a number (got 'abc')"
    ]
