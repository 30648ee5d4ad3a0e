"""One more Cal.com check now, for a pending verification or one in review because Cal.com never answered.

A pending verification is simply made due now. A `calcom_unavailable` one (its outcome unknown) is
taken out of the review queue and made pending again: due now, with a deadline as far away as a
new recording's, its claims given back so the whole evidence is judged afresh. The poller makes
the check; its first complete answer is final (verified, or review with what it found), and if
Cal.com still gives none until the deadline it goes back to review as `calcom_unavailable`.
Webhooks arriving meanwhile can verify it, as for any pending verification. The account's API key
is released from our own backoff (never from Cal.com's 60 s block after a 429), so the check is
made at the next tick.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from service.app.intake import find_verification, load_view
from service.app.notify import Notifier
from service.core import ratelimit, schedule
from service.core.ratelimit import BLOCK_JITTER_SECONDS, BLOCK_SECONDS
from service.errors import Conflict, UniqueViolation
from service.settings import Settings
from service.store.connector import Database
from service.store.queries import accounts as account_store
from service.store.queries import checks as check_store

log = logging.getLogger("service.app.recheck")
RECHECKABLE = "pending, or manual_review with review_reason calcom_unavailable"
LONGEST_BLOCK = timedelta(seconds=BLOCK_SECONDS + BLOCK_JITTER_SECONDS)


class Rechecks:
    def __init__(self, db: Database, settings: Settings, notifier: Notifier) -> None:
        self.db = db
        self.settings = settings
        self.notifier = notifier

    async def recheck(self, verification_id: str, now: datetime) -> dict[str, object]:
        """Make one verification due now (reopening it if Cal.com never answered); answer it as it is then."""
        async with self.db.transaction() as tx:
            row = await find_verification(tx, verification_id)
            await tx.lock_account(row["account"])
            row = await find_verification(tx, verification_id)  # again, under the account's lock
            if row["status"] == "pending":
                await check_store.due_now(tx, row["seq"], now)
            elif row["status"] == "manual_review" and row["review_reason"] == "calcom_unavailable":
                deadline = schedule.deadline(now, 0, self.settings.check_schedule)
                try:
                    async with tx.savepoint():
                        reopened = await check_store.reopen(tx, row["seq"], now, deadline)
                except UniqueViolation:
                    raise Conflict(
                        f"appointment {row['appointment_id']} has a newer pending verification; recheck that one instead"
                    ) from None
                if not reopened:
                    raise Conflict(f"verification {verification_id} changed meanwhile; read it again")
            else:
                state = row["status"] + (f" ({row['review_reason']})" if row["review_reason"] else "")
                raise Conflict(f"verification {verification_id} is {state}; only {RECHECKABLE} can be rechecked")
            account = await account_store.get(tx, row["account"])
            if account is not None:
                await account_store.lift_backoff(tx, ratelimit.key_name(account.calcom_api_key), now, now + LONGEST_BLOCK)
            view = await load_view(tx, row["seq"])
        log.info(
            "post-sync verification: checking Cal.com again on request",
            extra={
                "event": "verification_recheck",
                "verification_id": verification_id,
                "account": row["account"],
                "appointment_id": row["appointment_id"],
                "was": row["status"],
            },
        )
        return view

    async def recheck_unknown(self, account: str, now: datetime) -> list[str]:
        """Recheck every verification of `account` in review as calcom_unavailable; answer their ids."""
        async with self.db.read() as tx:
            ids = await check_store.in_review_as(tx, account, "calcom_unavailable")
        done = []
        for verification_id in ids:
            try:
                await self.recheck(verification_id, now)
            except Conflict as exc:
                log.warning(
                    "recheck skipped",
                    extra={"event": "verification_recheck_skipped", "verification_id": verification_id, "reason": exc.message},
                )
                continue
            done.append(verification_id)
        return done
