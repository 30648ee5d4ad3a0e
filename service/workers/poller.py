"""The fallback poller: what webhooks did not settle, asked of Cal.com in batches.

Each tick: claim accounts that have due verifications (an account lease, so one tick makes one
Cal.com query per account however many pollers run), claim their due verifications (a lease per
verification), ask Cal.com once per account for the union of their windows, store every booking
as an observation, match, record the check and — at the deadline — the final verdict.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from service.app.counting import flush
from service.app.group import evidence_tags, load_group
from service.app.ingest import SWEEP_SECONDS
from service.app.matcher import Matcher
from service.app.notify import Notifier
from service.app.settle import settle_guarded
from service.clients.calcom import CalcomClient
from service.core import checks, ratelimit
from service.core.observations import Observation
from service.core.tallies import Tally
from service.settings import Settings
from service.store.connector import Database
from service.store.queries import accounts as account_store
from service.store.queries import checks as check_store
from service.store.queries import events as event_store
from service.store.queries import observations as observation_store
from service.store.queries import pollers as poller_store
from service.store.queries.accounts import Account
from service.workers.asker import Answer, Asker

log = logging.getLogger("service.workers.poller")
HEARTBEAT_EVERY = timedelta(seconds=5)
PRUNE_EVERY = timedelta(hours=1)
ACCOUNTS_AT_ONCE = 8


@dataclass
class TickReport:
    """What one tick did: work claimed, Cal.com requests made, verdicts reached."""

    accounts: int = 0
    due: int = 0
    calls: int = 0
    verdicts: int = 0
    deferred: int = 0
    errors: list[str] = field(default_factory=list)


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Poller:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        calcom: CalcomClient,
        *,
        clock: Callable[[], datetime],
        owner: str | None = None,
        deliverer: Any = None,
        rng: random.Random | None = None,
        tally: Tally | None = None,
    ) -> None:
        self.db = db
        # Counts of this process (Cal.com requests by outcome among them), added to the shared counters each tick.
        self.tally = tally if tally is not None else calcom.tally
        self.settings = settings
        self.calcom = calcom
        self.clock = clock
        self.owner = owner or default_owner()
        self.deliverer = deliverer
        self.rng = rng or random.Random()
        self.asker = Asker(db, calcom, default_base=settings.calcom_api_base, clock=clock, rng=self.rng)
        self.ticks = 0
        self._last_heartbeat: datetime | None = None
        self._last_prune: datetime | None = None
        # Webhook events a web process stored and did not live to match (its waiters are in other processes).
        self.matcher = Matcher(db, Notifier(db), clock, settle_seconds=settings.settle_seconds)

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.settings.lease_seconds)

    def _lease_until(self, now: datetime) -> datetime:
        """The end of a lease taken now: counted from the clock, as the tick's `now` may be long past."""
        return max(now, self.clock()) + self.lease

    async def tick(self, now: datetime) -> TickReport:
        """One round of work at `now`; public so tests drive it with a fixed clock."""
        self.ticks += 1
        report = TickReport()
        await self._heartbeat(now)
        try:
            await self.matcher.sweep(now - timedelta(seconds=SWEEP_SECONDS))
        except Exception as exc:  # the markers stay; the next tick tries again
            report.errors.append(f"unmatched webhooks: {type(exc).__name__}")
        async with self.db.transaction() as tx:
            account_ids = await account_store.claim_for_poll(tx, self.owner, now, self._lease_until(now))
        report.accounts = len(account_ids)
        gate = asyncio.Semaphore(ACCOUNTS_AT_ONCE)

        async def one(account_id: str) -> None:
            async with gate:
                try:
                    await self._poll_account(account_id, now, report)
                except Exception as exc:  # one account's trouble must not stop the others
                    report.errors.append(f"{account_id}: {type(exc).__name__}")
                    log.exception("poll of an account failed", extra={"event": "poll_failed", "account": account_id})
                finally:
                    with contextlib.suppress(Exception):
                        async with self.db.transaction() as tx:
                            await account_store.release_poll(tx, account_id, self.owner)

        await asyncio.gather(*(one(a) for a in account_ids))
        await self._prune(now, report)
        try:
            await flush(self.db, self.tally)
        except Exception as exc:  # kept in the tally for the next tick
            report.errors.append(f"counters: {type(exc).__name__}")
        if self.deliverer is not None:
            try:
                await self.deliverer.tick(now)
            except Exception as exc:
                report.errors.append(f"callbacks: {type(exc).__name__}")
                log.exception("callback delivery round failed", extra={"event": "callbacks_failed"})
        return report

    async def _poll_account(self, account_id: str, now: datetime, report: TickReport) -> None:
        async with self.db.transaction() as tx:
            account = await account_store.get(tx, account_id)
            if account is None:
                return
            lease_until = self._lease_until(now)
            # Other accounts may have gone first: renew our account lease, unless another poller has it by now.
            if not await account_store.renew_poll(tx, account_id, self.owner, lease_until):
                return
            claimed = await check_store.claim_due(tx, account_id, self.owner, now, lease_until, self.settings.poll_batch_size)
            pace_row = await account_store.get_pace(tx, ratelimit.key_name(account.calcom_api_key))
            # The check decides whole groups, so it asks Cal.com about every member's window.
            group = await load_group(tx, account, {row["seq"] for row in claimed}) if claimed else None
        if not claimed:
            return
        report.due += len(claimed)
        pace = ratelimit.KeyPace(
            paused_until=pace_row["paused_until_at"] if pace_row else None,
            remaining=pace_row["remaining"] if pace_row else None,
            reset_at=pace_row["reset_at"] if pace_row else None,
        )
        allowed_at = ratelimit.next_allowed(pace, now)
        if allowed_at is not None:
            report.deferred += len(claimed)
            await self._record(account, claimed, {}, now, report, allowed_at=allowed_at)
            return
        tolerance = timedelta(seconds=account.match_tolerance_seconds)
        windows = [(row["window_start_at"] - tolerance, row["window_end_at"] + tolerance) for row in claimed]
        windows += group.windows(tolerance) if group is not None else []
        answers: dict[int, Answer] = {}
        failure: str | None = None
        asked = False
        for lo, hi in checks.query_windows(windows):
            answer = await self.asker.ask(account, lo, hi, now, pace, streak=1 + max(row["failures"] for row in claimed))
            report.calls += answer.calls
            asked = asked or answer.calls > 0
            if answer.calls and not answer.complete:
                failure = failure or answer.error
            for row in claimed:
                if lo <= row["window_start_at"] - tolerance and row["window_end_at"] + tolerance <= hi:
                    answers[row["seq"]] = answer
        await self.asker.save_pace(account, pace, now, asked=asked, failure=failure)
        await self._record(account, claimed, answers, now, report, allowed_at=ratelimit.next_allowed(pace, now))

    async def _record(
        self,
        account: Account,
        claimed: list[dict[str, Any]],
        answers: dict[int, Answer],
        now: datetime,
        report: TickReport,
        *,
        allowed_at: datetime | None = None,
    ) -> None:
        """Store what Cal.com said, count the checks, match, and decide what is due a verdict."""
        settings = self.settings
        observations: dict[tuple[str, str], Observation] = {}
        for fetched in {id(a): a for a in answers.values()}.values():
            for o in fetched.observations:
                observations[(o.uid, o.seat)] = o
        ours, finalize, answered = [], [], []
        async with self.db.transaction() as tx:
            await tx.lock_account(account.id)
            fresh = await account_store.get(tx, account.id) or account
            if observations:
                await observation_store.upsert(tx, account.id, observations.values(), now)
            for row in claimed:
                answer = answers.get(row["seq"])
                due = checks.Due(row["created_at"], row["deadline_at"], row["review_started_at"], row["failures"], row["last_check_error"])
                asked = checks.Asked(answer.complete, answer.calls, answer.error) if answer is not None else None
                check = checks.record_check(
                    due,
                    asked,
                    now,
                    settle_seconds=settings.settle_seconds,
                    check_schedule=settings.check_schedule,
                    allowed_at=allowed_at,
                    rng=self.rng,
                )
                report.deferred += 1 if check.deferred else 0
                if not await check_store.record_check(
                    tx,
                    row["seq"],
                    self.owner,
                    now=now,
                    calls=check.calls,
                    complete=check.complete,
                    failures=check.failures,
                    error=check.error,
                    next_check_at=check.next_check_at,
                ):
                    continue  # resolved meanwhile, or our lease ran out and another poller has it
                ours.append(row["seq"])
                if check.at_deadline:
                    finalize.append(row["seq"])
                if check.complete:
                    answered.append(row["seq"])
            # Guarded: a failure to decide keeps the checks recorded above (and still ends what is due).
            settled = await settle_guarded(
                tx,
                fresh,
                now,
                mode="check",
                trigger="poll",
                settle_seconds=settings.settle_seconds,
                seqs=ours,
                near=[o.start for o in observations.values()],
                tags=evidence_tags(observations.values()),
                finalize=finalize,
                answered=answered,
            )
        report.verdicts += len(settled.resolved)

    async def _prune(self, now: datetime, report: TickReport) -> None:
        """Drop raw webhook bodies older than WEBHOOK_RETENTION_DAYS, a slice at a time, hourly."""
        if self._last_prune is not None and now - self._last_prune < PRUNE_EVERY:
            return
        self._last_prune = now
        try:
            async with self.db.transaction() as tx:
                dropped = await event_store.prune_events(tx, now - timedelta(days=self.settings.webhook_retention_days))
        except Exception as exc:
            report.errors.append(f"prune: {type(exc).__name__}")
            return
        if dropped:
            log.info("old webhook bodies dropped", extra={"event": "webhook_events_pruned", "count": dropped})

    async def _heartbeat(self, now: datetime, *, force: bool = False) -> None:
        if not force and self._last_heartbeat is not None and now - self._last_heartbeat < HEARTBEAT_EVERY:
            return
        async with self.db.transaction() as tx:
            await poller_store.heartbeat(tx, self.owner, hostname=socket.gethostname(), pid=os.getpid(), ticks=self.ticks, now=now)
        self._last_heartbeat = now

    async def run(self, stop: asyncio.Event) -> None:
        """Tick until `stop` is set; a stop request ends the wait at once, never a tick half-way."""
        log.info("poller started", extra={"event": "poller_started", "poller": self.owner})
        with contextlib.suppress(Exception):  # forget pollers that have been silent for a week
            async with self.db.transaction() as tx:
                await poller_store.prune(tx, self.clock() - timedelta(days=7))
        interval = self.settings.poll_interval_seconds
        while not stop.is_set():
            try:
                report = await self.tick(self.clock())
                if report.due or report.verdicts or report.errors:
                    log.info(
                        "poll tick",
                        extra={
                            "event": "poll_tick",
                            "accounts": report.accounts,
                            "due": report.due,
                            "calls": report.calls,
                            "verdicts": report.verdicts,
                            "deferred": report.deferred,
                            "errors": report.errors,
                        },
                    )
            except Exception as exc:  # the database may be restarting: keep going
                log.warning("poll tick failed", extra={"event": "poll_tick_failed", "error": type(exc).__name__})
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), interval * self.rng.uniform(0.8, 1.2))
        with contextlib.suppress(Exception):
            await flush(self.db, self.tally)
        said_goodbye = False
        with contextlib.suppress(Exception):  # a stopped poller leaves /status (a crashed one stays, not alive)
            async with self.db.transaction() as tx:
                await poller_store.goodbye(tx, self.owner)
            said_goodbye = True
        log.info("poller stopped", extra={"event": "poller_stopped", "poller": self.owner, "said_goodbye": said_goodbye})
