"""The dashboard's daily figures over 14 days, from verification rows (pure)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from service.core.dashboard import charts, days

NOW = datetime(2026, 12, 15, 12, 0, tzinfo=timezone.utc)


def _row(day: int, status: str, *, review: float | None = None, resolved: float | None = None, **extra: Any) -> dict[str, Any]:
    created = datetime(2026, 12, day, 9, 0, tzinfo=timezone.utc)
    return {
        "created_at": created, "status": status, "resolved_via": extra.get("via"), "resolution": extra.get("resolution"),
        "review_reason": extra.get("reason", "no_booking_found" if review is not None else None),
        "review_started_at": created + timedelta(hours=review) if review is not None else None,
        "resolved_at": created + timedelta(hours=resolved if resolved is not None else (review or 0.01)) if status != "pending" else None,
    }  # fmt: skip


def test_each_day_counts_outcomes_caught_failures_review_entries_and_queue_size() -> None:
    rows = [
        _row(13, "verified"),
        _row(13, "verified"),
        _row(13, "manual_review", review=1),
        _row(12, "resolved", review=1, resolved=30, resolution="synced"),
        _row(1, "pending"),  # before the 14 days
    ]
    by_day = {d.day.day: d for d in days(rows, NOW)}
    assert len(by_day) == 14 and 1 not in by_day
    assert by_day[13].created["verified"] == 2 and by_day[13].created["manual_review"] == 1
    assert by_day[13].caught == 2 and by_day[12].caught == 1  # resolved as synced counts as caught
    assert by_day[13].recovery_rate == 2 / 3 and by_day[12].recovery_rate == 0
    assert by_day[13].review_entries == 1 and by_day[12].review_entries == 1
    # The one resolved on the 13th (30 h after its creation on the 12th) was in the queue at the end of the 12th only.
    assert by_day[12].queue_size == 1 and by_day[13].queue_size == 1 and by_day[14].queue_size == 1
    assert by_day[13].percentile(0.5) == 36.0 and by_day[13].percentile(0.99) == 3600.0


def test_charts_are_drawn_for_an_empty_fortnight_without_dividing_by_zero() -> None:
    drawn = {c.title: c for c in charts(days([], NOW))}
    size = drawn.pop("Review queue size at the end of the day")  # an empty queue is a size: 0
    assert len(drawn) == 5 and all(c.empty for c in drawn.values())
    assert not size.empty and {y for _, _, y, _ in size.dots} == {156.0}
