"""When a verification is checked. Pure: times in, times out."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta


def check_times(created_at: datetime, settle_seconds: float, schedule: Sequence[float]) -> list[datetime]:
    """Every scheduled check: the settle window, then each delay counted from the previous check."""
    at = created_at + timedelta(seconds=settle_seconds)
    times = [at]
    for delay in schedule:
        at = at + timedelta(seconds=delay)
        times.append(at)
    return times


def deadline(created_at: datetime, settle_seconds: float, schedule: Sequence[float]) -> datetime:
    """The last scheduled check; after it the verdict is final."""
    return check_times(created_at, settle_seconds, schedule)[-1]


def next_scheduled(
    created_at: datetime, settle_seconds: float, schedule: Sequence[float], deadline_at: datetime, now: datetime
) -> datetime:
    """The first scheduled check after `now` (missed ones are not made up), never past the deadline."""
    for at in check_times(created_at, settle_seconds, schedule):
        if at > now and at < deadline_at:
            return at
    return deadline_at
