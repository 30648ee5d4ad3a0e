"""Duplicate bookings: listed for an operator, who cancels each in Cal.com and then dismisses it here."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from service.core.views import duplicate_view
from service.errors import NotFound
from service.store.connector import Database
from service.store.queries import duplicates as duplicate_store

log = logging.getLogger("service.app.duplicates")


class Duplicates:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def open_ones(self, account: str | None, limit: int) -> list[dict[str, Any]]:
        async with self.db.read() as tx:
            rows = await duplicate_store.open_ones(tx, account, limit)
        return [dict(duplicate_view(row)) for row in rows]

    async def dismiss(self, uid: str, account: str | None, by: str | None, now: datetime) -> int:
        """Mark a duplicate handled (the guard never cancels anything itself); NotFound when none is open."""
        async with self.db.transaction() as tx:
            changed = await duplicate_store.dismiss(tx, uid, account, by, now)
        if not changed:
            raise NotFound(f"no open duplicate booking {uid[:80]!r}")
        log.info("duplicate booking dismissed", extra={"event": "duplicate_dismissed", "booking_uid": uid, "units": changed})
        return changed
