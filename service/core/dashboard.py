"""The dashboard's 14 days: daily figures from verification rows, and their SVG geometry. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

DAYS = 14
OUTCOMES = ("verified", "manual_review", "resolved", "pending")


@dataclass
class Day:
    day: date
    created: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    caught: int = 0  # failed syncs whose bookings existed after all: verified, or resolved as synced
    verified: int = 0
    final: int = 0  # verified, in review, or resolved (the auto-recovery rate's denominator)
    review_entries: int = 0
    queue_size: int = 0  # in review at the end of the day
    verdict_seconds: list[float] = field(default_factory=list)

    @property
    def recovery_rate(self) -> float | None:
        return self.verified / self.final if self.final else None

    def percentile(self, q: float) -> float | None:
        values = sorted(self.verdict_seconds)
        if not values:
            return None
        return values[min(len(values) - 1, int(q * len(values)))]


def days(rows: Sequence[Mapping[str, Any]], now: datetime, count: int = DAYS) -> list[Day]:
    """Per day (UTC) of the last `count` days: verifications by outcome, caught, review entries and queue, verdict times."""
    today = now.astimezone(timezone.utc).date()
    out = [Day(today - timedelta(days=count - 1 - i)) for i in range(count)]
    index = {d.day: d for d in out}
    ends = [(d, datetime.combine(d.day, time.max, tzinfo=timezone.utc)) for d in out]
    for row in rows:
        created: datetime = row["created_at"]
        bucket = index.get(created.astimezone(timezone.utc).date())
        status = row["status"]
        verdict_at = row["review_started_at"] or row["resolved_at"]
        automatic = status == "verified" or (row["review_started_at"] is not None and row["review_reason"] != "verification_disabled")
        if bucket is not None:
            bucket.created[status if status in bucket.created else "pending"] += 1
            if status == "verified" or (status == "resolved" and row["resolution"] == "synced"):
                bucket.caught += 1
            if status != "pending":
                bucket.final += 1
                bucket.verified += status == "verified"
            if automatic and verdict_at is not None:
                bucket.verdict_seconds.append(max((verdict_at - created).total_seconds(), 0.0))
        started = row["review_started_at"]
        if started is not None and status in ("manual_review", "resolved"):
            entered = index.get(started.astimezone(timezone.utc).date())
            if entered is not None:
                entered.review_entries += 1
            left = row["resolved_at"] if status == "resolved" else None
            for d, end in ends:
                if started <= end and (left is None or left > end):
                    d.queue_size += 1
    return out


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    series: str


@dataclass(frozen=True)
class Chart:
    """A chart ready to draw: bars (stacked by series) or a polyline, axes and labels, in a 0..W x 0..H box."""

    title: str
    width: int
    height: int
    bars: tuple[Bar, ...] = ()
    lines: tuple[tuple[str, str], ...] = ()  # (series, "x,y x,y …")
    dots: tuple[tuple[str, float, float, str], ...] = ()  # (series, x, y, label): each value of a line
    x_labels: tuple[tuple[float, str], ...] = ()
    y_max_label: str = ""
    empty: bool = False
    legend: tuple[str, ...] = ()


_W, _H, _PAD = 560, 180, 24


def stacked(title: str, labels: Sequence[str], series: Mapping[str, Sequence[float]]) -> Chart:
    """Bars per day, one segment per series."""
    totals = [sum(values[i] for values in series.values()) for i in range(len(labels))]
    top = max(totals, default=0) or 1
    slot = (_W - _PAD) / max(len(labels), 1)
    bars: list[Bar] = []
    for i, label in enumerate(labels):
        base = 0.0
        for name, values in series.items():
            if values[i]:
                h = (values[i] / top) * (_H - _PAD)
                bars.append(Bar(_PAD + i * slot + 2, _H - _PAD - base - h, slot - 4, h, f"{label}: {name} {values[i]:g}", name))
                base += h
    return Chart(title, _W, _H, bars=tuple(bars), x_labels=_x_labels(labels, slot), y_max_label=f"{top:g}",
                 empty=not any(totals), legend=tuple(series))  # fmt: skip


def line(
    title: str, labels: Sequence[str], series: Mapping[str, Sequence[float | None]], unit: str = "", top: float | None = None
) -> Chart:
    """One polyline per series, with a dot per value; days without a value are skipped."""
    known = [v for values in series.values() for v in values if v is not None]
    top = top or max(known, default=0) or 1
    slot = (_W - _PAD) / max(len(labels), 1)
    lines, dots = [], []
    for name, values in series.items():
        points = [(i, _PAD + i * slot + slot / 2, _H - _PAD - (v / top) * (_H - _PAD), v) for i, v in enumerate(values) if v is not None]
        lines.append((name, " ".join(f"{x:.1f},{y:.1f}" for _, x, y, _ in points)))
        dots += [(name, x, y, f"{labels[i]}: {name} {v:.3g}{unit}") for i, x, y, v in points]
    return Chart(title, _W, _H, lines=tuple(lines), dots=tuple(dots), x_labels=_x_labels(labels, slot),
                 y_max_label=f"{top:.3g}{unit}", empty=not known, legend=tuple(series))  # fmt: skip


def _x_labels(labels: Sequence[str], slot: float) -> tuple[tuple[float, str], ...]:
    return tuple((_PAD + i * slot + slot / 2, label) for i, label in enumerate(labels) if (len(labels) - 1 - i) % 2 == 0)


def charts(history: Sequence[Day]) -> list[Chart]:
    """The dashboard's charts over the days given."""
    labels = [d.day.strftime("%m-%d") for d in history]
    p50 = [d.percentile(0.5) for d in history]
    p99 = [d.percentile(0.99) for d in history]
    return [
        stacked("Verifications per day by outcome", labels, {o: [d.created[o] for d in history] for o in OUTCOMES}),
        stacked("False negatives caught (bookings found after a failed sync)", labels, {"caught": [d.caught for d in history]}),
        line(
            "Auto-recovery rate",
            labels,
            {"rate": [None if d.recovery_rate is None else d.recovery_rate * 100 for d in history]},
            "%",
            top=100,
        ),
        stacked("Review queue: entries per day", labels, {"entries": [d.review_entries for d in history]}),
        line("Review queue size at the end of the day", labels, {"size": [float(d.queue_size) for d in history]}),
        line("Time to verdict (seconds)", labels, {"p50": p50, "p99": p99}, " s"),
    ]
