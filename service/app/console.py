"""What the operator console reads and does: the review queue, evidence, accounts, dashboard, audited changes.

Reads never change anything; every change goes through the same use case as the API (resolve,
account patch) and is written to the audit log with the operator's name.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from service.app.accounts import Accounts
from service.app.intake import Intake, find_verification, load_view
from service.app.operators import Operators
from service.core import dashboard
from service.core.evidence import evidence, window
from service.core.models import ResolveIn
from service.core.responses import EVIDENCE
from service.store.connector import Database
from service.store.queries import accounts as account_store
from service.store.queries import console as console_store
from service.store.queries import duplicates as duplicate_store
from service.store.queries import verifications as verification_store

QUEUE_LIMIT = 200


class Console:
    def __init__(self, db: Database, intake: Intake, accounts: Accounts, operators: Operators, default_tolerance: int) -> None:
        self.db = db
        self.intake = intake
        self.accounts = accounts
        self.operators = operators
        self.default_tolerance = default_tolerance

    async def evidence(self, verification_id: str) -> dict[str, Any]:
        """Per staff-required phase, the stored observations near it and why each did or did not match."""
        async with self.db.read() as tx:
            row = await find_verification(tx, verification_id)
            account = await account_store.get(tx, row["account"])
            tolerance = account.match_tolerance_seconds if account else self.default_tolerance
            phases = (await verification_store.phases_of(tx, [row["seq"]]))[row["seq"]]
            seen: dict[tuple[str, str], dict[str, Any]] = {}
            for phase in phases:
                if phase["staff_required"]:
                    lo, hi = window(phase["start_at"], tolerance)
                    for obs in await console_store.evidence_near(tx, row["account"], lo, hi, str(row["appointment_id"])):
                        seen.setdefault((obs["uid"], obs["seat"]), obs)
        found = evidence(row, phases, list(seen.values()), tolerance)
        return cast(dict[str, Any], EVIDENCE.validate_python(found))

    async def detail(self, verification_id: str) -> dict[str, Any]:
        """The verification as the API shows it, with its callback deliveries and timeline facts."""
        view = await self.intake.get(verification_id)
        async with self.db.read() as tx:
            row = await verification_store.by_id(tx, verification_id)
            assert row is not None
            deliveries = await console_store.deliveries(tx, row["seq"])
            account = await account_store.get(tx, row["account"])
        return {"view": view, "row": row, "deliveries": deliveries, "account": account}

    async def queue(self, now: datetime, *, account: str | None, reason: str | None, older_than_hours: float | None) -> dict[str, Any]:
        older_than = now - timedelta(hours=older_than_hours) if older_than_hours else now + timedelta(days=1)
        async with self.db.read() as tx:
            rows = await console_store.queue(tx, account=account, reason=reason, older_than=older_than, limit=QUEUE_LIMIT)
            phases = await verification_store.phases_of(tx, [r["seq"] for r in rows])
            counts = await console_store.queue_counts(tx, account)
        for row in rows:
            row["phases"] = phases.get(row["seq"], [])
            row["age_seconds"] = max((now - row["review_started_at"]).total_seconds(), 0.0)
        return {"items": rows, "counts": counts, "total": sum(counts.values()), "limit": QUEUE_LIMIT}

    async def resolve(self, operator: str, verification_id: str, request: ResolveIn, now: datetime) -> dict[str, Any]:
        """Resolve as the API does, with the operator's name recorded on the verification and in the audit log."""
        view = await self.intake.resolve(verification_id, request, now, resolved_by=operator)
        detail = {"outcome": request.outcome, "bookings": dict(request.bookings or {}), "note": request.note}
        await self.operators.audit(now, operator, "verification_resolved", verification_id, detail)
        return view

    async def accounts_overview(self) -> list[dict[str, Any]]:
        async with self.db.read() as tx:
            accounts = await account_store.list_all(tx)
            open_counts = await console_store.open_by_account(tx)
            out = []
            for account in accounts:
                out.append(
                    {
                        "account": account,
                        "last_webhook": await console_store.last_webhook(tx, account.id),
                        "pending": open_counts.get(account.id, {}).get("pending", 0),
                        "review": open_counts.get(account.id, {}).get("manual_review", 0),
                    }
                )
        return out

    async def account_ids(self) -> list[str]:
        async with self.db.read() as tx:
            return [account.id for account in await account_store.list_all(tx)]

    async def change_account(self, operator: str, account_id: str, request: Any, now: datetime) -> Any:
        """Patch an account as the API does; the audit names the fields changed, never a value of a secret."""
        saved = await self.accounts.patch(account_id, request, now, actor=operator)
        return saved.account

    async def dashboard(self, now: datetime) -> list[dashboard.Day]:
        since = datetime.combine((now - timedelta(days=dashboard.DAYS - 1)).date(), datetime.min.time(), tzinfo=now.tzinfo)
        async with self.db.read() as tx:
            rows = await console_store.history(tx, since)
        return dashboard.days(rows, now)

    async def duplicates(self, limit: int = 200) -> Sequence[dict[str, Any]]:
        async with self.db.read() as tx:
            return await duplicate_store.open_ones(tx, None, limit)

    async def load_view(self, seq: int) -> dict[str, Any]:
        async with self.db.read() as tx:
            return await load_view(tx, seq)
