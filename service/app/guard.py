"""The booking guard's door: who may pass (the account's own Cal.com key), where to (its own base), pacing.

Every request under `/calcom/{account}/` is forwarded unchanged to the account's Cal.com base;
`POST /v2/bookings` goes through `guard_create`. No database transaction is open while Cal.com
works; the key's rate-limit reading is written afterwards, in its own short transaction.
"""

from __future__ import annotations

import hmac
import logging
import random
from collections.abc import Mapping
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from service.clients.forward import Forwarder
from service.clock import Clock
from service.core import ratelimit
from service.core.guard import safe_rest
from service.core.models import ACCOUNT_ID
from service.core.ratelimit import key_name
from service.errors import BadRequest, NotFound, Unauthorized
from service.settings import Settings
from service.store.connector import Database
from service.store.queries import accounts as account_store
from service.store.queries.accounts import Account

log = logging.getLogger("service.app.guard")
PLENTY = 5 * ratelimit.RESERVE  # remaining requests above which a reading is only refreshed every RESTATE
RESTATE = timedelta(seconds=10)


class Guard:
    """Admission, target and pacing for everything under `/calcom/{account}/`."""

    def __init__(self, db: Database, settings: Settings, forwarder: Forwarder, clock: Clock) -> None:
        self.db = db
        self.settings = settings
        self.forwarder = forwarder
        self.clock = clock
        self.rng = random.Random()
        self._paced: dict[str, datetime] = {}

    async def admit(self, account_id: str, authorization: str | None) -> Account:
        """The account, when it exists, is guarded and the bearer is its own Cal.com key (else 404 / 401)."""
        account = None
        if ACCOUNT_ID.match(account_id):
            async with self.db.read() as tx:
                account = await account_store.get(tx, account_id)
        if account is None or not account.guard:
            raise NotFound(f"unknown account {account_id[:64]!r} (or its booking guard is switched off)")
        scheme, _, token = (authorization or "").strip().partition(" ")
        presented = token.strip().encode("utf-8", "replace")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented, account.calcom_api_key.encode("utf-8")):
            log.warning("guard request refused: wrong or missing bearer", extra={"event": "guard_unauthorized", "account": account.id})
            raise Unauthorized("Authorization: Bearer <the account's Cal.com API key> is required; nothing was forwarded")
        return account

    def target(self, account: Account, raw_rest: str, query: str) -> str:
        """The Cal.com URL for the rest of the path: under the account's base, or a 400."""
        if not safe_rest(raw_rest):
            raise BadRequest("the path would leave the account's Cal.com API base; nothing was forwarded")
        base = (account.calcom_api_base or self.settings.calcom_api_base).rstrip("/")
        url = f"{base}/{raw_rest}" + (f"?{query}" if query else "")
        wanted, got = urlsplit(base + "/"), urlsplit(url)
        if (got.scheme, got.netloc) != (wanted.scheme, wanted.netloc) or not got.path.startswith(wanted.path):
            raise BadRequest("the path would leave the account's Cal.com API base; nothing was forwarded")
        return url

    async def note_pace(self, account: Account, status: int, headers: Mapping[str, str]) -> None:
        """Feed an answer's rate-limit reading (and a 429's block) into the key's shared pace."""
        now = self.clock()
        remaining, reset_at = ratelimit.parse_rate_headers(headers, now)
        if remaining is None and status != 429:
            return
        hashed = key_name(account.calcom_api_key)
        # A reading with plenty left changes no pause: written now and then, not once per request.
        last = self._paced.get(hashed)
        if status != 429 and remaining is not None and remaining > PLENTY and last is not None and now - last < RESTATE:
            return
        self._paced[hashed] = now
        paused = ratelimit.pause_after_429(now, self.rng) if status == 429 else None
        try:
            async with self.db.transaction() as tx:
                await account_store.set_pace(tx, hashed, paused_until=paused, remaining=remaining, reset_at=reset_at, now=now)
        except Exception as exc:  # pacing is advice; the answer already went out
            log.warning("guard could not store the key's pace", extra={"event": "guard_pace_failed", "error": type(exc).__name__})
