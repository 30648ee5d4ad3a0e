"""The layout's rules that import-linter cannot see: only the store speaks SQL."""

from __future__ import annotations

import re
from pathlib import Path

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
