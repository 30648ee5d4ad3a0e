"""/metrics: the /status figures in Prometheus text format.

Every scrape builds a fresh registry from the database figures, so any `web` process answers the
same numbers: events are counted in each process only until they are added to the shared counters
(every few seconds, and by the scraped process just before it answers). Most figures are gauges
(counts of rows in a state go down as well as up); ages are 0 when nothing waits; undefined ratios
and quantiles are left out rather than reported as 0. Accounts are named (an `account` label) only
when STATUS_SHOW_ACCOUNTS is set.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "calcom_verifier_"


def _gauge(name: str, documentation: str, value: float | None) -> Iterator[Metric]:
    """One unlabelled gauge; nothing at all when the figure is undefined."""
    if value is not None:
        yield GaugeMetricFamily(PREFIX + name, documentation, value=value)


def _labelled(name: str, documentation: str, labels: list[str], values: dict[tuple[str, ...], float]) -> Metric:
    family = GaugeMetricFamily(PREFIX + name, documentation, labels=labels)
    for key, value in values.items():
        family.add_metric(list(key), value)
    return family


def _by(label: str, name: str, documentation: str, counts: dict[str, int]) -> Metric:
    return _labelled(name, documentation, [label], {(key,): n for key, n in counts.items()})


def families(status: dict[str, Any]) -> Iterator[Metric]:
    """The metric families of one /status document."""
    verifications = status["verifications"]
    queue = status["review_queue"]
    yield from _gauge("ok", "1 when /status lists no problem, else 0", int(status["ok"]))
    yield from _gauge("problems", "Problems /status lists (read them there)", len(status["problems"]))
    yield _by("status", "verifications", "Verifications by status", verifications["by_status"])
    yield _by("reason", "review_queue", "Verifications in the review queue (manual_review) by reason", verifications["by_review_reason"])
    yield _by("via", "resolved_via", "Verifications in a final state by the path that reached it", status["resolved_via"])
    yield _by("resolution", "operator_resolutions", "Verifications an operator resolved, by outcome", verifications["by_resolution"])
    yield from _gauge("auto_recovery_ratio", "verified / (verified + manual_review + resolved)", status["auto_recovery_rate"])
    yield CounterMetricFamily(
        PREFIX + "false_negatives_caught",
        "Failures Cal.com reported although the bookings existed (verified + resolved synced)",
        value=status["false_negatives_caught"],
    )
    yield from _gauge(
        "false_negative_ratio", "False negatives only an operator recognised / false negatives caught", status["false_negative_rate"]
    )
    yield from _gauge("review_queue_entered_24h", "Verifications that entered manual_review in the last 24 h", queue["entered_last_24h"])
    yield from _gauge(
        "review_queue_oldest_age_seconds",
        "Wait of the oldest verification in the review queue (0 when empty)",
        queue["oldest_waiting_age_seconds"] or 0,
    )
    yield from _gauge(
        "oldest_pending_age_seconds", "Age of the oldest pending verification (0 when none)", status["oldest_pending_age_seconds"] or 0
    )
    yield from _gauge("pending_past_deadline", "Pending verifications past their deadline", status["pending_past_deadline"])
    yield from _verdict_times(status["time_to_verdict_seconds"])
    yield from _pollers(status["pollers"])
    yield from _callbacks(status["callbacks"])
    accounts = status["accounts"]
    yield from _gauge("accounts", "Accounts", accounts["total"])
    yield from _gauge("accounts_disabled", "Accounts with verification switched off", accounts["disabled"])
    yield from _gauge("accounts_credentials_broken", "Accounts whose Cal.com API key was refused (401/403)", accounts["broken_credentials"])
    yield from _gauge(
        "accounts_calcom_failing",
        "Accounts whose Cal.com checks have failed for longer than CALCOM_ALERT_SECONDS",
        accounts["calcom_failing"],
    )
    names = accounts.get("names")
    if names is not None:
        yield _by(
            "account",
            "account_credentials_broken",
            "1 for each account whose Cal.com API key was refused (401/403)",
            dict.fromkeys(names["broken_credentials"], 1),
        )
        yield _by(
            "account",
            "account_calcom_failing",
            "1 for each account whose Cal.com checks have failed for longer than CALCOM_ALERT_SECONDS",
            dict.fromkeys(names["calcom_failing"], 1),
        )
    for name, value in status["matching"].items():
        yield CounterMetricFamily(PREFIX + name, f"Times {name.replace('_', ' ')} happened (nothing was guessed)", value=value)
    yield from _gauge("webhooks_received_24h", "Signed Cal.com webhooks stored in the last 24 h", status["webhooks"]["received_last_24h"])
    yield from _traffic(status["traffic"])


_TRAFFIC = {
    "calcom_requests": ("Cal.com API requests (each page) by outcome", ["outcome"]),
    "webhook_rejections": ("Cal.com webhooks refused, by reason", ["reason"]),
    "api_client_errors": ("/api answers 4xx, by method, route and status", ["method", "route", "status"]),
    "guard_requests": ("Booking-guard requests, by outcome", ["outcome"]),
}


def _traffic(traffic: dict[str, dict[str, int]]) -> Iterator[Metric]:
    for name, (documentation, labels) in _TRAFFIC.items():
        family = CounterMetricFamily(PREFIX + name, documentation, labels=labels)
        for label, value in traffic.get(name, {}).items():
            values = label.split(" ", len(labels) - 1)
            if len(values) == len(labels):
                family.add_metric(values, value)
        yield family


def _verdict_times(times: dict[str, Any]) -> Iterator[Metric]:
    quantiles: dict[tuple[str, ...], float] = {
        (q,): times[key] for key, q in (("p50", "0.5"), ("p95", "0.95"), ("p99", "0.99")) if times[key] is not None
    }
    yield _labelled(
        "time_to_verdict_seconds",
        "Recording to automatic verdict, percentiles over the most recent automatic verdicts",
        ["quantile"],
        quantiles,
    )
    yield from _gauge("time_to_verdict_sample_size", "Automatic verdicts behind the time_to_verdict percentiles", times["count"])


def _pollers(pollers: list[dict[str, Any]]) -> Iterator[Metric]:
    labels = ["poller", "hostname", "pid"]
    keys = [(p["id"], p["hostname"], str(p["pid"])) for p in pollers]
    yield _labelled(
        "poller_alive",
        "1 when the poller is alive (recent heartbeat, not stopped)",
        labels,
        {key: int(p["alive"]) for key, p in zip(keys, pollers)},
    )
    yield _labelled(
        "poller_heartbeat_age_seconds",
        "Seconds since the poller's last heartbeat",
        labels,
        {key: p["heartbeat_age_seconds"] for key, p in zip(keys, pollers)},
    )
    yield from _gauge("pollers_alive", "Pollers alive", sum(1 for p in pollers if p["alive"]))


def _callbacks(callbacks: dict[str, Any]) -> Iterator[Metric]:
    by_state = {"pending": callbacks["backlog"], "delivered": callbacks["delivered"], "failed": callbacks["failed"]}
    yield _by("state", "callbacks", "Verdict callback events by delivery state", by_state)
    yield from _gauge("callbacks_failed_recent", "Callback events given up within the retry period + 24 h", callbacks["failed_recent"])
    yield from _gauge(
        "callback_backlog_oldest_age_seconds",
        "Age of the oldest undelivered callback event (0 when none)",
        callbacks["oldest_pending_age_seconds"] or 0,
    )


class _Snapshot:
    """A collector over one /status document (prometheus_client's custom-collector protocol)."""

    def __init__(self, status: dict[str, Any]) -> None:
        self.status = status

    def collect(self) -> Iterator[Metric]:
        return families(self.status)


def exposition(status: dict[str, Any]) -> bytes:
    """The Prometheus text for one /status document, from a registry of its own."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(status))
    return generate_latest(registry)
