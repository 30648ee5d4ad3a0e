"""Reading query plans (SQLite's EXPLAIN QUERY PLAN, PostgreSQL's EXPLAIN (FORMAT JSON)) as table reads.

A plan is judged table by table: every read of a history table must be an index read bounded by
the statement's time window (`Range`) or a key lookup (`Key`); a full scan, or an index search on
the account alone, is a walk through history.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from service.store.connector import Database, Query, sql

HISTORY_TABLES = frozenset({"booking_observations", "booking_claims", "verifications", "phases", "outbox", "webhook_events"})


@dataclass(frozen=True)
class Range:
    """An index range bounded on this (time) column."""

    column: str

    def fits(self, conditions: dict[str, set[str]]) -> bool:
        return bool(conditions.get(self.column, set()) & {"<", ">", "<=", ">="})


@dataclass(frozen=True)
class Key:
    """Equality on all of these columns of an index (one key, or a short list of keys)."""

    columns: tuple[str, ...]

    def fits(self, conditions: dict[str, set[str]]) -> bool:
        return all("=" in conditions.get(column, set()) for column in self.columns)


@dataclass(frozen=True)
class Via:
    """Through this partial index: its predicate bounds the read (e.g. only the rows in the review queue)."""

    index: str

    def fits(self, conditions: dict[str, set[str]], index: str | None = None) -> bool:
        return index == self.index


Access = Range | Key | Via


def _fits(access: Access, read: Read) -> bool:
    return access.fits(read.conditions, read.index) if isinstance(access, Via) else access.fits(read.conditions)


@dataclass(frozen=True)
class Case:
    """A statement, its parameters, and how each history table it touches must be read.

    `reads` maps a table to the accesses allowed on it: every access of that table in the plan
    must fit one of them, and each `Range` must occur (the window is really what bounds the read).
    A history table missing from `reads` must not be read at all.
    """

    name: str
    query: Callable[[], Query]
    params: dict[str, Any]
    reads: dict[str, tuple[Access, ...]] = field(default_factory=dict)


_SQLITE_ACCESS = re.compile(
    r"^(?P<kind>SCAN|SEARCH) (?P<alias>\w+)(?: USING (?:(?:COVERING |AUTOMATIC (?:COVERING |PARTIAL COVERING )?)?INDEX (?P<index>\w+)"
    r"|(?P<pk>INTEGER PRIMARY KEY|PRIMARY KEY)))?(?: \((?P<cond>[^)]*(?:\)[^)]*)*)\))?"
)
_SQLITE_TERM = re.compile(r"ANY\((\w+)\)|(\w+)(=|>=|<=|>|<)\?")
_PG_TERM = re.compile(r"\b(\w+) (=|>=|<=|>|<) ")


@dataclass
class Read:
    """One access of a table in a plan: the table, whether it is a full scan, and its index conditions."""

    table: str
    scan: bool
    conditions: dict[str, set[str]]
    text: str
    index: str | None = None


def _aliases(text: str, tables: set[str]) -> dict[str, str]:
    found = {t: t for t in tables}
    for table, alias in re.findall(r"\b(?:FROM|JOIN|UPDATE|INTO)\s+(\w+)(?:\s+(?:AS\s+)?(\w+))?", text, re.IGNORECASE):
        if table in tables and alias and alias.upper() not in {"WHERE", "SET", "ON", "USING", "VALUES", "CROSS", "JOIN", "ORDER"}:
            found[alias] = table
    return found


async def sqlite_reads(db: Database, case: Case) -> tuple[list[Read], str]:
    query = case.query()
    async with db.read() as tx:
        tables = {r["name"] for r in await tx.fetch_all(sql("SELECT name FROM sqlite_master WHERE type = 'table'"))}
        owners = {
            r["name"]: r["tbl_name"] for r in await tx.fetch_all(sql("SELECT name, tbl_name FROM sqlite_master WHERE type = 'index'"))
        }
        lines = [r["detail"] for r in await tx.fetch_all(sql("EXPLAIN QUERY PLAN " + query.text), **case.params)]
    aliases = _aliases(query.text, tables)
    reads = []
    for line in lines:
        match = _SQLITE_ACCESS.match(line)
        if not match or "VIRTUAL TABLE" in line:
            continue
        table = owners.get(match["index"] or "", aliases.get(match["alias"], match["alias"]))
        conditions: dict[str, set[str]] = {}
        for any_column, column, op in _SQLITE_TERM.findall(match["cond"] or ""):
            name = any_column or ("seq" if column == "rowid" else column)
            conditions.setdefault(name, set()).add("=" if any_column else op)
        automatic = "AUTOMATIC" in line  # an index built for this one statement reads the whole table
        reads.append(Read(table, match["kind"] == "SCAN" or automatic, conditions, line, match["index"]))
    return reads, "\n".join(lines)


def _pg_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _pg_nodes(child)


async def pg_plan(db: Database, case: Case, generic: bool) -> dict[str, Any]:
    text, names = case.query().compiled("postgresql")
    async with db.transaction() as tx:
        raw = tx.raw
        if not generic:
            found = await raw.fetchval("EXPLAIN (FORMAT JSON) " + text, *[case.params[n] for n in names])
        else:
            # What a prepared statement runs once PostgreSQL stops planning it per call.
            await raw.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            await raw.execute(f"PREPARE plan_case AS {text}")
            try:
                found = await raw.fetchval(
                    f"EXPLAIN (FORMAT JSON) EXECUTE plan_case({', '.join(['NULL'] * len(names))})"
                    if names
                    else "EXPLAIN (FORMAT JSON) EXECUTE plan_case"
                )
            finally:
                await raw.execute("DEALLOCATE plan_case")
    return (json.loads(found) if isinstance(found, str) else found)[0]["Plan"]


def pg_reads(plan: dict[str, Any]) -> list[Read]:
    reads = []
    for node in _pg_nodes(plan):
        table = node.get("Relation Name")
        kind = node["Node Type"]
        if table is None or kind == "ModifyTable":
            continue
        if kind == "Bitmap Heap Scan":
            cond = " ".join(child.get("Index Cond", "") for child in _pg_nodes(node) if child["Node Type"] == "Bitmap Index Scan")
        else:
            cond = node.get("Index Cond", "")
        conditions: dict[str, set[str]] = {}
        for column, op in _PG_TERM.findall(cond):
            conditions.setdefault(column, set()).add(op)
        scan = kind not in ("Index Scan", "Index Only Scan", "Bitmap Heap Scan")
        index = node.get("Index Name") or next(
            (child.get("Index Name") for child in _pg_nodes(node) if child["Node Type"] == "Bitmap Index Scan"), None
        )
        reads.append(Read(table, scan, conditions, f"{kind} on {table} ({index or '-'}: {cond or 'no index condition'})", index))
    return reads


def verdict(case: Case, reads: list[Read]) -> list[str]:
    """What is wrong with the plan (nothing: an empty list)."""
    wrong = []
    for read in reads:
        if read.table not in HISTORY_TABLES:
            continue
        allowed = case.reads.get(read.table)
        if allowed is None:
            wrong.append(f"reads {read.table}, which it has no business reading: {read.text}")
        elif read.scan and not any(isinstance(access, Via) and access.index == read.index for access in allowed):
            # (a scan of an allowed partial index reads only the rows its predicate keeps)
            wrong.append(f"scans all of {read.table}: {read.text}")
        elif not any(_fits(access, read) for access in allowed):
            wrong.append(f"reads {read.table} neither by {' nor by '.join(map(str, allowed))}: {read.text}")
    for table, allowed in case.reads.items():
        for access in allowed:
            if isinstance(access, Range) and not any(r.table == table and not r.scan and access.fits(r.conditions) for r in reads):
                wrong.append(f"never reads {table} by {access}")
    return wrong
