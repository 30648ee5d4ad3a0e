"""What /status and /metrics report, from raw figures: pure (`now` passed in).

`service.app.status.collect` reads the figures in one snapshot; `report` turns them into the
document. Only counts leave here (and account ids when STATUS_SHOW_ACCOUNTS asks for them): no
secrets, no e-mail addresses, no payloads.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from service.core.tallies import traffic
from service.core.times import iso

STATUSES = ("pending", "verified", "manual_review", "resolved")
REVIEW_REASONS = (
    "no_booking_found",
    "partial_match",
    "ambiguous_match",
    "unconfirmed_match",
    "calcom_unavailable",
    "verification_disabled",
)
# Events counted by every process (store/counters.py); reported as totals, 0 until the first one.
COUNTERS = ("matcher_gave_up", "group_too_large", "settle_failed")
RESOLVED_VIA = ("webhook", "poll", "guard", "operator", "system")
RESOLUTIONS = ("synced", "failed")
CALLBACK_STATES = ("pending", "delivered", "failed")
QUANTILES = (50, 95, 99)
VERDICT_SAMPLE = 10_000
DAY = timedelta(hours=24)
MIN_ALIVE_SECONDS = 30.0
CALLBACK_BACKLOG_WARN_SECONDS = 3600.0

DEFINITIONS = {
    "auto_recovery_rate": "verified / (verified + manual_review + resolved): the share of final verdicts "
    "the service reached without an operator; null when there are none (target: > 0.9)",
    "false_negatives_caught": "verified + resolved with resolution synced: failures Cal.com reported although the bookings existed",
    "false_negative_rate": "resolved-synced / false_negatives_caught: false negatives only an operator "
    "recognised, the platform's remaining 'slot was just taken' cases; null when there are none (target: 0)",
    "by_review_reason": "verifications in the review queue now, by reason",
    "resolved_via": "verifications in a final state by the path that reached it (webhook or poll "
    "evidence, operator, system for verdicts without a match and the kill switch)",
    "review_queue.entered_last_24h": "verifications that entered manual_review in the last 24 h, "
    "whatever happened to them next (target: < 5 a day)",
    "time_to_verdict_seconds": "created_at to the automatic verdict (verified, or manual_review reached "
    "by the system, also when an operator resolved it later; kill-switch records excluded), over the "
    f"most recent {VERDICT_SAMPLE} such verdicts; nearest-rank percentiles",
    "pollers.alive": "not stopped and a heartbeat younger than max(3 x POLL_INTERVAL_SECONDS, 30 s)",
    "pending_past_deadline": "pending verifications whose last check was due longer ago than the poller liveness bound",
    "callbacks.failed_recent": "callback events that were given up (retries exhausted or 410) among "
    "those created within the retry period + 24 h",
    "matching": "times (since the database was created) the matcher gave up on a group within its budget, "
    "a group of competing verifications was too large to decide, and deciding failed with an error; "
    "in each case nothing was guessed (the verifications wait for their deadline and then an operator)",
    "ages": "seconds from the event to generated_at; null when there is nothing waiting",
    "accounts.calcom_failing": "accounts whose Cal.com checks have failed (no complete answer) for longer than "
    "CALCOM_ALERT_SECONDS, with a failed attempt in the last hour: their outcomes are unknown, not negative",
    "accounts.names": "the account ids behind the counts; only with STATUS_SHOW_ACCOUNTS=true",
    "traffic": "events since the database was created, counted by every process: Cal.com requests by outcome, "
    "webhooks refused by reason, /api answers 4xx by route, booking-guard requests by outcome",
    "review_queue.outcome_unknown": "verifications in review as calcom_unavailable: Cal.com never answered, so nobody "
    "knows whether the bookings exist; recheck them once Cal.com answers again",
}


@dataclass(frozen=True)
class Figures:
    """The raw rows `collect` read, in one snapshot."""

    tally: list[dict[str, Any]]
    pending: dict[str, Any]
    review_queue: dict[str, Any]
    review_entered_24h: int
    verdicts: list[dict[str, Any]]
    outbox: list[dict[str, Any]]
    accounts: dict[str, Any]
    broken_accounts: list[str]
    pollers: list[dict[str, Any]]
    webhooks_24h: int
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    calcom_failing: list[dict[str, Any]] = field(default_factory=list)


# -- pure helpers --------------------------------------------------------------------------------


def percentile(ordered: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of an ascending sequence: a value that was actually observed."""
    if not ordered:
        return None
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def summarize(durations: Iterable[float]) -> dict[str, Any]:
    ordered = sorted(durations)
    summary: dict[str, Any] = {"count": len(ordered)}
    summary.update({f"p{q}": percentile(ordered, q) for q in QUANTILES})
    return summary


def ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def age_seconds(now: datetime, then: datetime | None) -> float | None:
    """How long ago; never negative (another process' clock may run slightly ahead)."""
    if then is None:
        return None
    return round(max(0.0, (now - then).total_seconds()), 3)


def alive_bound_seconds(poll_interval_seconds: float) -> float:
    return max(3 * poll_interval_seconds, MIN_ALIVE_SECONDS)


def counts(tally: Iterable[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Counts by status, review reason (queue only), resolved_via and resolution, all keys present."""
    by: dict[str, dict[str, int]] = {
        "status": dict.fromkeys(STATUSES, 0),
        "review_reason": dict.fromkeys(REVIEW_REASONS, 0),
        "resolved_via": dict.fromkeys(RESOLVED_VIA, 0),
        "resolution": dict.fromkeys(RESOLUTIONS, 0),
    }
    for row in tally:
        n = int(row["n"])
        by["status"][row["status"]] = by["status"].get(row["status"], 0) + n
        if row["status"] == "manual_review" and row["review_reason"]:
            by["review_reason"][row["review_reason"]] = by["review_reason"].get(row["review_reason"], 0) + n
        if row["resolved_via"]:
            by["resolved_via"][row["resolved_via"]] = by["resolved_via"].get(row["resolved_via"], 0) + n
        if row["status"] == "resolved" and row["resolution"]:
            by["resolution"][row["resolution"]] = by["resolution"].get(row["resolution"], 0) + n
    return by


def poller_view(row: dict[str, Any], now: datetime, alive_bound: float) -> dict[str, Any]:
    heartbeat_age = age_seconds(now, row["heartbeat_at"])
    stopped = row["stopped_at"] is not None
    return {
        "id": row["id"],
        "hostname": row["hostname"],
        "pid": row["pid"],
        "started_at": iso(row["started_at"]),
        "heartbeat_age_seconds": heartbeat_age,
        "ticks": row["ticks"],
        "stopped": stopped,
        "alive": not stopped and heartbeat_age is not None and heartbeat_age < alive_bound,
    }


def callbacks_view(rows: Iterable[dict[str, Any]], now: datetime) -> dict[str, Any]:
    by_state = {row["state"]: row for row in rows}
    pending = by_state.get("pending")
    failed = by_state.get("failed")
    view: dict[str, Any] = {state: int(by_state[state]["n"]) if state in by_state else 0 for state in CALLBACK_STATES}
    return {
        "backlog": view["pending"],
        "oldest_pending_age_seconds": age_seconds(now, pending["oldest_at"]) if pending else None,
        "delivered": view["delivered"],
        "failed": view["failed"],
        "failed_recent": int(failed["recent"]) if failed else 0,
    }


def _accounts(count: int, names: list[str] | None) -> str:
    """`3 account(s)`, or the ids when they may be shown."""
    return f"account(s) {', '.join(names)}" if names else f"{count} account(s)"


def problems(
    report: dict[str, Any], *, alive_bound: float, failed_window_hours: float, figures: Figures | None = None, now: datetime | None = None
) -> list[str]:
    """What an operator should look at now, in words."""
    found: list[str] = []
    pending = report["verifications"]["by_status"]["pending"]
    callbacks = report["callbacks"]
    if (pending or callbacks["backlog"]) and not any(p["alive"] for p in report["pollers"]):
        found.append(
            f"no poller is alive (no heartbeat in the last {alive_bound:g} s) while "
            f"{pending} verification(s) and {callbacks['backlog']} callback(s) wait: start the poller process"
        )
    if report["pending_past_deadline"]:
        found.append(
            f"{report['pending_past_deadline']} pending verification(s) are past their deadline: "
            "the poller is not keeping up or not running"
        )
    accounts = report["accounts"]
    names = accounts.get("names", {})
    if accounts["broken_credentials"]:
        found.append(
            f"Cal.com rejects the API key (401/403) of {_accounts(accounts['broken_credentials'], names.get('broken_credentials'))}: "
            'the poller cannot check them; replace the key with PATCH /api/accounts/{account} {"calcom_api_key": …}'
        )
    if accounts["calcom_failing"] and figures is not None and now is not None:
        oldest = min(row["calcom_failing_since_at"] for row in figures.calcom_failing)
        latest = max(figures.calcom_failing, key=lambda row: row["calcom_failed_at"])
        found.append(
            f"Cal.com checks of {_accounts(accounts['calcom_failing'], names.get('calcom_failing'))} have failed for "
            f"{age_seconds(now, oldest) or 0:.0f} s (last: {latest['calcom_failure'] or 'no complete answer'}): outcomes "
            "are unknown until Cal.com answers; verifications reaching their deadline meanwhile go to review as "
            "calcom_unavailable (recheck them afterwards)"
        )
    if callbacks["failed_recent"]:
        found.append(
            f"{callbacks['failed_recent']} callback(s) given up (retries exhausted or 410) in the last "
            f"{failed_window_hours:g} h: the platform never received those verdicts"
        )
    oldest = callbacks["oldest_pending_age_seconds"]
    if oldest is not None and oldest > CALLBACK_BACKLOG_WARN_SECONDS:
        found.append(
            f"{callbacks['backlog']} callback(s) waiting, the oldest for {oldest:.0f} s: is the platform's callback URL reachable?"
        )
    return found


def report(
    figures: Figures, now: datetime, *, poll_interval_seconds: float, callback_retry_hours: float, show_accounts: bool = False
) -> dict[str, Any]:
    """The /status document from the raw figures (account ids only with `show_accounts`)."""
    alive_bound = alive_bound_seconds(poll_interval_seconds)
    by = counts(figures.tally)
    status = by["status"]
    caught = status["verified"] + by["resolution"]["synced"]
    durations = [max(0.0, (v["verdict_at"] - v["created_at"]).total_seconds()) for v in figures.verdicts]
    verdict_times = summarize(round(d, 3) for d in durations)
    verdict_times["window"] = {
        "last": VERDICT_SAMPLE,
        "since": iso(min(v["verdict_at"] for v in figures.verdicts)) if figures.verdicts else None,
    }
    auto_recovery = ratio(status["verified"], status["verified"] + status["manual_review"] + status["resolved"])
    false_negative_rate = ratio(by["resolution"]["synced"], caught)
    entered = figures.review_entered_24h
    document: dict[str, Any] = {
        "ok": True,
        "problems": [],
        "generated_at": iso(now),
        "verifications": {
            "total": sum(status.values()),
            "by_status": status,
            "by_review_reason": by["review_reason"],
            "by_resolution": by["resolution"],
        },
        "resolved_via": by["resolved_via"],
        "auto_recovery_rate": auto_recovery,
        "false_negatives_caught": caught,
        "false_negative_rate": false_negative_rate,
        "review_queue": {
            "size": int(figures.review_queue["n"]),
            "outcome_unknown": by["review_reason"]["calcom_unavailable"],
            "entered_last_24h": entered,
            "oldest_waiting_age_seconds": age_seconds(now, figures.review_queue["oldest_at"]),
        },
        "oldest_pending_age_seconds": age_seconds(now, figures.pending["oldest_at"]),
        "pending_past_deadline": int(figures.pending["overdue"]),
        "time_to_verdict_seconds": verdict_times,
        "pollers": [poller_view(row, now, alive_bound) for row in figures.pollers],
        "callbacks": callbacks_view(figures.outbox, now),
        "accounts": {
            "total": int(figures.accounts["total"]),
            "disabled": int(figures.accounts["disabled"]),
            "broken_credentials": len(figures.broken_accounts),
            "calcom_failing": len(figures.calcom_failing),
        },
        "webhooks": {"received_last_24h": figures.webhooks_24h},
        "matching": {name: sum(figures.counters.get(name, {}).values()) for name in COUNTERS},
        "traffic": traffic(figures.counters),
        "targets": {  # the first version's success metrics
            "auto_recovery_rate": _target("> 0.9", auto_recovery, lambda v: v > 0.9),
            "false_negative_rate": _target("0", false_negative_rate, lambda v: v == 0),
            "review_queue_entered_last_24h": _target("< 5", entered, lambda v: v < 5),
        },
        "definitions": DEFINITIONS,
    }
    if show_accounts:
        document["accounts"]["names"] = {
            "broken_credentials": list(figures.broken_accounts),
            "calcom_failing": [row["id"] for row in figures.calcom_failing],
        }
    found = problems(document, alive_bound=alive_bound, failed_window_hours=callback_retry_hours + 24, figures=figures, now=now)
    document["ok"] = not found
    document["problems"] = found
    return document


def _target(target: str, value: float | None, met: Callable[[float], bool]) -> dict[str, Any]:
    return {"target": target, "value": value, "met": None if value is None else met(value)}
