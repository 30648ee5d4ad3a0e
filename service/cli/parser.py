"""`python -m service …` / `calcom-verifier …`: the processes and the operator's commands."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from typing import Any

from service import logs
from service.app.runtime import check_database, release
from service.cli import accounts as cli_accounts
from service.cli import commands as cli_commands
from service.cli import operators as cli_operators
from service.cli import status as cli_status
from service.cli import verifications as cli_verifications
from service.core.models import REVIEW_REASONS, STATUSES
from service.settings import ConfigError, Settings, load_settings


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        raise SystemExit(2) from None


def one_line(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A process' start: a configuration it cannot run with ends in one line on stderr and exit code 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except ConfigError as exc:
            print(str(exc), file=sys.stderr)
            return 2

    return run


@one_line
def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings()
    logs.configure(settings.log_level, settings.log_format)
    applied = asyncio.run(release(settings))
    print(f"migrations applied: {', '.join(applied) if applied else 'none (already current)'}")
    return 0


@one_line
def cmd_web(args: argparse.Namespace) -> int:
    import signal

    import uvicorn

    from service.web.app import create_app

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: object) -> None:
            # Stop gracefully and exit 0; uvicorn would re-raise SIGTERM after shutdown, which
            # process managers report as a crash.
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True
            self.should_exit = True

    from service.cli.startup import listen_socket

    settings = _settings()
    port = args.port or settings.port
    # Checked before anything starts, so each problem is one line (not a traceback from the lifespan).
    sock = listen_socket(settings.host, port)
    try:
        asyncio.run(check_database(settings))
    except BaseException:
        sock.close()
        raise
    logs.configure(settings.log_level, settings.log_format)
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=port,
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=35,
    )
    Server(config).run(sockets=[sock])
    return 0


@one_line
def cmd_poll(args: argparse.Namespace) -> int:
    from service.workers.poller_process import main as poll_main

    settings = _settings()
    logs.configure(settings.log_level, settings.log_format)
    return poll_main(settings)


def cmd_run(args: argparse.Namespace) -> int:
    from service.cli.procfile import run

    return run()


@one_line
def cmd_secrets_rotate(args: argparse.Namespace) -> int:
    from service.app.runtime import rotate_secrets
    from service.errors import ServiceError

    settings = _settings()
    try:
        rewritten = asyncio.run(rotate_secrets(settings))
    except ServiceError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    print(f"secrets of {rewritten} account(s) re-encrypted under the first of SECRET_KEYS; older keys may now be removed")
    return 0


def operator(command: Callable[[argparse.Namespace, Settings], int]) -> Callable[[argparse.Namespace], int]:
    """An operator command: it reads DATABASE_URL (bad configuration exits 2), not API_TOKEN."""

    def run(args: argparse.Namespace) -> int:
        return command(args, _settings())

    return run


def _limit(value: str) -> int:
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= 200:
        raise argparse.ArgumentTypeError("must be an integer from 1 to 200")
    return int(value)


def _secret(group: Any, option: str, dest: str, what: str) -> None:
    exclusive = group.add_mutually_exclusive_group()
    exclusive.add_argument(option, dest=dest, metavar="VALUE|-", help=f"{what}; - reads it from stdin (one line per -, in option order)")
    exclusive.add_argument(f"{option}-env", dest=f"{dest}_env", metavar="NAME", help=f"read the {what} from this environment variable")


def _add_accounts(commands: Any) -> None:
    accounts = commands.add_parser("accounts", help="Cal.com accounts: add, update, list, enable, disable, delete")
    sub = accounts.add_subparsers(dest="accounts_command", required=True)
    add = sub.add_parser(
        "add",
        help="create or replace an account, like PUT /api/accounts/{id}",
        description="Create or replace an account (a replace sets every field, like PUT). Secrets can come "
        "from an option, from stdin with -, from --…-env NAME, or from a prompt, so they need not sit in "
        "shell history. Secrets are never printed.",
    )
    add.add_argument("account", help="the account id, [a-z0-9][a-z0-9_-]{0,62}")
    secrets = add.add_argument_group("secrets")
    _secret(secrets, "--api-key", "calcom_api_key", "Cal.com API key (cal_live_…)")
    _secret(secrets, "--webhook-secret", "webhook_secret", "webhook secret of the Cal.com subscription")
    _secret(secrets, "--callback-secret", "callback_secret", "callback secret (whsec_ + base64, needed with --callback-url)")
    add.add_argument("--calcom-api-base", help="Cal.com API host for this account (default: CALCOM_API_BASE)")
    add.add_argument("--callback-url", help="where verdicts are POSTed (signed, Standard Webhooks)")
    add.add_argument("--tolerance", type=int, metavar="SECONDS", help="start-time tolerance (default: MATCH_TOLERANCE_SECONDS)")
    add.add_argument("--time-zone", metavar="IANA_NAME", help="the console shows times in UTC and in this zone (default: UTC)")
    add.add_argument("--disabled", action="store_true", help="record failures straight into manual review")
    add.set_defaults(func=operator(cli_accounts.accounts_add))
    update = sub.add_parser(
        "update",
        help="change some fields of an account, like PATCH /api/accounts/{id}",
        description="Change only the fields given (e.g. a new API key after Cal.com refused the old one: "
        "`accounts update salon-1 --api-key -`). A new API key is tried against Cal.com at once. Secrets are never printed.",
    )
    update.add_argument("account", help="the account id")
    secrets = update.add_argument_group("secrets")
    _secret(secrets, "--api-key", "calcom_api_key", "new Cal.com API key")
    _secret(secrets, "--webhook-secret", "webhook_secret", "new webhook secret (change it in Cal.com too)")
    _secret(secrets, "--callback-secret", "callback_secret", "new callback secret (whsec_ + base64)")
    update.add_argument("--calcom-api-base", help="Cal.com API host for this account")
    update.add_argument("--callback-url", help="where verdicts are POSTed; an empty value removes it")
    update.add_argument("--tolerance", type=int, metavar="SECONDS", help="start-time tolerance, 0 to 3600")
    update.add_argument("--time-zone", metavar="IANA_NAME", help="time zone the console shows beside UTC, e.g. Europe/Berlin")
    update.add_argument(
        "--old-secret-until",
        metavar="ISO_TIME",
        help="with --webhook-secret: keep accepting the old webhook secret until then (e.g. 2026-12-02T12:00:00Z)",
    )
    update.set_defaults(func=operator(cli_accounts.accounts_update))
    listing = sub.add_parser("list", help="every account: enabled, credentials, tolerance, callback")
    listing.add_argument("--json", action="store_true", help="the accounts as the API shows them")
    listing.set_defaults(func=operator(cli_accounts.accounts_list))
    for name, text in (
        ("enable", "verify new failures of this account again"),
        ("disable", "record new failures of this account straight into review (webhooks are still stored)"),
    ):
        switch = sub.add_parser(name, help=text)
        switch.add_argument("account", help="the account id")
        switch.set_defaults(func=operator(cli_accounts.accounts_switch), enabled=name == "enable")
    delete = sub.add_parser(
        "delete",
        help="remove an account that never recorded a verification (e.g. a mistyped id)",
        description="Removes the account with its stored webhooks and booking observations. An account with "
        "verifications keeps its history: disable it instead.",
    )
    delete.add_argument("account", help="the account id")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    delete.set_defaults(func=operator(cli_accounts.accounts_delete))


def _add_verifications(commands: Any) -> None:
    verifications = commands.add_parser("verifications", help="verifications: list, show, resolve, recheck")
    sub = verifications.add_subparsers(dest="verifications_command", required=True)
    listing = sub.add_parser("list", help="newest first, like GET /api/verifications")
    listing.add_argument("--account")
    listing.add_argument("--status", choices=STATUSES)
    listing.add_argument("--reason", choices=REVIEW_REASONS, help="review reason")
    listing.add_argument("--appointment", help="appointment id")
    listing.add_argument("--limit", type=_limit, default=50, help="1 to 200 (default 50)")
    listing.add_argument("--cursor", help="the next page, as printed by the previous one")
    listing.add_argument("--json", action="store_true", help="the page as the API returns it")
    listing.set_defaults(func=operator(cli_verifications.verifications_list))
    show = sub.add_parser("show", help="one verification as JSON, like GET /api/verifications/{id}")
    show.add_argument("id")
    show.set_defaults(func=operator(cli_verifications.verifications_show))
    resolve = sub.add_parser("resolve", help="close a pending or manual_review verification by hand")
    resolve.add_argument("id")
    resolve.add_argument("--outcome", required=True, choices=("synced", "failed"))
    resolve.add_argument("--note")
    resolve.add_argument("--booking", action="append", metavar="PHASE=UID", help="the Cal.com booking of a phase (repeatable)")
    resolve.set_defaults(func=operator(cli_verifications.verifications_resolve))
    recheck = sub.add_parser(
        "recheck",
        help="check Cal.com once more: one verification, or every calcom_unavailable one of an account",
        description="A pending verification is checked now; one in review as calcom_unavailable (Cal.com never "
        "answered, the outcome is unknown) is made pending again and checked now, so a booking that exists can "
        "still verify it. The poller makes the check within a tick. Use --account after a Cal.com outage.",
    )
    target = recheck.add_mutually_exclusive_group(required=True)
    target.add_argument("id", nargs="?", help="the verification id")
    target.add_argument("--account", help="every verification of this account in review as calcom_unavailable")
    recheck.set_defaults(func=operator(cli_verifications.verifications_recheck))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="calcom-verifier", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply pending migrations (the release process)").set_defaults(func=cmd_migrate)
    web = commands.add_parser("web", help="serve HTTP on $PORT (the web process)")
    web.add_argument("--port", type=int, default=None)
    web.set_defaults(func=cmd_web)
    commands.add_parser("poll", help="poll Cal.com and deliver callbacks (the poller process)").set_defaults(func=cmd_poll)
    commands.add_parser(
        "run", help="what `make run` does: release, then web (until it answers), then the other Procfile processes"
    ).set_defaults(func=cmd_run)
    _add_accounts(commands)
    _add_verifications(commands)
    cli_operators.add_parser(commands)
    secrets = commands.add_parser("secrets", help="the accounts' stored secrets: rotate the key they are encrypted under")
    secrets_sub = secrets.add_subparsers(dest="secrets_command", required=True)
    secrets_sub.add_parser(
        "rotate",
        help="re-encrypt every stored secret under the first key of SECRET_KEYS",
        description="Put the new key first in SECRET_KEYS (SECRET_KEYS=new,old), run this, then drop the old key.",
    ).set_defaults(func=cmd_secrets_rotate)
    status = commands.add_parser("status", help="the /status figures: counts, review queue, recovery rate, pollers, problems")
    status.add_argument("--json", action="store_true", help="the raw /status document")
    status.set_defaults(func=operator(cli_status.status))
    simulate = commands.add_parser(
        "simulate",
        help="three salon scenarios end to end against a fake Cal.com (offline, a few seconds)",
        description="Runs Dauerwelle (verified by webhook), Herrenhaarschnitt (webhook lost, verified by the "
        "poller) and a real failure (manual review) in this process, on a temporary database, with a "
        "simulated clock. Needs no configuration and leaves ./var alone; exits 0 when all three outcomes are the expected ones.",
    )
    simulate.add_argument("--verbose", action="store_true", help="also print the service's JSON log lines on stderr")
    simulate.set_defaults(func=cli_commands.simulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)
