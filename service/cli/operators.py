"""`operators add|list|remove`: the named people who may sign in to the console."""

from __future__ import annotations

import argparse
import getpass
import sys

from service.app.operators import valid_name
from service.app.runtime import Runtime
from service.cli.commands import fail, run, table
from service.clock import system_clock
from service.core.times import iso
from service.settings import Settings


def _read_password() -> str | None:
    """The password: typed twice at a terminal, else the first line of stdin (never an argument: shell history)."""
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("password again: ") != first:
            return None
        return first
    return sys.stdin.readline().rstrip("\r\n")


def operators_add(args: argparse.Namespace, settings: Settings) -> int:
    if problem := valid_name(args.name):
        return fail(problem, 2)
    password = _read_password()
    if password is None:
        return fail("the two passwords differ; nothing was changed", 2)

    async def command(runtime: Runtime) -> int:
        created = await runtime.operators.add(args.name, password, system_clock())
        print(f"operator {args.name} {'added' if created else 'given a new password'}; sign in at /console", file=sys.stderr)
        return 0

    return run(settings, command)


def operators_list(args: argparse.Namespace, settings: Settings) -> int:
    async def command(runtime: Runtime) -> int:
        rows = await runtime.operators.list()
        if not rows:
            print("no operators yet: add one with `python -m service operators add NAME`", file=sys.stderr)
            return 0
        table(["NAME", "ADDED"], [[row["name"], iso(row["created_at"]) or ""] for row in rows])
        return 0

    return run(settings, command)


def operators_remove(args: argparse.Namespace, settings: Settings) -> int:
    async def command(runtime: Runtime) -> int:
        await runtime.operators.remove(args.name, system_clock())
        print(f"operator {args.name} removed; their sessions end at their next request", file=sys.stderr)
        return 0

    return run(settings, command)


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from service.cli.parser import operator

    operators = commands.add_parser("operators", help="the people who sign in to the console: add, list, remove")
    sub = operators.add_subparsers(dest="operators_command", required=True)
    add = sub.add_parser(
        "add",
        help="add an operator (or set a new password): the password is read from stdin",
        description="The password is typed twice at a terminal, or read as the first line of stdin "
        "(e.g. from a password manager); it is stored as an Argon2 hash. At least 10 characters.",
    )
    add.add_argument("name", help="the operator's name, as the audit log will show it")
    add.set_defaults(func=operator(operators_add))
    listing = sub.add_parser("list", help="every operator")
    listing.set_defaults(func=operator(operators_list))
    remove = sub.add_parser("remove", help="remove an operator (their sessions stop working)")
    remove.add_argument("name")
    remove.set_defaults(func=operator(operators_remove))
