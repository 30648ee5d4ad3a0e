"""Matching stored webhook events: claim their markers, store what they tell, settle what they concern.

The webhook path stores an event and answers before anything is judged (`ingest.py`); what it
stored is matched here, from what was stored, in a transaction of its own that clears each event's
durable `unmatched` marker. Whoever decides about an account — the matcher after a batch, an intake
or the booking guard before they decide — takes that account's unmatched events itself, under the
account's lock, so each event is matched exactly once and nobody waits for anybody.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from service.app.group import evidence_tags
from service.app.notify import Notifier
from service.app.settle import note_duplicates, settle_guarded
from service.core.observations import Observation
from service.core.times import merge_windows
from service.core.webhooks import GoneUid, WebhookEvent, gone_units, parse
from service.errors import BadRequest, DatabaseUnavailable
from service.store.connector import Database, Tx
from service.store.queries import accounts as account_store
from service.store.queries import events as event_store
from service.store.queries import observations as observation_store
from service.store.queries import verifications as verification_store

log = logging.getLogger("service.app.matcher")


@dataclass(frozen=True)
class Stored:
    """An event stored with its `unmatched` marker set, as the matcher takes it."""

    seq: int
    account: str
    event: WebhookEvent


class Matcher:
    """Matches stored events: claims their markers, stores their observations and settles, in one transaction."""

    def __init__(self, db: Database, notifier: Notifier, clock: Callable[[], datetime], *, settle_seconds: float = 2.0) -> None:
        self.db = db
        self.notifier = notifier
        self.clock = clock
        self.settle_seconds = settle_seconds
        self.matched = 0
        self.batches = 0

    async def match(self, batch: list[Stored]) -> None:
        """Match a batch; one by one when the batch fails (so one poisonous event fails alone)."""
        try:
            await self._match(batch)
        except DatabaseUnavailable:
            raise  # the markers stay; the next sweep retries
        except Exception:
            if len(batch) > 1:
                for item in batch:
                    await self.match([item])
                return
            log.exception("stored webhook event could not be matched", extra={"event": "webhook_match_failed", "account": batch[0].account})
            # Its body stays stored for audit and replay; the marker is cleared so no sweep loops on it.
            async with self.db.transaction() as tx:
                await event_store.claim_unmatched(tx, [batch[0].seq])

    async def sweep(self, before: datetime, *, limit: int = 256) -> int:
        """Match every event stored before `before` whose marker is still set; answer how many were matched."""
        after, done = 0, 0
        while True:
            async with self.db.read() as tx:
                rows = await event_store.unmatched(tx, before, after=after, limit=limit)
            if not rows:
                return done
            batch = [Stored(int(r["seq"]), r["account"], _reparse(r)) for r in rows]
            await self.match(batch)
            after = batch[-1].seq
            done += len(batch)
            log.info("stored webhook events matched late", extra={"event": "webhook_events_recovered", "count": len(batch)})

    async def _match(self, batch: list[Stored]) -> None:
        async with self.db.transaction() as tx:
            # Everything this writes follows from events already stored durably: lost with a crash of the
            # database server, it is matched again (the markers come back with it); so no wait for the disk.
            await tx.lock_accounts((item.account for item in batch), commit_waits=False)
            matched, resolved = await match_stored(tx, batch, self.clock(), settle_seconds=self.settle_seconds)
        self.matched += matched
        self.batches += 1
        self.notifier.resolved(resolved)


Changes = list[tuple[str, Observation]]  # (account, observation) pairs


async def match_stored(tx: Tx, batch: list[Stored], now: datetime, *, settle_seconds: float) -> tuple[int, list[str]]:
    """Inside `tx` (its accounts locked): claim these events' markers, store what the claimed ones tell,
    settle the pending verifications near them; answer how many were claimed and the verifications resolved."""
    claimed, changes = await store_stored(tx, batch, now)
    return claimed, await settle_changes(tx, changes, now, settle_seconds=settle_seconds)


async def store_stored(tx: Tx, batch: list[Stored], now: datetime) -> tuple[int, Changes]:
    """Inside `tx` (its accounts locked): claim these events' markers and store what the claimed ones tell;
    answer how many were claimed and the observations stored (for the caller to settle)."""
    claimed = await event_store.claim_unmatched(tx, [item.seq for item in batch])
    fresh = [item for item in batch if item.seq in claimed]
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
    return len(fresh), changes


async def take_backlog(tx: Tx, account: str, now: datetime) -> Changes:
    """Inside `tx` (the account locked): store what the account's events nobody has matched yet tell,
    and answer it; the caller settles it (with the decision it is about to take).

    A failure recorded (or a booking created through the guard) just after its webhook was answered
    must see that webhook, and matching follows the answer: so whoever decides takes the backlog
    itself instead of waiting for the matcher (which then finds those markers claimed and skips them).
    """
    rows = await event_store.unmatched_of(tx, account)
    if not rows:
        return []
    try:
        async with tx.savepoint():
            batch = [Stored(int(r["seq"]), r["account"], _reparse(r)) for r in rows]
            _, changes = await store_stored(tx, batch, now)
            return changes
    except DatabaseUnavailable:
        raise
    except Exception:  # the events stay marked: the matcher takes them one by one, isolating the bad one
        log.exception("stored webhook events could not be matched", extra={"event": "webhook_match_failed", "account": account})
        return []


async def match_backlog(tx: Tx, account: str, now: datetime, *, settle_seconds: float) -> list[str]:
    """Inside `tx` (the account locked): `take_backlog`, settled on its own; answer the verifications resolved."""
    return await settle_changes(tx, await take_backlog(tx, account, now), now, settle_seconds=settle_seconds)


async def settle_changes(tx: Tx, changes: Changes, now: datetime, *, settle_seconds: float) -> list[str]:
    """Settle the pending verifications near changed bookings, or named by their tags (one probe for every account)."""
    if not changes:
        return []
    accounts = await account_store.get_many(tx, [a for a, _ in changes])
    windows: list[tuple[str, datetime, datetime]] = []
    tags: dict[str, set[str]] = {}
    for account_id, account in accounts.items():
        tolerance = timedelta(seconds=account.match_tolerance_seconds)
        starts = [o.start for a, o in changes if a == account_id]
        windows += [(account_id, lo, hi) for lo, hi in merge_windows((t - tolerance, t + tolerance) for t in starts)]
        tags[account_id] = set(evidence_tags(o for a, o in changes if a == account_id))
    concerned = await verification_store.pending_concerned_many(tx, windows, [(a, t) for a in sorted(tags) for t in sorted(tags[a])])
    resolved: list[str] = []
    for account_id in sorted(accounts):  # an unknown account (deleted meanwhile) keeps its evidence
        if concerned.get(account_id):
            # Guarded: an event answered 200 stays stored even when deciding on it fails.
            settled = await settle_guarded(
                tx,
                accounts[account_id],
                now,
                mode="instant",
                trigger="webhook",
                settle_seconds=settle_seconds,
                seqs=concerned[account_id],
                tags=sorted(tags[account_id]),
                probed=[(lo, hi) for a, lo, hi in windows if a == account_id],
            )
            resolved += settled.resolved
        elif tags[account_id]:  # nothing pending to decide; a tagged booking may still be a duplicate
            await note_duplicates(tx, accounts[account_id], sorted(tags[account_id]), now)
    return resolved


def _reparse(row: dict[str, object]) -> WebhookEvent:
    """The event as it was when stored (only bodies that parsed were stored)."""
    received_at = row["received_at"]
    assert isinstance(received_at, datetime)
    try:
        return parse(str(row["body"]).encode("utf-8"), "application/json", received_at)
    except BadRequest:
        return WebhookEvent("unreadable", None, None)
