"""Storing signed webhook events with group commit.

Cal.com waits for our answer inside its own booking request, so the answer must be quick and
must mean "stored". Each request hands its parsed event to one writer task and waits; the writer
takes everything queued meanwhile and stores, matches and commits it in one transaction (one
fsync for many events). Under light load a batch is one event and nothing waits for company.
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

from service.app.group import evidence_tags
from service.app.notify import Notifier
from service.app.settle import settle_guarded
from service.core.observations import Observation
from service.core.times import merge_windows
from service.core.webhooks import GoneUid, WebhookEvent, gone_units
from service.errors import DatabaseUnavailable
from service.store.connector import Database, Tx
from service.store.queries import accounts as account_store
from service.store.queries import events as event_store
from service.store.queries import observations as observation_store
from service.store.queries import verifications as verification_store

log = logging.getLogger("service.app.ingest")


@dataclass
class Submission:
    account: str
    body: bytes
    body_sha256: str
    event: WebhookEvent
    received_at: datetime
    future: asyncio.Future[bool] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Ingestor:
    """The single writer of webhook events in this process."""

    def __init__(
        self, db: Database, notifier: Notifier, clock: Callable[[], datetime], *, settle_seconds: float = 2.0, max_batch: int = 256
    ) -> None:
        self.db = db
        self.settle_seconds = settle_seconds
        self.notifier = notifier
        self.clock = clock
        self.max_batch = max_batch
        self._queue: asyncio.Queue[Submission] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.events = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="webhook-ingest")

    async def stop(self) -> None:
        if self._task is not None:
            # Let queued events finish: their senders are waiting for an answer.
            while not self._queue.empty():  # noqa: ASYNC110 (a few ms at shutdown)
                await asyncio.sleep(0.01)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def submit(self, submission: Submission) -> bool:
        """Store one event; answer True when it was new, False for a duplicate body."""
        self._queue.put_nowait(submission)
        # Shielded: a sender that hangs up does not cancel the write others share.
        return await asyncio.shield(submission.future)

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._process(batch)

    async def _process(self, batch: list[Submission]) -> None:
        try:
            results = await self._commit(batch)
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

    async def _commit(self, batch: list[Submission]) -> list[bool]:
        """One transaction for the batch; its statement count does not grow with the accounts in it."""
        now = self.clock()
        resolved: list[str] = []
        first: dict[tuple[str, str], Submission] = {}
        for item in batch:  # the first of several identical bodies counts; the rest are duplicates
            first.setdefault((item.account, item.body_sha256), item)
        async with self.db.transaction() as tx:
            await tx.lock_accounts(item.account for item in batch)
            new_keys = await event_store.insert_events(tx, [_event_row(i) for i in first.values()])
            fresh = [item for key, item in first.items() if key in new_keys]
            changes: list[tuple[str, Observation]] = [(i.account, o) for i in fresh for o in i.event.changes]
            gone: dict[str, list[GoneUid]] = {}
            for item in fresh:
                if item.event.gone:
                    gone.setdefault(item.account, []).extend(item.event.gone)
            for account_id, gones in sorted(gone.items()):
                units = await observation_store.units_of(tx, account_id, sorted({g.uid for g in gones}))
                changes += [(account_id, o) for g in gones for o in gone_units(g, units.get(g.uid, []))]
            if changes:
                await observation_store.upsert_many(tx, changes, now)
                resolved = await self._match(tx, changes, now)
        self.notifier.resolved(resolved)
        self.batches += 1
        self.events += len(batch)
        return [(i.account, i.body_sha256) in new_keys and first[(i.account, i.body_sha256)] is i for i in batch]

    async def _match(self, tx: Tx, changes: list[tuple[str, Observation]], now: datetime) -> list[str]:
        """Settle the pending verifications near the changed bookings (one probe for every account)."""
        accounts = await account_store.get_many(tx, [a for a, _ in changes])
        windows: list[tuple[str, datetime, datetime]] = []
        tags: dict[str, set[str]] = {}
        for account_id, account in accounts.items():
            tolerance = timedelta(seconds=account.match_tolerance_seconds)
            starts = [o.start for a, o in changes if a == account_id]
            windows += [(account_id, lo, hi) for lo, hi in merge_windows((t - tolerance, t + tolerance) for t in starts)]
            tags[account_id] = set(evidence_tags(o for a, o in changes if a == account_id))
        near = await verification_store.pending_near_many(tx, windows)
        resolved: list[str] = []
        for account_id in sorted(accounts):  # an unknown account (deleted meanwhile) keeps its evidence
            if near.get(account_id) or tags[account_id]:
                # Guarded: an event answered 200 stays stored even when deciding on it fails.
                settled = await settle_guarded(
                    tx,
                    accounts[account_id],
                    now,
                    mode="instant",
                    trigger="webhook",
                    settle_seconds=self.settle_seconds,
                    seqs=near.get(account_id, ()),
                    tags=sorted(tags[account_id]),
                )
                resolved += settled.resolved
        return resolved


def _event_row(item: Submission) -> dict[str, object]:
    return {
        "account": item.account,
        "body_sha256": item.body_sha256,
        "trigger_event": item.event.trigger[:100],
        "booking_uid": item.event.booking_uid,
        "event_created_at": item.event.created_at,
        "received_at": item.received_at,
        "body": item.body.decode("utf-8", "replace"),
    }


def _fail(item: Submission, exc: BaseException) -> None:
    if not item.future.done():
        item.future.set_exception(exc)
