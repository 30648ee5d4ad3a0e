"""Monotonic counters every process adds to and /metrics reads (events, not states)."""

from __future__ import annotations

from service.store.connector import Tx, sql

BUMP = sql(
    """
    INSERT INTO counters (name, label, value) VALUES (:name, :label, :by)
    ON CONFLICT (name, label) DO UPDATE SET value = counters.value + excluded.value
    """
)
ALL = sql("SELECT name, label, value FROM counters ORDER BY name, label")


async def bump(tx: Tx, name: str, label: str = "", by: int = 1) -> None:
    """Add `by` to counter `name` (with an optional label value), inside the caller's transaction."""
    await tx.execute(BUMP, name=name, label=label, by=by)


async def read_all(tx: Tx) -> dict[str, dict[str, int]]:
    """Every counter: {name: {label: value}}."""
    found: dict[str, dict[str, int]] = {}
    for row in await tx.fetch_all(ALL):
        found.setdefault(row["name"], {})[row["label"]] = int(row["value"])
    return found
