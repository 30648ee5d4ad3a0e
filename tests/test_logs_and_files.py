"""Log lines (text at a terminal, JSON otherwise, one time format, no colour codes) and a private database file."""

from __future__ import annotations

import io
import json
import logging
import os
import stat
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from service import logs
from service.settings import Settings
from service.store.connector import Database, sql

WHEN = datetime(2026, 12, 1, 9, 0, 5, 250_000, tzinfo=timezone(timedelta(hours=1)))


def record(message: str = "poller started", **extra: object) -> logging.LogRecord:
    entry = logging.LogRecord("service.workers.poller", logging.WARNING, __file__, 1, message, (), None)
    entry.created = datetime(2026, 12, 1, 8, 0, 0, 125_000, tzinfo=timezone.utc).timestamp()
    for key, value in extra.items():
        setattr(entry, key, value)
    return entry


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_json_lines_carry_no_colour_codes_and_one_time_format() -> None:
    # uvicorn adds the message again with colour codes as `color_message`.
    line = logs.JsonFormatter().format(
        record(
            "Uvicorn running on \x1b[1mhttp://0.0.0.0:8000\x1b[0m",
            color_message="\x1b[32mINFO\x1b[0m",
            event="calcom_backoff",
            paused_until=WHEN,
            when=[WHEN],
        )
    )
    assert "\x1b" not in line and "\\u001b" not in line
    entry = json.loads(line)
    assert "color_message" not in entry and entry["msg"] == "Uvicorn running on http://0.0.0.0:8000"
    assert entry["ts"] == "2026-12-01T08:00:00.125Z"
    assert entry["paused_until"] == "2026-12-01T08:00:05.250Z" and entry["when"] == ["2026-12-01T08:00:05.250Z"]


def test_a_terminal_gets_readable_lines_a_pipe_gets_json() -> None:
    assert isinstance(logs.formatter("auto", Terminal()), logs.TextFormatter)
    assert isinstance(logs.formatter("auto", io.StringIO()), logs.JsonFormatter)
    assert isinstance(logs.formatter("json", Terminal()), logs.JsonFormatter)
    assert isinstance(logs.formatter("text", io.StringIO()), logs.TextFormatter)
    line = logs.TextFormatter().format(
        record(
            "no complete answer from Cal.com", event="calcom_backoff", account="salon-1", paused_until=WHEN, error="Cal.com answered 503"
        )
    )
    assert line == (
        "2026-12-01T08:00:00.125Z WARNING calcom_backoff: no complete answer from Cal.com  "
        'account=salon-1 paused_until=2026-12-01T08:00:05.250Z error="Cal.com answered 503"'
    )


def test_log_format_is_a_setting() -> None:
    assert Settings(_env_file=None).log_format == "auto"
    assert Settings(_env_file=None, log_format="TEXT").log_format == "text"


def test_configure_follows_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    before = root.handlers[:], root.level
    try:
        monkeypatch.setattr(sys, "stderr", Terminal())
        logs.configure("INFO")
        assert isinstance(root.handlers[0].formatter, logs.TextFormatter)
        monkeypatch.setattr(sys, "stderr", io.StringIO())
        logs.configure("INFO")
        assert isinstance(root.handlers[0].formatter, logs.JsonFormatter)
    finally:
        root.handlers[:], level = before
        root.setLevel(level)


async def test_the_database_file_and_its_directory_are_the_owners_only(tmp_path: Path) -> None:
    previous = os.umask(0)  # whatever the umask, the files holding the secrets are private
    try:
        path = tmp_path / "fresh" / "var" / "verifier.sqlite3"
        db = Database(f"sqlite+aiosqlite:///{path}")
        await db.connect()
        try:
            async with db.transaction() as tx:
                await tx.execute(sql("CREATE TABLE t (x INTEGER)"))
        finally:
            await db.disconnect()
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    for file in path.parent.iterdir():  # the database and, while open, its -wal and -shm files
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
