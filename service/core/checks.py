"""What one check of a verification amounts to. Pure: Cal.com's answer and the row in, the record out.

A check is a question put to Cal.com. Its outcome decides three things the poller stores: whether
it counts as a check at all (a request deferred by the rate limit does not), how many failures in a
row the verification has now, and when it is looked at next — never after its deadline, and never
again once the deadline is reached.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from service.core import ratelimit, schedule
from service.core.times import merge_windows

MAX_QUERY_SPAN = timedelta(days=7)  # a wider union is split: one query per cluster of windows


@dataclass(frozen=True)
class Asked:
    """Cal.com's answer for one verification's window: `calls` requests made, `complete` if every page came."""

    complete: bool
    calls: int
    error: str | None = None


@dataclass(frozen=True)
class CheckRecord:
    calls: int
    complete: bool
    failures: int
    error: str | None
    next_check_at: datetime | None
    at_deadline: bool
    deferred: bool


@dataclass(frozen=True)
class Due:
    """The stored facts about a verification a check needs."""

    created_at: datetime
    deadline_at: datetime
    review_started_at: datetime | None
    failures: int
    last_error: str | None


def record_check(
    due: Due,
    answer: Asked | None,
    now: datetime,
    *,
    settle_seconds: float,
    check_schedule: Sequence[float],
    allowed_at: datetime | None,
    rng: random.Random,
) -> CheckRecord:
    """The record of checking `due` at `now` with `answer` (None: no request was made for it).

    `allowed_at` is when the API key may be asked again (a 429 block or a backoff), if it is paused.
    """
    # Back from review for a recheck (it was in review before): the first complete answer decides.
    at_deadline = now >= due.deadline_at or (answer is not None and answer.complete and due.review_started_at is not None)
    scheduled = schedule.next_scheduled(due.created_at, settle_seconds, check_schedule, due.deadline_at, now)
    next_at: datetime | None
    if answer is None or (answer.calls == 0 and not answer.complete):
        # Deferred by the rate limit: no request was made, so this is not a check.
        next_at = None if at_deadline else min(allowed_at or scheduled, due.deadline_at)
        return CheckRecord(0, False, due.failures, due.last_error, next_at, at_deadline, deferred=answer is not None)
    if answer.complete:
        return CheckRecord(1, True, 0, None, None if at_deadline else scheduled, at_deadline, deferred=False)
    failures = due.failures + 1
    # Retried when the account's pause (429 block or backoff) ends, sooner than the schedule if that
    # is later; never after the deadline.
    retry_at = allowed_at or now + timedelta(seconds=ratelimit.backoff(failures, rng))
    next_at = None if at_deadline else min(max(retry_at, now), due.deadline_at)
    return CheckRecord(1, False, failures, answer.error, next_at, at_deadline, deferred=False)


def query_windows(windows: list[tuple[datetime, datetime]], max_span: timedelta = MAX_QUERY_SPAN) -> list[tuple[datetime, datetime]]:
    """The union of the due verifications' windows as few queries as possible, each at most `max_span` wide."""
    clusters: list[tuple[datetime, datetime]] = []
    for lo, hi in merge_windows(windows):
        if clusters and max(hi, clusters[-1][1]) - clusters[-1][0] <= max_span:
            clusters[-1] = (clusters[-1][0], max(hi, clusters[-1][1]))
        else:
            clusters.append((lo, hi))
    return clusters
