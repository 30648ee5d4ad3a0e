"""The poller process: connect, tick until SIGTERM/SIGINT, say goodbye, disconnect."""

from __future__ import annotations

import asyncio
import signal

import httpx

from service.app.runtime import check_secret_keys, connect_database
from service.clients.calcom import CalcomClient
from service.clients.targets import GuardedTransport
from service.clock import system_clock
from service.core.tallies import Tally
from service.settings import Settings
from service.store.migrations import apply_pending_migrations
from service.workers.callbacks import CallbackDeliverer
from service.workers.poller import Poller, default_owner


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """The poller process' life: connect, tick until stopped, disconnect."""
    db = await connect_database(settings)
    try:
        await apply_pending_migrations(db)
        await check_secret_keys(db)
    except BaseException:
        await db.disconnect()
        raise
    limits = httpx.Limits(max_connections=50, max_keepalive_connections=20)
    # Cal.com and the callback receivers: public https hosts only, checked at each connection (no SSRF).
    transport = GuardedTransport(allow_private=settings.allow_private_targets, limits=limits)
    async with httpx.AsyncClient(transport=transport, follow_redirects=False) as http:
        owner = default_owner()
        calcom = CalcomClient(http, timeout=settings.calcom_timeout_seconds, tally=Tally())
        deliverer = CallbackDeliverer(db, http, settings, owner=owner)
        poller = Poller(db, settings, calcom, clock=system_clock, owner=owner, deliverer=deliverer)
        try:
            await poller.run(stop)
        finally:
            await db.disconnect()


def main(settings: Settings) -> int:
    """`python -m service poll`: SIGTERM/SIGINT finish the current tick, then exit 0."""

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await serve(settings, stop)

    asyncio.run(run())
    return 0
