"""What one check amounts to: counted or deferred, failures in a row, and when it is looked at next."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from service.core.checks import Asked, Due, query_windows, record_check

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
SCHEDULE = (60.0, 300.0)  # checks at +30 s (settle), +90 s, +390 s (the deadline)
DUE = Due(created_at=T0, deadline_at=T0 + timedelta(seconds=390), review_started_at=None, failures=2, last_error="earlier")


def check(answer: Asked | None, now: datetime, due: Due = DUE, allowed_at: datetime | None = None):
    return record_check(due, answer, now, settle_seconds=30, check_schedule=SCHEDULE, allowed_at=allowed_at, rng=random.Random(7))


def test_a_complete_answer_is_a_check_that_clears_failures_and_waits_for_the_next_scheduled_one() -> None:
    record = check(Asked(complete=True, calls=1), T0 + timedelta(seconds=30))
    assert (record.calls, record.complete, record.failures, record.error) == (1, True, 0, None)
    assert record.next_check_at == T0 + timedelta(seconds=90)
    assert not record.at_deadline and not record.deferred


def test_a_request_the_rate_limit_deferred_is_not_a_check_and_keeps_the_failures() -> None:
    allowed = T0 + timedelta(seconds=50)
    record = check(Asked(complete=False, calls=0, error="rate limited"), T0 + timedelta(seconds=30), allowed_at=allowed)
    assert (record.calls, record.failures, record.error, record.deferred) == (0, 2, "earlier", True)
    assert record.next_check_at == allowed


def test_no_answer_at_all_is_neither_a_check_nor_counted_as_deferred() -> None:
    record = check(None, T0 + timedelta(seconds=30))
    assert (record.calls, record.deferred) == (0, False)
    assert record.next_check_at == T0 + timedelta(seconds=90)


def test_an_incomplete_answer_counts_a_failure_and_retries_after_the_pause_but_never_after_the_deadline() -> None:
    now = T0 + timedelta(seconds=30)
    record = check(Asked(complete=False, calls=1, error="CalcomUnavailable: 503"), now, allowed_at=T0 + timedelta(seconds=45))
    assert (record.calls, record.complete, record.failures, record.error) == (1, False, 3, "CalcomUnavailable: 503")
    assert record.next_check_at == T0 + timedelta(seconds=45)
    late = check(Asked(complete=False, calls=1), now, allowed_at=T0 + timedelta(hours=2))
    assert late.next_check_at == DUE.deadline_at


def test_at_the_deadline_nothing_is_scheduled_and_the_verdict_is_due() -> None:
    for answer in (Asked(complete=True, calls=1), Asked(complete=False, calls=1), None):
        record = check(answer, DUE.deadline_at)
        assert record.at_deadline and record.next_check_at is None


def test_back_from_review_the_first_complete_answer_decides_and_a_failure_does_not() -> None:
    rechecked = Due(T0, T0 + timedelta(hours=1), review_started_at=T0 + timedelta(minutes=7), failures=0, last_error=None)
    assert check(Asked(complete=True, calls=1), T0 + timedelta(minutes=8), rechecked).at_deadline
    assert not check(Asked(complete=False, calls=1), T0 + timedelta(minutes=8), rechecked).at_deadline


def test_query_windows_join_overlaps_and_split_beyond_a_week() -> None:
    hour = timedelta(hours=1)
    windows = [(T0, T0 + hour), (T0 + 0.5 * hour, T0 + 2 * hour), (T0 + timedelta(days=10), T0 + timedelta(days=10) + hour)]
    assert query_windows(windows) == [(T0, T0 + 2 * hour), (T0 + timedelta(days=10), T0 + timedelta(days=10) + hour)]
