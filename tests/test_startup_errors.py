"""A process that cannot start says why in one line naming the variable, exits 2, and never shows a password."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from service.cli.startup import _bind_problem
from service.settings import Settings, describe_database, without_password

from .conftest import PG_URL
from .helpers import TEST_SECRET_KEY
from .processes import free_port

PASSWORD = "pw-never-printed-7f1e"


def start(tmp_path: Path, *argv: str, **variables: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k.upper() not in {f.upper() for f in Settings.model_fields}}
    env["SECRET_KEYS"] = TEST_SECRET_KEY
    env.update(variables)
    env = {k: v for k, v in env.items() if v is not None}
    return subprocess.run([sys.executable, "-m", "service", *argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)


def assert_one_line(result: subprocess.CompletedProcess[str], starts: str, *words: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"configuration error: {starts}"), lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    assert PASSWORD not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("argv", [("migrate",), ("poll",), ("web",), ("accounts", "list")])
def test_a_refused_database_port_is_one_line(tmp_path: Path, argv: tuple[str, ...]) -> None:
    url = f"postgresql://verifier:{PASSWORD}@127.0.0.1:{free_port()}/verifier"
    assert_one_line(
        start(tmp_path, *argv, DATABASE_URL=url, PORT=str(free_port())), "DATABASE_URL:", "nothing accepts connections", "127.0.0.1"
    )


def test_a_malformed_database_port_is_one_line(tmp_path: Path) -> None:
    url = f"postgresql://verifier:{PASSWORD}@127.0.0.1:54x2/verifier"
    assert_one_line(start(tmp_path, "migrate", DATABASE_URL=url), "DATABASE_URL:", "'54x2' is not a number")


def test_an_unresolvable_database_host_is_one_line(tmp_path: Path) -> None:
    url = f"postgresql://verifier:{PASSWORD}@db.nowhere.invalid:5432/verifier"
    assert_one_line(start(tmp_path, "poll", DATABASE_URL=url), "DATABASE_URL:", "'db.nowhere.invalid' cannot be resolved")


def test_a_missing_postgresql_database_is_one_line(tmp_path: Path) -> None:
    if not PG_URL:
        pytest.skip("needs a PostgreSQL server: set TEST_DATABASE_URL")
    parts = urlsplit(PG_URL)
    netloc = f"{parts.username or 'postgres'}:{PASSWORD}@{parts.hostname}:{parts.port or 5432}"
    url = urlunsplit(parts._replace(netloc=netloc, path="/no_such_verifier_db"))
    for argv in (("migrate",), ("web",)):
        result = start(tmp_path, *argv, DATABASE_URL=url, PORT=str(free_port()))
        if "refused the login" in result.stderr:  # a server that checks passwords answers that first: also one line
            assert_one_line(result, "DATABASE_URL:", "refused the login")
            continue
        assert_one_line(result, "DATABASE_URL:", "'no_such_verifier_db' does not exist", "createdb")


def test_a_port_in_use_is_one_line_suggesting_another(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = start(tmp_path, "web", PORT=str(port))
    assert_one_line(result, "PORT:", f"port {port}", "already in use", f"PORT={port + 1}")
    assert not (tmp_path / "var").exists()  # nothing was started, nothing created


def test_an_unresolvable_host_is_one_line(tmp_path: Path) -> None:
    assert_one_line(start(tmp_path, "web", HOST="verifier.nowhere.invalid", PORT=str(free_port())), "HOST:", "cannot be resolved")


def test_a_malformed_port_is_one_line(tmp_path: Path) -> None:
    assert_one_line(start(tmp_path, "web", PORT="80eighty"), "PORT:", "valid integer")


def test_a_port_that_needs_privileges_and_a_foreign_address_are_named() -> None:
    assert _bind_problem(OSError(errno.EACCES, "Permission denied"), "0.0.0.0", 80).startswith(
        "PORT: listening on port 80 needs privileges"
    )
    assert _bind_problem(OSError(errno.EADDRNOTAVAIL, "Cannot assign"), "10.9.9.9", 8000).startswith("HOST: 10.9.9.9 is not an address")


def test_a_bad_database_url_is_echoed_without_its_password(tmp_path: Path) -> None:
    result = start(tmp_path, "migrate", DATABASE_URL=f"mysql://verifier:{PASSWORD}@db.example/verifier")
    assert_one_line(result, "DATABASE_URL:", "unsupported scheme", "verifier:***@db.example")


def test_database_names_in_messages_carry_no_password() -> None:
    url = f"postgresql+asyncpg://verifier:{PASSWORD}@db.example:6432/calcom"
    assert describe_database(url) == "the PostgreSQL database 'calcom' on db.example:6432 as verifier"
    assert without_password(url) == "postgresql+asyncpg://verifier:***@db.example:6432/calcom"
    assert describe_database("sqlite+aiosqlite:////srv/v/db.sqlite3") == "the SQLite file /srv/v/db.sqlite3"


def test_tolerance_default_beyond_what_an_account_may_have_is_refused(tmp_path: Path) -> None:
    # A new account would otherwise inherit 7200 s, which the API refuses to set (0 to 3600).
    assert_one_line(start(tmp_path, "migrate", MATCH_TOLERANCE_SECONDS="7200"), "MATCH_TOLERANCE_SECONDS:", "3600")


@pytest.mark.parametrize("argv", [("migrate",), ("poll",), ("web",), ("accounts", "list")])
def test_postgresql_without_secret_keys_is_one_line(tmp_path: Path, argv: tuple[str, ...]) -> None:
    url = f"postgresql://verifier:{PASSWORD}@127.0.0.1:{free_port()}/verifier"
    result = start(tmp_path, *argv, DATABASE_URL=url, PORT=str(free_port()), SECRET_KEYS=None)
    assert_one_line(result, "SECRET_KEYS:", "required with PostgreSQL")


def test_a_malformed_secret_key_is_one_line_and_not_echoed(tmp_path: Path) -> None:
    bad = "not-a-fernet-key-but-secret-looking-7f1e"
    result = start(tmp_path, "migrate", DATABASE_URL=f"sqlite:///{tmp_path / 'v.sqlite3'}", SECRET_KEYS=bad)
    assert_one_line(result, "SECRET_KEYS:", "url-safe base64")
    assert bad not in result.stderr
