"""Reading the /status figures in one snapshot (the report itself is `service.core.status`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from service.core.status import DAY, VERDICT_SAMPLE, Figures, alive_bound_seconds, report
from service.settings import Settings
from service.store.connector import Database
from service.store.queries import accounts as account_store
from service.store.queries import counters as counter_store
from service.store.queries import duplicates as duplicate_store
from service.store.queries import pollers as poller_store
from service.store.queries import status as status_store

# A failing spell with no attempt in this long is not reported as going on (nobody is asking Cal.com).
STALE_FAILURE = timedelta(hours=1)


async def collect(db: Database, now: datetime, settings: Settings, *, show_accounts: bool = False) -> dict[str, Any]:
    """Read every figure in one snapshot and build the /status document."""
    alive_bound = alive_bound_seconds(settings.poll_interval_seconds)
    failed_since = now - timedelta(hours=settings.callback_retry_hours) - DAY
    async with db.read() as tx:
        figures = Figures(
            tally=await status_store.tally(tx),
            pending=await status_store.pending(tx, overdue_before=now - timedelta(seconds=alive_bound)),
            review_queue=await status_store.review_queue(tx),
            review_entered_24h=await status_store.review_entered_since(tx, now - DAY),
            verdicts=await status_store.recent_verdicts(tx, VERDICT_SAMPLE),
            outbox=await status_store.outbox_by_state(tx, failed_since),
            accounts=await status_store.accounts(tx),
            broken_accounts=[row["id"] for row in await account_store.broken(tx)],
            pollers=await poller_store.list_all(tx),
            webhooks_24h=await status_store.webhooks_since(tx, now - DAY),
            counters=await counter_store.read_all(tx),
            calcom_failing=await status_store.calcom_failing(
                tx,
                before=now - timedelta(seconds=settings.calcom_alert_seconds),
                recent=now - max(STALE_FAILURE, timedelta(seconds=settings.calcom_alert_seconds)),
            ),
        )
        open_duplicates = await duplicate_store.open_count(tx)
    document = report(
        figures,
        now,
        poll_interval_seconds=settings.poll_interval_seconds,
        callback_retry_hours=settings.callback_retry_hours,
        show_accounts=show_accounts,
    )
    # Bookings Cal.com made twice for one create (GET /api/duplicates): they block staff time until cancelled.
    document["duplicate_bookings"] = {"open": open_duplicates}
    return document
