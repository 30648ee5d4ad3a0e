"""Finding candidates fast: bookings by account and start time, and what links verifications. Pure."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Hashable, Iterable
from datetime import datetime, timedelta

from service.core.bookings import Booking, BookingKey, Target, eligible


class TimeIndex:
    """Bookings by account, sorted by start: the ones within a tolerance of an instant, by bisection."""

    def __init__(self, bookings: Iterable[Booking]) -> None:
        by_account: dict[str, list[Booking]] = defaultdict(list)
        for b in bookings:
            by_account[b.account].append(b)
        self._sorted = {a: sorted(found, key=lambda b: b.start) for a, found in by_account.items()}
        self._starts = {a: [b.start for b in found] for a, found in self._sorted.items()}

    def near(self, account: str, moment: datetime, tolerance_ms: int) -> list[Booking]:
        starts = self._starts.get(account)
        if not starts:
            return []
        reach = timedelta(milliseconds=tolerance_ms)
        return self._sorted[account][bisect_left(starts, moment - reach) : bisect_right(starts, moment + reach)]


def competitors(targets: Iterable[Target], bookings: Iterable[Booking], tolerance_ms: int) -> dict[Hashable, list[Booking]]:
    """For each target: the live untagged bookings eligible for one of its phases (what links it to others)."""
    index = TimeIndex(b for b in bookings if not b.gone and b.appointment_tag is None and b.verifier_tag is None)
    found: dict[Hashable, list[Booking]] = {}
    for target in targets:
        seen: dict[BookingKey, Booking] = {}
        for phase in target.phases:
            for b in index.near(target.account, phase.start, tolerance_ms):
                if eligible(phase, b, tolerance_ms):
                    seen[b.key] = b
        found[target.ref] = list(seen.values())
    return found
