"""How an operator's command runs: one database session, one-line errors, tables and JSON out; `simulate`.

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
from service.core.models import ACCOUNT_ID
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
    "time_zone": "--time-zone",
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
        return fail(str(exc), exc.code)
    except ValidationFailed as exc:
        return fail(validation_message(exc), 2)
    except DatabaseUnavailable as exc:
        return fail(f"the database is unavailable ({exc.reason or 'no connection'}): check DATABASE_URL", 1)
    except ServiceError as exc:
        return fail(exc.message, 1)


def fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def validation_message(exc: ValidationFailed) -> str:
    """The API's 422 message, naming the command-line option where an account field is at fault."""
    details = exc.details or []
    if not any(d["field"] in OPTION_OF or d["field"] == "body" for d in details):
        return exc.message.removeprefix("invalid request: ")
    return "; ".join(
        f"{OPTION_OF[d['field']]}: {d['message']}"
        if d["field"] in OPTION_OF
        else d["message"]
        if d["field"] == "body"
        else f"{d['field']}: {d['message']}"
        for d in details
    )


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
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


def prompt_missing(values: dict[str, str | None], required: Sequence[str]) -> None:
    for name in required:
        if values.get(name):
            continue
        option = OPTION_OF[name]
        if not sys.stdin.isatty():
            raise CommandError(f"{option} is required (give a value, - to read it from stdin, or {option}-env NAME)", 2)
        values[name] = getpass.getpass(f"{option.removeprefix('--').replace('-', ' ')}: ")


def valid_account(account: str) -> str | None:
    """Why an account id given on the command line cannot be one, or None."""
    if ACCOUNT_ID.match(account):
        return None
    hint = " (account ids are lower-case)" if ACCOUNT_ID.match(account.lower()) else ""
    return f"account: must match [a-z0-9][a-z0-9_-]{{0,62}}{hint}"


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
