"""Storing goes first; matching takes what piled up meanwhile, at once when the writer is free.

Cal.com waits for the store, nobody waits for the match (whoever decides matches a backlog itself),
and one match transaction for many events costs a fraction of many small ones. So the matcher
matches as soon as the writer has nothing queued — one event at a time at a quiet moment — and in a
burst waits for the writer, up to MATCH_WAIT_SECONDS for its oldest event or a full batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from service.app import ingest
from service.store.queries import events as event_store

from .helpers import booking_event, create_account, post_webhook

START = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Answers as they come (not held until matched, as the suite's usual client holds them)."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://verifier.test") as http:
        yield http


class Gates:
    """Store batch number n (1-based) waits for `release[n]`; `holding[n]` is set once it does."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *numbers: int) -> None:
        self.release = {n: asyncio.Event() for n in numbers}
        self.holding = {n: asyncio.Event() for n in numbers}
        insert = event_store.insert_events
        count = 0

        async def gated(tx: Any, rows: list[dict[str, Any]]) -> Any:
            nonlocal count
            count += 1
            if count in self.release:
                self.holding[count].set()
                await self.release[count].wait()
            return await insert(tx, rows)

        monkeypatch.setattr(event_store, "insert_events", gated)


async def queued(app: Any, n: int) -> None:
    """Until n webhooks wait in the writer's queue (the handlers get there within a few loop turns)."""
    while app.state.services.ingestor._queue.qsize() < n:
        await asyncio.sleep(0)


def count_matches(app: Any, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every batch the matcher matches, in order."""
    matcher = app.state.services.ingestor.matcher
    sizes: list[int] = []
    match = matcher.match

    async def counted(batch: list[Any]) -> None:
        sizes.append(len(batch))
        await match(batch)

    monkeypatch.setattr(matcher, "match", counted)
    return sizes


def webhook(client: httpx.AsyncClient, i: int) -> Any:
    return post_webhook(client, booking_event(uid=f"bk-{i}", start=START + timedelta(hours=i)))


async def test_at_a_quiet_moment_an_event_is_matched_at_once(app: Any, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest, "MATCH_WAIT_SECONDS", 3600.0)  # only a free writer can let the matcher go
    await create_account(client)
    sizes = count_matches(app, monkeypatch)
    assert (await webhook(client, 1)).status_code == 200
    await app.state.services.ingestor.caught_up(within=30)
    assert sizes == [1]


async def test_in_a_burst_the_events_stored_meanwhile_are_matched_together(
    app: Any, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    await create_account(client)
    monkeypatch.setattr(ingest, "MATCH_WAIT_SECONDS", 3600.0)
    sizes = count_matches(app, monkeypatch)
    gates = Gates(monkeypatch, 1)
    first = asyncio.create_task(webhook(client, 0))
    await gates.holding[1].wait()  # the writer is storing the first event; four more queue up behind it
    rest = [asyncio.create_task(webhook(client, i)) for i in range(1, 5)]
    await queued(app, 4)
    gates.release[1].set()
    assert [r.status_code for r in await asyncio.gather(first, *rest)] == [200] * 5
    await app.state.services.ingestor.caught_up(within=30)
    assert sizes == [5]  # the first event waited for the writer's next batch instead of going alone


async def test_a_busy_writer_holds_matching_back_no_longer_than_the_wait(
    app: Any, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    await create_account(client)
    monkeypatch.setattr(ingest, "MATCH_WAIT_SECONDS", 0.01)
    sizes = count_matches(app, monkeypatch)
    gates = Gates(monkeypatch, 1, 2)
    first = asyncio.create_task(webhook(client, 0))
    await gates.holding[1].wait()
    second = asyncio.create_task(webhook(client, 1))
    await queued(app, 1)
    gates.release[1].set()  # the first is stored; the writer goes straight on to the second, and stays there
    assert (await first).status_code == 200
    await gates.holding[2].wait()
    await app.state.services.ingestor.caught_up(within=30)  # the first is matched all the same, after the wait
    assert sizes == [1]
    gates.release[2].set()
    assert (await second).status_code == 200
    await app.state.services.ingestor.caught_up(within=30)
    assert sizes == [1, 1]
