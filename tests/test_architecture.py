"""The layout's rules: only the store speaks SQL (import-linter cannot see that), and the import contracts bite."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SERVICE = Path(__file__).resolve().parents[1] / "service"
# A SQL statement in a string: the verbs the store uses, followed by what makes them SQL.
STATEMENT = re.compile(r"\b(SELECT\s+[\w*(]|INSERT\s+INTO\b|UPDATE\s+\w+\s+SET\b|DELETE\s+FROM\b|CREATE\s+(TABLE|INDEX)\b)")


def test_nothing_but_the_store_speaks_sql() -> None:
    offenders = []
    for path in SERVICE.rglob("*.py"):
        relative = path.relative_to(SERVICE)
        if relative.parts[0] == "store":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if STATEMENT.search(line) or re.search(r"\bsql\(", line):
                offenders.append(f"service/{relative}:{number}: {line.strip()[:100]}")
    assert not offenders, "SQL outside service/store:\n" + "\n".join(offenders)


def test_the_rule_would_see_a_statement() -> None:
    assert STATEMENT.search('rows = await tx.fetch_all(sql("SELECT id FROM accounts"))')
    assert not STATEMENT.search("select a booking from the evidence")


def test_a_wrong_import_breaks_the_import_contracts(tmp_path: Path) -> None:
    """The contracts in pyproject.toml are live: httpx imported into core fails `lint-imports` (and so CI)."""
    linter = Path(sys.executable).with_name("lint-imports")
    if not linter.exists():
        pytest.skip("lint-imports is not installed (make install)")
    shutil.copytree(SERVICE, tmp_path / "service", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(SERVICE.parent / "pyproject.toml", tmp_path / "pyproject.toml")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    clean = subprocess.run([str(linter)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    times = tmp_path / "service" / "core" / "times.py"
    times.write_text(
        times.read_text(encoding="utf-8").replace(
            "from __future__ import annotations\n", "from __future__ import annotations\n\nimport httpx\n", 1
        ),
        encoding="utf-8",
    )
    broken = subprocess.run([str(linter), "--no-cache"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert broken.returncode != 0
    assert "service.core is not allowed to import httpx" in broken.stdout
