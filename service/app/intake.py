"""Recording failed syncs, reading verifications, and closing them by hand."""

from __future__ import annotations

import base64
import binascii
import builtins
import logging
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from service.app.apply import Applied, apply
from service.app.group import evidence_tags, guard_appointment
from service.app.matcher import match_backlog, settle_changes, take_backlog
from service.app.notify import Notifier
from service.app.settle import settle_guarded
from service.core import plan, resolution, schedule
from service.core.models import ResolveIn, VerificationIn
from service.core.views import render
from service.errors import Conflict, NotFound, ValidationFailed
from service.settings import Settings
from service.store.connector import Database, Tx
from service.store.queries import accounts as account_store
from service.store.queries import claims as claim_store
from service.store.queries import duplicates as duplicate_store
from service.store.queries import events as event_store
from service.store.queries import observations as observation_store
from service.store.queries import verifications as verification_store

log = logging.getLogger("service.app.intake")
PHASE_WINDOW_WITHOUT_END = timedelta(hours=12)
VERIFICATION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class Recorded:
    created: bool
    view: dict[str, Any]


async def load_view(tx: Tx, seq: int, written: Applied | None = None) -> dict[str, Any]:
    """The API's view of one verification; `written`: what this transaction just wrote (not read again)."""
    if written is not None and seq in written.rows:
        rows, phases = [written.rows[seq]], {seq: written.phases[seq]}
    else:
        rows = await verification_store.by_seqs(tx, [seq])
        phases = await verification_store.phases_of(tx, [seq])
    callbacks = await verification_store.callbacks_of(tx, [seq])
    duplicates = await duplicate_store.of_verifications(tx, [seq])
    return render(rows[0], phases[seq], callbacks.get(seq), duplicates[seq])


async def load_views(tx: Tx, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seqs = [row["seq"] for row in rows]
    phases = await verification_store.phases_of(tx, seqs)
    callbacks = await verification_store.callbacks_of(tx, seqs)
    duplicates = await duplicate_store.of_verifications(tx, seqs)
    return [render(row, phases[row["seq"]], callbacks.get(row["seq"]), duplicates[row["seq"]]) for row in rows]


async def find_verification(tx: Tx, verification_id: str) -> dict[str, Any]:
    """The stored row of a verification; NotFound for an id that is malformed or unknown."""
    row = await verification_store.by_id(tx, verification_id) if VERIFICATION_ID.match(verification_id) else None
    if row is None:
        raise NotFound(f"no verification {verification_id[:80]!r}")
    return row


class Intake:
    def __init__(self, db: Database, settings: Settings, notifier: Notifier) -> None:
        self.db = db
        self.settings = settings
        self.notifier = notifier

    async def record(self, request: VerificationIn, now: datetime) -> Recorded:
        """Record a failed sync; matched against what webhooks already told us, inside this call."""
        fingerprint = request.fingerprint()
        resolved: list[str] = []
        async with self.db.transaction() as tx:
            await tx.lock_account(request.account)
            account = await account_store.get(tx, request.account)
            if account is None:
                raise NotFound(f"unknown account {request.account!r}: create it first with PUT /api/accounts/{request.account}")
            latest = await verification_store.latest_for_appointment(tx, account.id, str(request.appointment_id))
            if latest is not None and latest["fingerprint"] == fingerprint:
                return Recorded(False, await load_view(tx, latest["seq"]))
            if latest is not None and latest["status"] == "pending":
                raise Conflict(
                    f"appointment {request.appointment_id} already has a pending verification ({latest['id']}) "
                    "with different phases; wait for its verdict or resolve it first"
                )
            # Webhooks already answered but not matched yet: their bookings count for this failure too,
            # and are settled with it (one decision for everything they concern, this failure included).
            backlog = await take_backlog(tx, account.id, now)
            enabled = self.settings.post_sync_verification and account.enabled
            seq, verification_id = await self._insert(tx, request, fingerprint, now, enabled)
            if enabled:
                # Guarded: the failure is recorded even when deciding on it fails (the first check retries).
                settled = await settle_guarded(
                    tx,
                    account,
                    now,
                    mode="instant",
                    trigger="intake",
                    settle_seconds=self.settings.settle_seconds,
                    seqs=[seq],
                    near=[p.start for p in request.phases if p.staff_required] + [o.start for _, o in backlog],
                    tags=[str(request.appointment_id), *evidence_tags(o for _, o in backlog)],
                )
                written = settled.applied
            else:
                resolved += await settle_changes(tx, backlog, now, settle_seconds=self.settings.settle_seconds)
                rows = await verification_store.by_seqs(tx, [seq])
                phases = await verification_store.phases_of(tx, [seq])
                written = await apply(tx, account, plan.disabled(rows[0], phases[seq]), now)
            resolved += written.resolved
            view = await load_view(tx, seq, written)
        self.notifier.resolved(resolved)
        log.info(
            "post-sync verification: checking if bookings exist despite error",
            extra={
                "event": "verification_recorded",
                "verification_id": view["id"],
                "account": request.account,
                "appointment_id": str(request.appointment_id),
                "status": view["status"],
                "phases": len(request.phases),
            },
        )
        return Recorded(True, view)

    async def record_for_guard(self, request: VerificationIn, verifier_ref: str, now: datetime) -> Recorded:
        """The booking guard's record of one create (keyed by its verifier_ref, not by the appointment).

        Settled at once from what is stored: a create whose tagged booking is known is verified here
        (`resolved_via` guard); one whose outcome is unknown stays pending for the usual checks.
        With verification switched off (everywhere or for the account) it is recorded as `record`
        records it then: straight to manual review, never checked.
        """
        resolved: list[str] = []
        async with self.db.transaction() as tx:
            await tx.lock_account(request.account)
            account = await account_store.get(tx, request.account)
            if account is None:
                raise NotFound(f"unknown account {request.account!r}")
            resolved = await match_backlog(tx, account.id, now, settle_seconds=self.settings.settle_seconds)
            enabled = self.settings.post_sync_verification and account.enabled
            existing = await verification_store.by_ref(tx, account.id, verifier_ref)
            if existing is not None:
                seq, created = existing["seq"], False
            else:
                seq, _ = await self._insert(tx, request, request.fingerprint(), now, enabled, verifier_ref=verifier_ref)
                created = True
            if enabled:
                settled = await settle_guarded(
                    tx,
                    account,
                    now,
                    mode="instant",
                    trigger="guard",
                    settle_seconds=self.settings.settle_seconds,
                    seqs=[seq],
                    tags=[str(request.appointment_id), guard_appointment(verifier_ref)],
                )
                written: Applied | None = settled.applied
            elif created:
                rows = await verification_store.by_seqs(tx, [seq])
                phases = await verification_store.phases_of(tx, [seq])
                written = await apply(tx, account, plan.disabled(rows[0], phases[seq]), now)
            else:
                written = None
            resolved += written.resolved if written else []
            view = await load_view(tx, seq, written)
        self.notifier.resolved(resolved)
        return Recorded(created, view)

    async def match_backlog(self, account: str, now: datetime) -> None:
        """Match the account's webhooks answered but not matched yet, if there are any (the guard, before it reads bookings)."""
        async with self.db.read() as tx:
            if not await event_store.unmatched_of(tx, account, limit=1):
                return
        async with self.db.transaction() as tx:
            # As the matcher's: all this writes follows from events stored durably, so no wait for the disk.
            await tx.lock_accounts([account], commit_waits=False)
            resolved = await match_backlog(tx, account, now, settle_seconds=self.settings.settle_seconds)
        self.notifier.resolved(resolved)

    async def _insert(
        self, tx: Tx, request: VerificationIn, fingerprint: str, now: datetime, enabled: bool, *, verifier_ref: str | None = None
    ) -> tuple[int, str]:
        required = [p for p in request.phases if p.staff_required]
        window_start = min(p.start for p in required)
        window_end = max((p.end or p.start + PHASE_WINDOW_WITHOUT_END) for p in required)
        deadline = schedule.deadline(now, self.settings.settle_seconds, self.settings.check_schedule)
        verification_id = str(uuid.uuid4())
        row = {
            "id": verification_id,
            "account": request.account,
            "appointment_id": str(request.appointment_id),
            "service": request.service,
            "sync_error": request.sync_error,
            "fingerprint": fingerprint,
            "status": "pending",
            "review_reason": None,
            "resolved_via": None,
            "resolved_at": None,
            "window_start_at": window_start,
            "window_end_at": window_end,
            "next_check_at": now + timedelta(seconds=self.settings.settle_seconds) if enabled else None,
            "deadline_at": deadline,
            "now": now,
            "verifier_ref": verifier_ref,
        }
        phases = [
            {
                "key": p.key,
                "position": position,
                "account": request.account,
                "start_at": p.start,
                "end_at": p.end,
                "event_type_id": p.event_type_id,
                "host_email": p.host_email,
                "attendee_email": p.attendee_email,
                "attendee_phone": p.attendee_phone,
                "staff_required": p.staff_required,
                "active": enabled and p.staff_required,
                "status": "pending" if p.staff_required else "not_required",
            }
            for position, p in enumerate(request.phases)
        ]
        return await verification_store.insert(tx, row, phases), verification_id

    async def get(self, verification_id: str) -> dict[str, Any]:
        async with self.db.read() as tx:
            row = await find_verification(tx, verification_id)
            return (await load_views(tx, [row]))[0]

    async def status(self, verification_id: str) -> str | None:
        async with self.db.read() as tx:
            found = await verification_store.statuses(tx, [verification_id])
        return found.get(verification_id)

    async def list(self, *, limit: int, cursor: str | None, **filters: Any) -> dict[str, Any]:
        before = decode_cursor(cursor) if cursor else None
        async with self.db.read() as tx:
            rows = await verification_store.list_page(tx, limit=limit + 1, cursor=before, **filters)
            items = await load_views(tx, rows[:limit])
        next_cursor = encode_cursor(rows[limit - 1]["seq"]) if len(rows) > limit else None
        return {"items": items, "next_cursor": next_cursor}

    async def resolve(self, verification_id: str, request: ResolveIn, now: datetime, *, resolved_by: str | None = None) -> dict[str, Any]:
        """An operator closes a pending or manual-review verification (status `resolved`)."""
        async with self.db.read() as tx:
            found = await find_verification(tx, verification_id)
        async with self.db.transaction() as tx:
            await tx.lock_account(found["account"])
            row = await verification_store.by_id(tx, verification_id)
            assert row is not None
            if row["status"] not in ("pending", "manual_review"):
                raise Conflict(f"verification {verification_id} is already {row['status']}; only pending or manual_review can be resolved")
            account = await account_store.get(tx, row["account"])
            if account is None:
                raise NotFound(f"unknown account {row['account']!r}")
            phases = (await verification_store.phases_of(tx, [row["seq"]]))[row["seq"]]
            named = await self._named_bookings(tx, row, phases, request)
            held = await claim_store.claims_of(tx, row["seq"])
            decided = resolution.operator(row, phases, held, named, request.outcome, request.note, resolved_by)
            view = await load_view(tx, row["seq"], await apply(tx, account, decided, now))
        self.notifier.resolved([verification_id])
        return view

    async def _named_bookings(
        self, tx: Tx, row: dict[str, Any], phases: builtins.list[dict[str, Any]], request: ResolveIn
    ) -> dict[str, plan.BookingRef]:
        """The booking units an operator names, as stored (a uid we never saw is taken as given)."""
        if not request.bookings:
            return {}
        by_key = {p["key"]: p for p in phases}
        unknown = sorted(set(request.bookings) - {k for k, p in by_key.items() if p["staff_required"]})
        if unknown:
            raise ValidationFailed(
                f"bookings names phases this verification has no staff-required phase for: {', '.join(unknown)}",
                details=[{"field": f"bookings.{key}", "message": "no such staff-required phase"} for key in unknown],
            )
        named: dict[str, plan.BookingRef] = {}
        for key, text in sorted(request.bookings.items()):
            uid, seat, known = await _operator_unit(tx, row["account"], key, text, by_key[key])
            named[key] = plan.BookingRef(
                uid,
                seat,
                known["booking_id"] if known else None,
                known["start_at"] if known else None,
                known["source"] if known else "operator",
            )
        return named


async def _operator_unit(tx: Tx, account: str, key: str, named: str, phase: dict[str, Any]) -> tuple[str, str, dict[str, Any] | None]:
    """The stored unit an operator's booking names: (uid, seat, its stored row or None).

    A seated booking's seat is its own unit: named as "<uid>/<seat uid>", or else the seat whose
    attendee is the phase's attendee_email. A booking we never saw is taken as named.
    """
    uid, _, seat = named.partition("/")
    units = await observation_store.find(tx, account, uid)
    seats = [u for u in units if u["seat"]]
    if seat:
        chosen = [u for u in seats if u["seat"] == seat]
        if seats and not chosen:
            raise _seat_needed(key, uid, seats, f"booking {uid} has no seat {seat}")
    elif seats:
        # A "" unit still "exists" beside seats only while its attendee's seat id is unknown.
        email = (phase["attendee_email"] or "").lower()
        unmerged = [u for u in units if not u["seat"] and u["state"] == "exists"]
        chosen = [u for u in seats + unmerged if email and email in u["attendees"]]
        if len(chosen) > 1:
            chosen = [u for u in chosen if u["state"] == "exists"]
        if len(chosen) != 1:
            why = f"booking {uid} is a seated booking and the phase's attendee_email does not single out one of its seats"
            raise _seat_needed(key, uid, seats, why)
        seat = chosen[0]["seat"]
    else:
        chosen = units
    found = chosen or units
    return uid, seat, found[0] if found else None


def _seat_needed(key: str, uid: str, seats: list[dict[str, Any]], why: str) -> ValidationFailed:
    choices = ", ".join(sorted(f"{uid}/{u['seat']}" for u in seats))
    message = f'{why}; name the seat as "<booking uid>/<seat uid>", one of: {choices}'
    return ValidationFailed(f"bookings.{key}: {message}", details=[{"field": f"bookings.{key}", "message": message}])


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, _, value = text.partition(":")
        if version != "v1" or not (value.isascii() and value.isdigit()):
            raise ValueError
        return int(value)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationFailed(
            "cursor: not a cursor this API handed out", details=[{"field": "cursor", "message": "invalid cursor"}]
        ) from None
