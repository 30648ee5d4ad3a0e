"""Events counted in a process until they are added to the counters every process shares. Pure.

Each process keeps a `Tally` (cheap: a dict update on the request path) and flushes it to the
database's `counters` table every few seconds and when it stops, so /metrics on any `web` process
reports the same totals. What is counted, and under which label, is listed here.
"""

from __future__ import annotations

from collections import Counter

# Cal.com API requests (every HTTP request, each page), by outcome.
CALCOM_REQUESTS = "calcom_requests"
CALCOM_OUTCOMES = ("ok", "4xx", "429", "5xx", "timeout", "connection_error")
# Cal.com webhooks refused, by reason (each is also logged).
WEBHOOK_REJECTIONS = "webhook_rejections"
WEBHOOK_REASONS = ("unknown_account", "too_large", "bad_signature", "bad_payload", "database_unavailable")
# /api answers 4xx, labelled "<METHOD> <route> <status>" (the route with its {parameters}, never ids).
API_CLIENT_ERRORS = "api_client_errors"
# Booking-guard requests, by outcome; the guard adds its own outcome labels.
GUARD_REQUESTS = "guard_requests"

TRAFFIC = {
    CALCOM_REQUESTS: CALCOM_OUTCOMES,
    WEBHOOK_REJECTIONS: WEBHOOK_REASONS,
    API_CLIENT_ERRORS: (),
    GUARD_REQUESTS: (),
}


def calcom_outcome(status: int) -> str:
    """The outcome label of a Cal.com HTTP answer."""
    if status == 429:
        return "429"
    if status >= 500:
        return "5xx"
    if status >= 400:
        return "4xx"
    return "ok"


class Tally:
    """Counts of (name, label) not yet written to the shared counters."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()

    def add(self, name: str, label: str = "", by: int = 1) -> None:
        self._counts[(name, label)] += by

    def take(self) -> dict[tuple[str, str], int]:
        """Everything counted so far; the tally starts from zero again."""
        counts, self._counts = self._counts, Counter()
        return dict(counts)

    def give_back(self, counts: dict[tuple[str, str], int]) -> None:
        """Counts that could not be written: kept for the next flush."""
        self._counts.update(counts)

    def __bool__(self) -> bool:
        return bool(self._counts)


def traffic(counters: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """The traffic counters of /status: every known label present (0 until the first event)."""
    return {name: {**dict.fromkeys(labels, 0), **dict(sorted(counters.get(name, {}).items()))} for name, labels in TRAFFIC.items()}
