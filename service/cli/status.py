"""`status`: the /status figures at a terminal, as a summary or as JSON."""

from __future__ import annotations

import argparse
from typing import Any

from service.app.runtime import Runtime
from service.cli.commands import print_json, run
from service.settings import Settings


def status(args: argparse.Namespace, settings: Settings) -> int:
    async def command(runtime: Runtime) -> int:
        # The operator at the command line may see account ids (STATUS_SHOW_ACCOUNTS is for the HTTP pages).
        report = await runtime.status(show_accounts=True)
        if args.json:
            print_json(report)
        else:
            print("\n".join(status_summary(report)))
        return 0

    return run(settings, command)


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g} s" if value < 60 else f"{value / 60:.1f} min" if value < 3600 else f"{value / 3600:.1f} h"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def status_summary(report: dict[str, Any]) -> list[str]:
    """The /status document in a few lines for a terminal."""
    v = report["verifications"]
    queue = report["review_queue"]
    ttv = report["time_to_verdict_seconds"]
    callbacks = report["callbacks"]
    pollers = report["pollers"]
    reasons = ", ".join(f"{k} {n}" for k, n in v["by_review_reason"].items() if n) or "empty"
    health = "ok" if report["ok"] else f"{len(report['problems'])} problem(s)"
    lines = [
        f"status: {health} (at {report['generated_at']})",
        f"verifications: {v['total']} — " + ", ".join(f"{k} {n}" for k, n in v["by_status"].items()),
        "resolved via: " + ", ".join(f"{k} {n}" for k, n in report["resolved_via"].items()),
        f"auto-recovery rate: {_percent(report['auto_recovery_rate'])} (target > 90 %); "
        f"false negatives caught: {report['false_negatives_caught']}, false-negative rate {_percent(report['false_negative_rate'])} (target 0)",
        f"review queue: {queue['size']} ({reasons}); oldest waiting {_seconds(queue['oldest_waiting_age_seconds'])}; "
        f"entered in the last 24 h: {queue['entered_last_24h']} (target < 5)",
        *(
            [
                f"outcome unknown (Cal.com never answered): {queue['outcome_unknown']}, not failures; once Cal.com answers: "
                "calcom-verifier verifications recheck --account <id>"
            ]
            if queue.get("outcome_unknown")
            else []
        ),
        f"time to verdict: p50 {_seconds(ttv['p50'])}, p95 {_seconds(ttv['p95'])}, p99 {_seconds(ttv['p99'])} (n={ttv['count']})",
        f"pending: oldest {_seconds(report['oldest_pending_age_seconds'])}, past deadline {report['pending_past_deadline']}",
        f"pollers: {sum(1 for p in pollers if p['alive'])} alive"
        + (
            f" ({len(pollers) - sum(1 for p in pollers if p['alive'])} silent: stopped without saying goodbye, or stuck)"
            if any(not p["alive"] for p in pollers)
            else ""
        ),
        f"callbacks: backlog {callbacks['backlog']} (oldest {_seconds(callbacks['oldest_pending_age_seconds'])}), "
        f"delivered {callbacks['delivered']}, failed {callbacks['failed']}",
        _accounts_line(report["accounts"]),
    ]
    lines += [f"problem: {problem}" for problem in report["problems"]]
    return lines


def _accounts_line(accounts: dict[str, Any]) -> str:
    names = accounts.get("names", {})

    def which(key: str) -> str:
        return ", ".join(names[key]) if names.get(key) else str(accounts[key]) if accounts[key] else "none"

    return (
        f"accounts: {accounts['total']} ({accounts['disabled']} disabled); broken credentials: {which('broken_credentials')}; "
        f"Cal.com failing: {which('calcom_failing')}"
    )


# -- simulate --------------------------------------------------------------------------------------
