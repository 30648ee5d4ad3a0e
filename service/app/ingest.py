"""Storing signed webhook events with group commit, then matching them just after.

Cal.com waits for our answer inside its own booking request, so the answer must be quick and
must mean "stored". Each request hands its parsed event to one writer task and waits; the writer
takes everything queued meanwhile and appends it in one statement committed on its own (one round
trip to the driver and one fsync for many events), and the senders get their 200. Matching
happens after that commit, in this process, in its own transaction: the events stored since the
last match are matched together, from what was stored. Each stored event that concerns a booking
carries a durable `unmatched` marker, cleared in the matching transaction; an event whose process
died between the two is matched by the next web process start, by this process' periodic sweep,
or by the poller's next tick (`Matcher.sweep`), whichever comes first, and exactly once.

If a batch fails for a reason other than the database being away, its events are retried one by
one so a single poisonous event cannot fail its neighbours.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from service.app.matcher import Matcher, Stored
from service.app.notify import Notifier
from service.core.webhooks import WebhookEvent
from service.errors import DatabaseUnavailable
from service.store.connector import Database
from service.store.queries import events as event_store

log = logging.getLogger("service.app.ingest")
SWEEP_SECONDS = 5.0  # how often the web process looks for stored events nobody matched (and their minimum age)
# Storing goes first (Cal.com waits for it); matching takes its events when the writer has nothing
# queued, or once its oldest event has waited MATCH_WAIT_SECONDS, MATCH_BATCH at a time. At a quiet
# moment that is at once, one event at a time; in a burst the batches grow, and one match transaction
# for many events costs a fraction of many small ones (one probe and one decision per account).
MATCH_BATCH = 1000
MATCH_WAIT_SECONDS = 0.25


@dataclass
class Submission:
    account: str
    body: bytes
    body_sha256: str
    event: WebhookEvent
    received_at: datetime
    future: asyncio.Future[bool] = field(init=False)  # set by Ingestor.submit


class Ingestor:
    """The single writer of webhook events in this process, and the matcher that follows it."""

    def __init__(
        self,
        db: Database,
        notifier: Notifier,
        clock: Callable[[], datetime],
        *,
        settle_seconds: float = 2.0,
        max_batch: int = event_store.EVENTS_PER_STATEMENT,
        hold_matching: bool = False,
    ) -> None:
        self.db = db
        self.settle_seconds = settle_seconds
        self.notifier = notifier
        self.clock = clock
        self.max_batch = max_batch
        # Testing only: store and answer, never match (a crash between the two, made deterministic).
        self.hold_matching = hold_matching
        self.matcher = Matcher(db, notifier, clock, settle_seconds=settle_seconds)
        self._loop: asyncio.AbstractEventLoop  # set by start
        self._queue: asyncio.Queue[Submission] = asyncio.Queue()
        self._to_match: list[Stored] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._writer_idle = asyncio.Event()  # set while the writer waits for events to store
        self._waiting_since = 0.0  # when the oldest event in _to_match was handed over (loop time)
        # Events handed to the matcher so far, and how many of them it has been through (matched, or
        # left to the sweep): `caught_up` waits for the count of its moment only, never for later events.
        self._queued = 0
        self._done = 0
        self._progress = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._matching: asyncio.Task[None] | None = None
        self.batches = 0
        self.events = 0

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="webhook-ingest")
        if not self.hold_matching:
            self._idle.clear()  # the start-up sweep (events a previous process stored and did not match)
            self._matching = asyncio.create_task(self._match_loop(), name="webhook-match")

    async def stop(self) -> None:
        if self._task is not None:
            # Let queued events finish: their senders are waiting for an answer.
            while not self._queue.empty():  # noqa: ASYNC110 (a few ms at shutdown)
                await asyncio.sleep(0.01)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._matching is not None:
            # Matching what was stored is quick; whatever is left is swept by the next start or poll.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout=5)
            self._matching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._matching
            self._matching = None

    async def submit(self, submission: Submission) -> bool:
        """Store one event; answer True when it was new, False for a duplicate body."""
        # From the loop kept at start: asyncio.get_running_loop() costs a getpid() system call each time.
        submission.future = self._loop.create_future()
        self._queue.put_nowait(submission)
        # Shielded: a sender that hangs up does not cancel the write others share.
        return await asyncio.shield(submission.future)

    async def caught_up(self, within: float = 10.0) -> None:
        """Return once the events this process answered 200 for until now are matched, or after `within` seconds.

        Nothing on a request's path waits for this (whoever decides matches the backlog itself); tests
        use it to read outcomes after a webhook's answer without racing its match.
        """
        if self.hold_matching or self._matching is None or self._done >= self._queued:
            return
        target = self._queued
        async with self._progress:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait_for(lambda: self._done >= target), within)

    async def _run(self) -> None:
        while True:
            if self._queue.empty():
                self._writer_idle.set()
            batch = [await self._queue.get()]
            self._writer_idle.clear()
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._process(batch)

    async def _process(self, batch: list[Submission]) -> None:
        try:
            results = await self._store(batch)
        except DatabaseUnavailable as exc:
            for item in batch:
                _fail(item, exc)
            return
        except Exception:
            if len(batch) == 1:
                log.exception("webhook event could not be stored", extra={"event": "webhook_store_failed", "account": batch[0].account})
                _fail(batch[0], RuntimeError("webhook event could not be stored"))
                return
            for item in batch:
                await self._process([item])
            return
        for item, new in zip(batch, results):
            if not item.future.done():
                item.future.set_result(new)

    async def _store(self, batch: list[Submission]) -> list[bool]:
        """One transaction of one statement for the batch; the stored events go on to the matcher."""
        first: dict[tuple[str, str], Submission] = {}
        for item in batch:  # the first of several identical bodies counts; the rest are duplicates
            first.setdefault((item.account, item.body_sha256), item)
        # One statement, committed on its own: no BEGIN/COMMIT trips around it (max_batch keeps it one).
        async with self.db.autocommit() as tx:
            new = await event_store.insert_events(tx, [_event_row(i) for i in first.values()])
        stored = [Stored(seq, key[0], first[key].event) for key, seq in new.items() if first[key].event.concerns_bookings]
        if stored and not self.hold_matching:
            if not self._to_match:
                self._waiting_since = self._loop.time()
            self._to_match += stored
            self._queued += len(stored)
            self._idle.clear()
            self._wake.set()
        self.batches += 1
        self.events += len(batch)
        return [(i.account, i.body_sha256) in new and first[(i.account, i.body_sha256)] is i for i in batch]

    async def _match_loop(self) -> None:
        loop = asyncio.get_running_loop()
        await self._sweep(self.clock())  # at once: a previous process may have stored events it never matched
        sweep_at = loop.time() + SWEEP_SECONDS
        while True:
            if loop.time() >= sweep_at:  # events whose matching failed (database away) or another process left
                await self._sweep(self.clock() - timedelta(seconds=SWEEP_SECONDS))
                sweep_at = loop.time() + SWEEP_SECONDS
            while self._to_match:
                await self._stores_first()
                batch, self._to_match = self._to_match[:MATCH_BATCH], self._to_match[MATCH_BATCH:]
                self._waiting_since = loop.time()
                try:
                    await self.matcher.match(batch)
                except DatabaseUnavailable:
                    log.warning(
                        "webhook events stored, matching them waits for the database",
                        extra={"event": "webhook_match_deferred", "count": len(batch)},
                    )
                except Exception:  # the loop must live on; the events stay marked unmatched for the sweep
                    log.exception("matching stored webhook events failed", extra={"event": "webhook_match_failed", "count": len(batch)})
                self._done += len(batch)
                async with self._progress:
                    self._progress.notify_all()
            self._idle.set()
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, sweep_at - loop.time()))

    async def _stores_first(self) -> None:
        """Wait until the writer has nothing queued, the backlog fills a batch, or its oldest event waited long enough."""
        if self._writer_idle.is_set() or len(self._to_match) >= MATCH_BATCH:
            return
        left = self._waiting_since + MATCH_WAIT_SECONDS - asyncio.get_running_loop().time()
        if left > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._writer_idle.wait(), left)

    async def _sweep(self, before: datetime) -> None:
        try:
            await self.matcher.sweep(before)
        except Exception as exc:
            log.warning("sweep of unmatched webhook events failed", extra={"event": "webhook_sweep_failed", "error": type(exc).__name__})


def _event_row(item: Submission) -> dict[str, object]:
    return {
        "account": item.account,
        "body_sha256": item.body_sha256,
        "trigger_event": item.event.trigger[:100],
        "booking_uid": item.event.booking_uid,
        "event_created_at": item.event.created_at,
        "received_at": item.received_at,
        "body": item.body.decode("utf-8", "replace"),
        "unmatched": 1 if item.event.concerns_bookings else 0,
    }


def _fail(item: Submission, exc: BaseException) -> None:
    if not item.future.done():
        item.future.set_exception(exc)
