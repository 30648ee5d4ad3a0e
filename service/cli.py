"""`python -m service …` / `calcom-verifier …`: the processes and the operator's commands."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from . import logs
from .db import Database
from .settings import ConfigError, Settings, load_settings
from .store.migrations import migrate


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        raise SystemExit(2) from None


async def _migrate(settings: Settings) -> list[str]:
    db = Database(settings.database_url)
    await db.connect()
    try:
        return await migrate(db)
    finally:
        await db.disconnect()


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings()
    logs.configure(settings.log_level)
    applied = asyncio.run(_migrate(settings))
    print(f"migrations applied: {', '.join(applied) if applied else 'none (already current)'}")
    return 0


def cmd_web(args: argparse.Namespace) -> int:
    import signal

    import uvicorn

    from .web import create_app

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: object) -> None:
            # Stop gracefully and exit 0; uvicorn would re-raise SIGTERM after shutdown, which
            # process managers report as a crash.
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True
            self.should_exit = True

    settings = _settings()
    logs.configure(settings.log_level)
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=args.port or settings.port,
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=35,
    )
    Server(config).run()
    return 0


def cmd_poll(args: argparse.Namespace) -> int:
    from .poller import main as poll_main

    settings = _settings()
    logs.configure(settings.log_level)
    return poll_main(settings)


def cmd_run(args: argparse.Namespace) -> int:
    from .procfile import run

    return run()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="calcom-verifier", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply pending migrations (the release process)").set_defaults(func=cmd_migrate)
    web = commands.add_parser("web", help="serve HTTP on $PORT (the web process)")
    web.add_argument("--port", type=int, default=None)
    web.set_defaults(func=cmd_web)
    commands.add_parser("poll", help="poll Cal.com and deliver callbacks (the poller process)").set_defaults(func=cmd_poll)
    commands.add_parser("run", help="what `make run` does: release, then every Procfile process").set_defaults(func=cmd_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)
