"""Pacing and backoff policy for Cal.com API keys (pure functions, fixed instants)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.core.ratelimit import RESERVE, KeyPace, backoff, next_allowed, parse_rate_headers, pause_after_429

NOW = datetime(2025, 10, 1, 12, 0, 0, tzinfo=timezone.utc)


def test_rate_headers_give_remaining_and_reset_in_seconds():
    headers = {
        "X-RateLimit-Limit-Default": "120",
        "X-RateLimit-Remaining-Default": "117",
        "X-RateLimit-Reset-Default": "42",
    }

    assert parse_rate_headers(headers, NOW) == (117, NOW + timedelta(seconds=42))


def test_rate_headers_are_read_case_insensitively():
    headers = {"x-ratelimit-remaining-default": "3", "X-RATELIMIT-RESET-DEFAULT": "10"}

    assert parse_rate_headers(headers, NOW) == (3, NOW + timedelta(seconds=10))


def test_rate_headers_take_the_most_restrictive_limit():
    headers = {
        "X-RateLimit-Remaining-Default": "100",
        "X-RateLimit-Reset-Default": "50",
        "X-RateLimit-Remaining-Short": "1",
        "X-RateLimit-Reset-Short": "5",
    }

    assert parse_rate_headers(headers, NOW) == (1, NOW + timedelta(seconds=5))


def test_rate_headers_on_equal_remaining_take_the_later_reset():
    headers = {
        "X-RateLimit-Remaining-Default": "0",
        "X-RateLimit-Reset-Default": "60",
        "X-RateLimit-Remaining-Burst": "0",
        "X-RateLimit-Reset-Burst": "2",
    }

    assert parse_rate_headers(headers, NOW) == (0, NOW + timedelta(seconds=60))


def test_rate_headers_absent_give_nothing():
    assert parse_rate_headers({"Content-Type": "application/json"}, NOW) == (None, None)


def test_rate_headers_without_reset_give_remaining_only():
    assert parse_rate_headers({"X-RateLimit-Remaining-Default": "7"}, NOW) == (7, None)


@pytest.mark.parametrize("value", ["", "soon", "nan", "-5"])
def test_rate_headers_ignore_unreadable_reset(value):
    headers = {"X-RateLimit-Remaining-Default": "7", "X-RateLimit-Reset-Default": value}

    assert parse_rate_headers(headers, NOW) == (7, None)


def test_rate_headers_ignore_unreadable_remaining():
    headers = {"X-RateLimit-Remaining-Default": "lots", "X-RateLimit-Reset-Default": "9"}

    assert parse_rate_headers(headers, NOW) == (None, None)


def test_rate_headers_read_an_implausible_reset_as_milliseconds():
    headers = {"X-RateLimit-Remaining-Default": "0", "X-RateLimit-Reset-Default": "60000"}

    assert parse_rate_headers(headers, NOW) == (0, NOW + timedelta(seconds=60))


@given(
    remaining=st.integers(min_value=0, max_value=10_000),
    reset=st.integers(min_value=0, max_value=3600),
)
def test_rate_headers_never_point_before_now(remaining, reset):
    got_remaining, reset_at = parse_rate_headers(
        {"X-RateLimit-Remaining-Default": str(remaining), "X-RateLimit-Reset-Default": str(reset)}, NOW
    )

    assert got_remaining == remaining
    assert reset_at is not None and NOW <= reset_at <= NOW + timedelta(hours=1)


def test_next_allowed_is_now_for_an_unknown_key():
    assert next_allowed(KeyPace(None, None, None), NOW) is None


def test_next_allowed_waits_for_a_pause():
    until = NOW + timedelta(seconds=61)

    assert next_allowed(KeyPace(paused_until=until, remaining=100, reset_at=None), NOW) == until


def test_next_allowed_ignores_a_pause_that_has_passed():
    pace = KeyPace(paused_until=NOW - timedelta(seconds=1), remaining=100, reset_at=None)

    assert next_allowed(pace, NOW) is None


def test_next_allowed_keeps_the_reserve_until_reset():
    reset_at = NOW + timedelta(seconds=20)

    assert next_allowed(KeyPace(None, RESERVE, reset_at), NOW) == reset_at
    assert next_allowed(KeyPace(None, 0, reset_at), NOW) == reset_at


def test_next_allowed_calls_when_budget_is_above_reserve():
    assert next_allowed(KeyPace(None, RESERVE + 1, NOW + timedelta(seconds=20)), NOW) is None


def test_next_allowed_calls_once_the_window_has_reset():
    assert next_allowed(KeyPace(None, 0, NOW), NOW) is None


def test_next_allowed_calls_when_reset_is_unknown():
    assert next_allowed(KeyPace(None, 0, None), NOW) is None


@given(seed=st.integers(min_value=0, max_value=2**32))
def test_pause_after_429_waits_out_the_block_with_small_jitter(seed):
    until = pause_after_429(NOW, random.Random(seed))

    assert NOW + timedelta(seconds=60) <= until <= NOW + timedelta(seconds=65)


@given(failures=st.integers(min_value=-5, max_value=10_000), seed=st.integers(min_value=0, max_value=2**32))
def test_backoff_is_never_zero_and_never_beyond_cap(failures, seed):
    delay = backoff(failures, random.Random(seed))

    assert 0.5 <= delay <= 300.0


@given(failures=st.integers(min_value=1, max_value=20), seed=st.integers(min_value=0, max_value=2**32))
def test_backoff_stays_within_the_exponential_ceiling(failures, seed):
    delay = backoff(failures, random.Random(seed), base=2.0, cap=1_000_000.0)

    assert delay <= max(0.5, 2.0 * 2 ** (failures - 1))


def test_backoff_grows_with_failures():
    rng = random.Random(7)
    first = [backoff(1, rng) for _ in range(200)]
    tenth = [backoff(10, rng) for _ in range(200)]

    assert max(first) <= 2.0
    assert sum(tenth) / len(tenth) > 10 * sum(first) / len(first)


def test_backoff_is_jittered():
    rng = random.Random(3)

    assert len({backoff(6, rng) for _ in range(20)}) > 1


def test_backoff_respects_a_custom_cap():
    rng = random.Random(11)

    assert all(backoff(50, rng, base=1.0, cap=5.0) <= 5.0 for _ in range(100))
