"""The operator's commands: accounts, verifications, status, simulate.

They go through the same service code as the HTTP API (`Intake`, `AccountIn`, `account_view`)
against `DATABASE_URL` directly, not over HTTP. Results go to stdout; errors are one line on
stderr: exit 1 for "not found", "conflict" or an unreachable database, 2 for bad input or a
DATABASE_URL that points at no database (the command line never creates one).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from service.app.runtime import Runtime, operating
from service.clock import system_clock
from service.core.models import ACCOUNT_ID, AccountIn, ResolveIn, parse
from service.core.views import account_view
from service.errors import DatabaseUnavailable, ServiceError, ValidationFailed
from service.settings import ConfigError, Settings

log = logging.getLogger("service.cli.parser")

# Where each API field comes from on the command line, so errors name the option to fix.
OPTION_OF = {
    "calcom_api_key": "--api-key",
    "webhook_secret": "--webhook-secret",
    "calcom_api_base": "--calcom-api-base",
    "callback_url": "--callback-url",
    "callback_secret": "--callback-secret",
    "match_tolerance_seconds": "--tolerance",
    "webhook_secret_previous_until": "--old-secret-until",
}


class CommandError(Exception):
    """A one-line message for stderr and the exit code that goes with it."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def run(settings: Settings, command: Callable[[Runtime], Awaitable[int]]) -> int:
    """Open the database, run the command, map our errors to one line on stderr and an exit code."""

    async def main() -> int:
        async with operating(settings) as runtime:
            return await command(runtime)

    try:
        return asyncio.run(main())
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except CommandError as exc:
        return _fail(str(exc), exc.code)
    except ValidationFailed as exc:
        return _fail(_validation_message(exc), 2)
    except DatabaseUnavailable as exc:
        return _fail(f"the database is unavailable ({exc.reason or 'no connection'}): check DATABASE_URL", 1)
    except ServiceError as exc:
        return _fail(exc.message, 1)


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _validation_message(exc: ValidationFailed) -> str:
    """The API's 422 message, naming the command-line option where an account field is at fault."""
    details = exc.details or []
    if not any(d["field"] in OPTION_OF or d["field"] == "body" for d in details):
        return exc.message.removeprefix("invalid request: ")
    return "; ".join(
        f"{OPTION_OF[d['field']]}: {d['message']}" if d["field"] in OPTION_OF else d["message"] if d["field"] == "body" else f"{d['field']}: {d['message']}"
        for d in details
    )


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


# -- accounts --------------------------------------------------------------------------------------


def read_secrets(args: argparse.Namespace, names: Sequence[str]) -> dict[str, str | None]:
    """Each secret from its option, `-` (the next line of stdin, in option order), `--…-env NAME`, or a prompt."""
    given = {name: getattr(args, name) for name in names}
    env_names = {name: getattr(args, f"{name}_env") for name in names}
    from_stdin = [name for name in names if given[name] == "-"]
    lines = sys.stdin.read().splitlines() if from_stdin else []
    if len(lines) < len(from_stdin):
        options = ", ".join(OPTION_OF[n] for n in from_stdin)
        raise CommandError(f"{options} read from stdin: expected {len(from_stdin)} line(s), got {len(lines)}", 2)
    values: dict[str, str | None] = {}
    for name in names:
        option = OPTION_OF[name]
        if given[name] == "-":
            values[name] = lines[from_stdin.index(name)].strip()
        elif given[name] is not None:
            values[name] = given[name]
        elif env_names[name]:
            if env_names[name] not in os.environ:
                raise CommandError(f"{option}-env: the environment variable {env_names[name]} is not set", 2)
            values[name] = os.environ[env_names[name]]
        else:
            values[name] = None
    return values


def _prompt_missing(values: dict[str, str | None], required: Sequence[str]) -> None:
    for name in required:
        if values.get(name):
            continue
        option = OPTION_OF[name]
        if not sys.stdin.isatty():
            raise CommandError(f"{option} is required (give a value, - to read it from stdin, or {option}-env NAME)", 2)
        values[name] = getpass.getpass(f"{option.removeprefix('--').replace('-', ' ')}: ")


def accounts_add(args: argparse.Namespace, settings: Settings) -> int:
    if not ACCOUNT_ID.match(args.account):
        return _fail("account: must match [a-z0-9][a-z0-9_-]{0,62}", 2)
    try:
        values = read_secrets(args, ("calcom_api_key", "webhook_secret", "callback_secret"))
        _prompt_missing(values, ("calcom_api_key", "webhook_secret", *(("callback_secret",) if args.callback_url else ())))
    except CommandError as exc:
        return _fail(str(exc), exc.code)
    body = {
        **values,
        "calcom_api_base": args.calcom_api_base,
        "callback_url": args.callback_url,
        "match_tolerance_seconds": args.tolerance,
        "enabled": not args.disabled,
    }

    async def command(runtime: Runtime) -> int:
        request: AccountIn = parse(AccountIn, json.dumps(body).encode())
        saved = await runtime.accounts.put(args.account, request, system_clock())
        print(f"account {args.account} {'created' if saved.created else 'replaced'}", file=sys.stderr)
        _print_json(account_view(saved.account))
        return 0

    return run(settings, command)


def accounts_list(args: argparse.Namespace, settings: Settings) -> int:
    async def command(runtime: Runtime) -> int:
        accounts = await runtime.accounts.list()
        if args.json:
            _print_json([account_view(a) for a in accounts])
            return 0
        if not accounts:
            print("no accounts yet: add one with `calcom-verifier accounts add <id> --api-key - --webhook-secret -`")
            return 0
        _table(
            ("ACCOUNT", "ENABLED", "CREDENTIALS", "TOLERANCE", "CALLBACK"),
            [(a.id, "yes" if a.enabled else "no", a.credentials, f"{a.match_tolerance_seconds} s", "yes" if a.callback_url else "no") for a in accounts],
        )
        return 0

    return run(settings, command)


# -- verifications ---------------------------------------------------------------------------------


def verifications_list(args: argparse.Namespace, settings: Settings) -> int:
    async def command(runtime: Runtime) -> int:
        page = await runtime.intake.list(
            limit=args.limit, cursor=args.cursor, account=args.account, status=args.status,
            appointment_id=args.appointment, review_reason=args.reason,
        )
        if args.json:
            _print_json(page)
            return 0
        rows = []
        for v in page["items"]:
            detail = _detail(v)
            rows.append((v["id"], v["account"], v["appointment_id"], v["status"], v["resolved_via"] or "-", detail or "-", v["created_at"]))
        if not rows:
            print("no verifications match")
            return 0
        _table(("ID", "ACCOUNT", "APPOINTMENT", "STATUS", "VIA", "DETAIL", "CREATED"), rows)
        if page["next_cursor"]:
            print(f"more: --cursor {page['next_cursor']}")
        return 0

    return run(settings, command)


def _detail(v: dict[str, Any]) -> str:
    """The DETAIL column: why it is in review (an outage reads as unknown, never as missing), or how it ended."""
    if v["review_reason"] == "calcom_unavailable":
        return "calcom_unavailable: outcome unknown"
    return v["review_reason"] or v["resolution"] or ("missing " + ",".join(v["missing_phases"]) if v["missing_phases"] else "")


def valid_account(account: str) -> str | None:
    """Why an account id given on the command line cannot be one, or None."""
    if ACCOUNT_ID.match(account):
        return None
    hint = " (account ids are lower-case)" if ACCOUNT_ID.match(account.lower()) else ""
    return f"account: must match [a-z0-9][a-z0-9_-]{{0,62}}{hint}"


def verifications_recheck(args: argparse.Namespace, settings: Settings) -> int:
    if args.account and (problem := valid_account(args.account)):
        return _fail(problem, 2)

    async def command(runtime: Runtime) -> int:
        if args.id:
            view = await runtime.rechecks.recheck(args.id, system_clock())
            print(f"verification {args.id} is due for a check now (the poller makes it within a tick)", file=sys.stderr)
            _print_json(view)
            return 0
        await runtime.accounts.get(args.account)
        ids = await runtime.rechecks.recheck_unknown(args.account, system_clock())
        if not ids:
            print(f"no verification of account {args.account} is in review as calcom_unavailable")
            return 0
        for verification_id in ids:
            print(verification_id)
        print(f"{len(ids)} verification(s) of account {args.account} are pending again and due now", file=sys.stderr)
        return 0

    return run(settings, command)


def verifications_show(args: argparse.Namespace, settings: Settings) -> int:
    async def command(runtime: Runtime) -> int:
        _print_json(await runtime.intake.get(args.id))
        return 0

    return run(settings, command)


def verifications_resolve(args: argparse.Namespace, settings: Settings) -> int:
    bookings: dict[str, str] = {}
    for pair in args.booking or ():
        key, sep, uid = pair.partition("=")
        if not sep or not key or not uid:
            return _fail(f"--booking: expected PHASE=UID, got {pair!r}", 2)
        bookings[key] = uid
    body = {"outcome": args.outcome, "note": args.note, "bookings": bookings or None}

    async def command(runtime: Runtime) -> int:
        request: ResolveIn = parse(ResolveIn, json.dumps(body).encode())
        view = await runtime.intake.resolve(args.id, request, system_clock())
        print(f"verification {args.id} resolved as {args.outcome}", file=sys.stderr)
        _print_json(view)
        return 0

    return run(settings, command)


# -- status ----------------------------------------------------------------------------------------


def status(args: argparse.Namespace, settings: Settings) -> int:
    async def command(runtime: Runtime) -> int:
        # The operator at the command line may see account ids (STATUS_SHOW_ACCOUNTS is for the HTTP pages).
        report = await runtime.status(show_accounts=True)
        if args.json:
            _print_json(report)
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
            [f"outcome unknown (Cal.com never answered): {queue['outcome_unknown']}, not failures; once Cal.com answers: "
             "calcom-verifier verifications recheck --account <id>"]
            if queue.get("outcome_unknown") else []
        ),
        f"time to verdict: p50 {_seconds(ttv['p50'])}, p95 {_seconds(ttv['p95'])}, p99 {_seconds(ttv['p99'])} (n={ttv['count']})",
        f"pending: oldest {_seconds(report['oldest_pending_age_seconds'])}, past deadline {report['pending_past_deadline']}",
        f"pollers: {sum(1 for p in pollers if p['alive'])} alive" + (
            f" ({len(pollers) - sum(1 for p in pollers if p['alive'])} silent: stopped without saying goodbye, or stuck)"
            if any(not p["alive"] for p in pollers) else ""
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


def simulate(args: argparse.Namespace) -> int:
    from service.testing.simulate import simulate as run_simulation

    root = logging.getLogger()
    quiet = None
    if args.verbose:
        from service import logs

        logs.configure("INFO", "json")
    elif not root.handlers:
        # The narration is the output; without --verbose the service's own log lines stay out of it.
        quiet = logging.NullHandler()
        root.addHandler(quiet)
    try:
        return asyncio.run(run_simulation())
    finally:
        if quiet is not None:
            root.removeHandler(quiet)
