"""Reading and writing instants: the one place that knows the formats. Pure.

Every instant the service handles is timezone-aware; it is written in UTC with a `Z`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

# Far from datetime's edges, so window arithmetic (± tolerance, + 12 h) never overflows.
EARLIEST_YEAR, LATEST_YEAR = 1971, 2998


def parse(value: Any, *, naive_is_utc: bool = False) -> datetime | None:
    """An ISO 8601 instant within the supported years; None when it is not one.

    Without an offset the instant is refused, unless `naive_is_utc` (Cal.com's API means UTC).
    """
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        if not naive_is_utc:
            return None
        moment = moment.replace(tzinfo=timezone.utc)
    if not EARLIEST_YEAR <= moment.year <= LATEST_YEAR:
        return None
    return moment


def in_range(moment: datetime) -> bool:
    return EARLIEST_YEAR <= moment.year <= LATEST_YEAR


def iso(value: datetime | None) -> str | None:
    """As the API writes instants: UTC with a `Z`, milliseconds only when there are any."""
    if value is None:
        return None
    value = value.astimezone(timezone.utc)
    spec = "milliseconds" if value.microsecond else "seconds"
    return value.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def iso_ms(value: datetime) -> str:
    """UTC with milliseconds always (Cal.com's query parameters and our log lines)."""
    if value.tzinfo is None:
        raise ValueError("instants must be timezone-aware")
    return value.astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def sortable(value: datetime) -> str:
    """Fixed width with microseconds, so text order is time order (how SQLite stores instants)."""
    if value.tzinfo is not timezone.utc:
        value = value.astimezone(timezone.utc)
    return value.isoformat(timespec="microseconds")[:-6] + "Z"


def now() -> datetime:
    return datetime.now(timezone.utc)


def merge_windows(points: Iterable[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Overlapping or touching windows joined; the result is sorted."""
    merged: list[tuple[datetime, datetime]] = []
    for lo, hi in sorted(points):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged
