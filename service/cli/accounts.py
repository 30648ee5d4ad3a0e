"""Operator commands on accounts: add, list, update (some fields, like PATCH), enable, disable, delete."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from service.app.runtime import Runtime
from service.cli.commands import CommandError, fail, print_json, prompt_missing, read_secrets, run, table, valid_account
from service.clock import system_clock
from service.core.models import ACCOUNT_ID, AccountIn, AccountPatch, parse
from service.core.views import account_view
from service.settings import Settings


def accounts_update(args: argparse.Namespace, settings: Settings) -> int:
    if problem := valid_account(args.account):
        return fail(problem, 2)
    try:
        values = read_secrets(args, ("calcom_api_key", "webhook_secret", "callback_secret"))
    except CommandError as exc:
        return fail(str(exc), exc.code)
    body: dict[str, Any] = {name: value for name, value in values.items() if value is not None}
    if args.calcom_api_base is not None:
        body["calcom_api_base"] = args.calcom_api_base or None
    if args.callback_url is not None:
        body["callback_url"] = args.callback_url or None
    if args.tolerance is not None:
        body["match_tolerance_seconds"] = args.tolerance
    if args.time_zone is not None:
        body["time_zone"] = args.time_zone
    if args.old_secret_until is not None:
        if "webhook_secret" not in body:
            return fail("--old-secret-until goes with a new --webhook-secret (the old one stays accepted until then)", 2)
        body["webhook_secret_previous_until"] = args.old_secret_until
    if not body:
        return fail("nothing to change: give at least one option (see --help)", 2)
    return _patch(settings, args.account, body, "updated")


def accounts_switch(args: argparse.Namespace, settings: Settings) -> int:
    if problem := valid_account(args.account):
        return fail(problem, 2)
    return _patch(settings, args.account, {"enabled": args.enabled}, "enabled" if args.enabled else "disabled")


def _patch(settings: Settings, account: str, body: dict[str, Any], done: str) -> int:
    async def command(runtime: Runtime) -> int:
        request = parse(AccountPatch, json.dumps(body).encode())
        saved = await runtime.accounts.patch(account, request, system_clock(), actor="cli")
        print(f"account {account} {done}; credentials: {saved.account.credentials}", file=sys.stderr)
        print_json(account_view(saved.account))
        return 0

    return run(settings, command)


def accounts_delete(args: argparse.Namespace, settings: Settings) -> int:
    if problem := valid_account(args.account):
        return fail(problem, 2)
    if not args.yes:
        if not sys.stdin.isatty():
            return fail("deleting an account needs --yes (or a terminal to confirm on)", 2)
        if input(f"delete account {args.account} with its stored webhooks? type its id to confirm: ").strip() != args.account:
            return fail("not confirmed; nothing deleted", 1)

    async def command(runtime: Runtime) -> int:
        await runtime.accounts.delete(args.account, actor="cli")
        print(f"account {args.account} deleted")
        return 0

    return run(settings, command)


def accounts_add(args: argparse.Namespace, settings: Settings) -> int:
    if not ACCOUNT_ID.match(args.account):
        return fail("account: must match [a-z0-9][a-z0-9_-]{0,62}", 2)
    try:
        values = read_secrets(args, ("calcom_api_key", "webhook_secret", "callback_secret"))
        prompt_missing(values, ("calcom_api_key", "webhook_secret", *(("callback_secret",) if args.callback_url else ())))
    except CommandError as exc:
        return fail(str(exc), exc.code)
    body = {
        **values,
        "calcom_api_base": args.calcom_api_base,
        "callback_url": args.callback_url,
        "match_tolerance_seconds": args.tolerance,
        "enabled": not args.disabled,
        **({"time_zone": args.time_zone} if args.time_zone is not None else {}),
    }

    async def command(runtime: Runtime) -> int:
        request: AccountIn = parse(AccountIn, json.dumps(body).encode())
        saved = await runtime.accounts.put(args.account, request, system_clock(), actor="cli")
        print(f"account {args.account} {'created' if saved.created else 'replaced'}", file=sys.stderr)
        print_json(account_view(saved.account))
        return 0

    return run(settings, command)


def accounts_list(args: argparse.Namespace, settings: Settings) -> int:
    async def command(runtime: Runtime) -> int:
        accounts = await runtime.accounts.list()
        if args.json:
            print_json([account_view(a) for a in accounts])
            return 0
        if not accounts:
            print("no accounts yet: add one with `calcom-verifier accounts add <id> --api-key - --webhook-secret -`")
            return 0
        table(
            ("ACCOUNT", "ENABLED", "CREDENTIALS", "TOLERANCE", "CALLBACK"),
            [
                (a.id, "yes" if a.enabled else "no", a.credentials, f"{a.match_tolerance_seconds} s", "yes" if a.callback_url else "no")
                for a in accounts
            ],
        )
        return 0

    return run(settings, command)


# -- verifications ---------------------------------------------------------------------------------
