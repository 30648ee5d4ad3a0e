"""Operator commands on verifications: list, show, resolve, recheck."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from service.app.runtime import Runtime
from service.cli.commands import fail, print_json, run, table, valid_account
from service.clock import system_clock
from service.core.models import ResolveIn, parse
from service.settings import Settings


def verifications_list(args: argparse.Namespace, settings: Settings) -> int:
    async def command(runtime: Runtime) -> int:
        page = await runtime.intake.list(
            limit=args.limit,
            cursor=args.cursor,
            account=args.account,
            status=args.status,
            appointment_id=args.appointment,
            review_reason=args.reason,
        )
        if args.json:
            print_json(page)
            return 0
        rows = []
        for v in page["items"]:
            detail = _detail(v)
            rows.append((v["id"], v["account"], v["appointment_id"], v["status"], v["resolved_via"] or "-", detail or "-", v["created_at"]))
        if not rows:
            print("no verifications match")
            return 0
        table(("ID", "ACCOUNT", "APPOINTMENT", "STATUS", "VIA", "DETAIL", "CREATED"), rows)
        if page["next_cursor"]:
            print(f"more: --cursor {page['next_cursor']}")
        return 0

    return run(settings, command)


def _detail(v: dict[str, Any]) -> str:
    """The DETAIL column: why it is in review (an outage reads as unknown, never as missing), or how it ended."""
    if v["review_reason"] == "calcom_unavailable":
        return "calcom_unavailable: outcome unknown"
    return v["review_reason"] or v["resolution"] or ("missing " + ",".join(v["missing_phases"]) if v["missing_phases"] else "")


def verifications_recheck(args: argparse.Namespace, settings: Settings) -> int:
    if args.account and (problem := valid_account(args.account)):
        return fail(problem, 2)

    async def command(runtime: Runtime) -> int:
        if args.id:
            view = await runtime.rechecks.recheck(args.id, system_clock())
            print(f"verification {args.id} is due for a check now (the poller makes it within a tick)", file=sys.stderr)
            print_json(view)
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
        print_json(await runtime.intake.get(args.id))
        return 0

    return run(settings, command)


def verifications_resolve(args: argparse.Namespace, settings: Settings) -> int:
    bookings: dict[str, str] = {}
    for pair in args.booking or ():
        key, sep, uid = pair.partition("=")
        if not sep or not key or not uid:
            return fail(f"--booking: expected PHASE=UID, got {pair!r}", 2)
        bookings[key] = uid
    body = {"outcome": args.outcome, "note": args.note, "bookings": bookings or None}

    async def command(runtime: Runtime) -> int:
        request: ResolveIn = parse(ResolveIn, json.dumps(body).encode())
        view = await runtime.intake.resolve(args.id, request, system_clock())
        print(f"verification {args.id} resolved as {args.outcome}", file=sys.stderr)
        print_json(view)
        return 0

    return run(settings, command)


# -- status ----------------------------------------------------------------------------------------
