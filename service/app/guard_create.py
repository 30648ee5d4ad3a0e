"""`POST /v2/bookings` through the booking guard: tagged, idempotent, and answered with the truth.

After any answer but a 2xx (or none at all) the guard finds out, within GUARD_TRUTH_SECONDS,
whether Cal.com made the booking anyway: first the observations tagged with this create's
verifier_ref (the webhooks usually arrive before the error does), then one targeted
`GET /v2/bookings`. Found: 201 with Cal.com's own body. A complete answer without it after
Cal.com's own error: that error, unchanged. Anything else: 502 and a pending verification.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from pydantic import ValidationError

from service.app.guard import Guard
from service.app.intake import Intake
from service.clients.forward import Answer, Unreachable
from service.core import guard as rules
from service.core.api_bookings import observations_from_api
from service.core.models import VerificationIn
from service.core.tallies import GUARD_REQUESTS, Tally
from service.errors import BadRequest, Conflict, ServiceError
from service.store.queries import guard as guard_store
from service.store.queries import observations as observation_store
from service.store.queries.accounts import Account

log = logging.getLogger("service.app.guard")
API_VERSION = "2024-08-13"
RETENTION = timedelta(hours=24)
PRUNE_EVERY = timedelta(minutes=1)
DROPPED = frozenset({"content-length", "content-encoding"})  # the body is re-sent whole and decoded


class KeyReused(ServiceError):
    status_code = 422
    code = "idempotency_key_reused"


class KeyInFlight(ServiceError):
    status_code = 409
    code = "idempotency_key_in_flight"


@dataclass
class Outcome:
    """What the platform hears."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    final: bool = False  # replayable for the same Idempotency-Key
    verification_id: str | None = None


@dataclass
class Attempt:
    ref: str
    body: bytes  # tagged, as forwarded
    create: dict[str, Any]
    first_at: datetime
    retry: bool = False
    deadline: float = 0.0  # loop time by which the truth must be known


def new_ref() -> str:
    return "vr_" + secrets.token_urlsafe(15)


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _passed(answer: Answer) -> Outcome:
    headers = {k: v for k, v in answer.headers if k.lower() not in DROPPED}
    return Outcome(answer.status, answer.body, headers, final=200 <= answer.status < 300 or 400 <= answer.status < 500)


class BookingCreates:
    def __init__(self, guard: Guard, intake: Intake, tally: Tally) -> None:
        self.guard = guard
        self.intake = intake
        self.tally = tally
        self.settings = guard.settings
        self._pruned_at: datetime | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def create(self, account: Account, url: str, headers: list[tuple[str, str]], body: bytes, key: str | None) -> Outcome:
        if key is not None and not rules.idempotency_key_valid(key):
            raise BadRequest("Idempotency-Key: 1 to 255 printable ASCII characters")
        create = rules.parse_create(body)
        if create is None:
            return await self._untagged(account, url, headers, body, "not-json")
        ref = new_ref()
        tagged, why = rules.tagged_create(create, ref)
        if tagged is None:
            return await self._untagged(account, url, headers, body, why or "untagged")
        attempt = Attempt(ref, _json(tagged), tagged, self.guard.clock())
        if key is not None:
            claimed = await self._claim(account, key, rules.fingerprint(body), attempt)
            if isinstance(claimed, Outcome):
                self.tally.add(GUARD_REQUESTS, "replayed")
                return claimed
            attempt = claimed
        try:
            outcome = await self._run(account, url, headers, attempt)
        except BaseException:
            if key is not None:
                await self._finish(attempt.ref, Outcome(502, b"", final=False))
            raise
        if key is not None:
            await self._finish(attempt.ref, outcome)
        return outcome

    async def _run(self, account: Account, url: str, headers: list[tuple[str, str]], attempt: Attempt) -> Outcome:
        loop = asyncio.get_running_loop()
        if attempt.retry:
            # The key fixes the verifier_ref: an earlier attempt's booking is this create's booking.
            attempt.deadline = loop.time() + self.settings.guard_truth_seconds
            data, complete, stored = await self._look(account, attempt, attempt.deadline)
            if data is not None:
                return await self._recovered(account, attempt, data, "earlier-attempt", "an earlier attempt", stored=stored)
            if not complete:
                return await self._unknown(account, attempt, "retry: Cal.com could not be asked about the earlier attempt")
        answer: Answer | None = None
        try:
            answer = await self.guard.forwarder.send("POST", url, headers, attempt.body, self.settings.guard_calcom_timeout_seconds)
        except Unreachable as exc:
            why, label = str(exc), "timeout"  # a broken connection may have carried the create all the same
        if answer is not None:
            self._pace(account, answer)
            if 200 <= answer.status < 300:
                self.tally.add(GUARD_REQUESTS, "created")
                return _passed(answer)
            why, label = f"Cal.com HTTP {answer.status}", str(answer.status)
        attempt.deadline = loop.time() + self.settings.guard_truth_seconds
        data, complete, stored = await self._look(account, attempt, attempt.deadline)
        if data is not None:
            return await self._recovered(account, attempt, data, label, why, stored=stored)
        if answer is not None and complete:
            self.tally.add(GUARD_REQUESTS, "refused")
            return _passed(answer)
        return await self._unknown(account, attempt, why)

    async def _untagged(self, account: Account, url: str, headers: list[tuple[str, str]], body: bytes, why: str) -> Outcome:
        try:
            answer = await self.guard.forwarder.send("POST", url, headers, body, self.settings.guard_calcom_timeout_seconds)
        except Unreachable as exc:
            return Outcome(
                502,
                _json({"status": "error", "error": {"code": "calcom_unreachable", "message": str(exc)}}),
                {"content-type": "application/json", "x-verifier-untagged": why},
            )
        outcome = _passed(answer)
        outcome.headers["x-verifier-untagged"] = why
        self.tally.add(GUARD_REQUESTS, "untagged")
        return outcome

    # --- finding the truth --------------------------------------------------------------------

    async def _look(self, account: Account, attempt: Attempt, deadline: float) -> tuple[Any | None, bool, bool]:
        """This create's booking data if Cal.com made it, whether the search was complete, and whether it is stored."""
        loop = asyncio.get_running_loop()
        try:
            # The calls inside end by the deadline themselves; this bounds the rest (the database).
            return await asyncio.wait_for(self._search(account, attempt, deadline), max(0.0, deadline - loop.time()) + 1.0)
        except TimeoutError:
            return None, False, False

    async def _search(self, account: Account, attempt: Attempt, deadline: float) -> tuple[Any | None, bool, bool]:
        await self.intake.match_backlog(account.id, self.guard.clock())  # webhooks answered but not yet matched: their bookings first
        async with self.guard.db.read() as tx:
            rows = await guard_store.tagged(tx, account.id, attempt.ref)
        stored = rules.from_observations(rows, attempt.create)
        if stored is not None and rules.recurrence(attempt.create) is None:
            return stored, True, True  # known from a webhook; Cal.com's own item is read while recording (`_recovered`)
        items, complete = await self._ask(account, attempt, deadline)
        found = rules.found_in(items, attempt.ref, attempt.create) if items else None
        if found is not None:
            return found, True, False
        if stored is not None:
            return stored, True, True
        return None, complete, False

    async def _get_one(self, account: Account, uid: str, deadline: float) -> dict[str, Any] | None:
        base = (account.calcom_api_base or self.settings.calcom_api_base).rstrip("/")
        headers = [("authorization", f"Bearer {account.calcom_api_key}"), ("cal-api-version", API_VERSION)]
        remaining = max(0.01, deadline - asyncio.get_running_loop().time())
        try:
            answer = await self.guard.forwarder.send("GET", f"{base}/v2/bookings/{quote(uid, safe='')}", headers, b"", remaining)
        except Unreachable:
            return None
        self._pace(account, answer)
        try:
            page = json.loads(answer.body) if answer.status == 200 else None
        except ValueError:
            return None
        data = page.get("data") if isinstance(page, dict) else None
        return data if isinstance(data, dict) and data.get("uid") == uid else None

    def _pace(self, account: Account, answer: Answer) -> None:
        task = asyncio.get_running_loop().create_task(self.guard.note_pace(account, answer.status, dict(answer.headers)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ask(self, account: Account, attempt: Attempt, deadline: float) -> tuple[list[Any], bool]:
        """One targeted `GET /v2/bookings` (the tag is matched here: Cal.com has no metadata filter)."""
        base = (account.calcom_api_base or self.settings.calcom_api_base).rstrip("/")
        headers = [("authorization", f"Bearer {account.calcom_api_key}"), ("cal-api-version", API_VERSION)]
        params = rules.search_params(attempt.create, attempt.first_at)
        remaining = max(0.01, deadline - asyncio.get_running_loop().time())
        try:
            answer = await self.guard.forwarder.send("GET", base + "/v2/bookings", headers, b"", remaining, params=params)
        except Unreachable:
            return [], False
        self._pace(account, answer)
        try:
            page = json.loads(answer.body) if answer.status == 200 else None
        except ValueError:
            page = None
        if not isinstance(page, dict) or not isinstance(page.get("data"), list):
            return [], False
        pagination = page.get("pagination")
        more = isinstance(pagination, dict) and pagination.get("hasNextPage") is True
        return page["data"], not more

    async def _recovered(self, account: Account, attempt: Attempt, data: Any, label: str, why: str, *, stored: bool = False) -> Outcome:
        if stored and isinstance(data, dict):
            # Cal.com's own item for the answer (else the one rebuilt from the webhook), read while the record is written.
            deadline = attempt.deadline or asyncio.get_running_loop().time() + self.settings.guard_truth_seconds
            item, view = await asyncio.gather(
                self._get_one(account, data["uid"], deadline), self._record(account, attempt, f"{why}, but Cal.com made the booking")
            )
            if item is not None:
                data = {**item, "seatUid": data["seatUid"]} if data.get("seatUid") else item
            return self._found(account, attempt, data, label, view)
        now = self.guard.clock()
        items = data if isinstance(data, list) else [data]
        observations = [o for item in items for o in observations_from_api(item, now) if o.verifier_ref == attempt.ref]
        if observations and not stored:  # what a webhook already told us is stored
            async with self.guard.db.transaction() as tx:
                await observation_store.upsert(tx, account.id, observations, now)
        view = await self._record(account, attempt, f"{why}, but Cal.com made the booking")
        return self._found(account, attempt, data, label, view)

    def _found(self, account: Account, attempt: Attempt, data: Any, label: str, view: dict[str, Any] | None) -> Outcome:
        self.tally.add(GUARD_REQUESTS, "recovered")
        log.info(
            "booking guard: Cal.com made the booking despite the error",
            extra={
                "event": "guard_recovered",
                "account": account.id,
                "verifier_ref": attempt.ref,
                "answer": label,
                "booking_uid": rules.first_uid(data),
                "verification_id": view["id"] if view else None,
            },
        )
        headers = {"content-type": "application/json", "x-verifier-recovered": label}
        if view:
            headers["x-verification-id"] = view["id"]
        return Outcome(201, _json({"status": "success", "data": data}), headers, final=True, verification_id=view["id"] if view else None)

    async def _unknown(self, account: Account, attempt: Attempt, why: str) -> Outcome:
        view = await self._record(account, attempt, f"{why}; outcome unknown")
        if view is not None and view["status"] == "verified":
            async with self.guard.db.read() as tx:
                rows = await guard_store.tagged(tx, account.id, attempt.ref)
            data = rules.from_observations(rows, attempt.create)
            if data is not None:
                return await self._recovered(account, attempt, data, "timeout", why, stored=True)
        self.tally.add(GUARD_REQUESTS, "unknown")
        message = "Cal.com's answer does not say whether the booking was made; the verification will tell"
        body: dict[str, Any] = {"status": "error", "error": {"code": "calcom_outcome_unknown", "message": message}}
        headers = {"content-type": "application/json"}
        if view is not None:
            body["verification_id"] = view["id"]
            headers["x-verification-id"] = view["id"]
        log.warning(
            "booking guard: outcome of a create unknown",
            extra={"event": "guard_unknown", "account": account.id, "verifier_ref": attempt.ref, "reason": why[:200]},
        )
        return Outcome(502, _json(body), headers, final=False, verification_id=view["id"] if view else None)

    async def _record(self, account: Account, attempt: Attempt, why: str) -> dict[str, Any] | None:
        wanted = rules.verification_request(account.id, attempt.ref, attempt.create, why)
        if wanted is None:
            return None
        try:
            request = VerificationIn.model_validate_json(json.dumps(wanted))
        except ValidationError:
            wanted["phases"][0].pop("attendee_email", None)  # an address Cal.com would refuse as well
            request = VerificationIn.model_validate_json(json.dumps(wanted))
        return (await self.intake.record_for_guard(request, attempt.ref, self.guard.clock())).view

    # --- Idempotency-Key ----------------------------------------------------------------------

    async def _claim(self, account: Account, key: str, fingerprint: str, attempt: Attempt) -> Attempt | Outcome:
        now = self.guard.clock()
        stale = now - timedelta(seconds=self.settings.guard_calcom_timeout_seconds + 2 * self.settings.guard_truth_seconds + 30)
        async with self.guard.db.transaction() as tx:
            if self._pruned_at is None or now - self._pruned_at > PRUNE_EVERY:
                self._pruned_at = now
                await guard_store.prune(tx, now)
            row = {
                "verifier_ref": attempt.ref,
                "account": account.id,
                "key": key,
                "fingerprint": fingerprint,
                "request": attempt.body.decode("utf-8"),
            }
            if await guard_store.start(tx, row, now, now + RETENTION):
                return attempt
            found = await guard_store.by_key(tx, account.id, key)
            if found is None:
                raise KeyInFlight("a request with this Idempotency-Key is being processed; retry shortly")
            if found["fingerprint"] != fingerprint:
                raise KeyReused("this Idempotency-Key was used with a different request body")
            if found["state"] == "final":
                headers = {**json.loads(found["response_headers"] or "{}"), "idempotent-replayed": "true"}
                return Outcome(found["status"], (found["response_body"] or "").encode("utf-8"), headers, final=True)
            if found["state"] == "in_flight" and found["updated_at"] > stale:
                raise KeyInFlight("a request with this Idempotency-Key is being processed; retry shortly")
            if not await guard_store.take(tx, found["verifier_ref"], found["state"], found["updated_at"], now):
                raise KeyInFlight("a request with this Idempotency-Key is being processed; retry shortly")
        earlier = json.loads(found["request"])
        return Attempt(found["verifier_ref"], found["request"].encode("utf-8"), earlier, found["created_at"], retry=True)

    async def _finish(self, ref: str, outcome: Outcome) -> None:
        state = "final" if outcome.final else "open"
        try:
            async with self.guard.db.transaction() as tx:
                await guard_store.finish(
                    tx, ref, state, outcome.status, outcome.body, outcome.headers, outcome.verification_id, self.guard.clock()
                )
        except Exception as exc:
            log.error(
                "booking guard: the answer for an Idempotency-Key was not stored",
                extra={"event": "guard_finish_failed", "error": type(exc).__name__},
            )
            if state == "final":
                raise Conflict("the answer could not be stored; retry with the same Idempotency-Key") from None
