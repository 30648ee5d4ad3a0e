"""Operators of the console (named people with Argon2-hashed passwords) and the audit log."""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from service.errors import NotFound, ValidationFailed
from service.store.connector import Database, Tx
from service.store.queries import console as console_store

log = logging.getLogger("service.app.operators")
OPERATOR_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD = 10
MAX_PASSWORD = 1024
_HASHER = PasswordHasher()
# Verified when the name is unknown, so an unknown name costs what a wrong password costs.
_DUMMY_HASH = _HASHER.hash("not a password of anyone")


def valid_name(name: str) -> str | None:
    """Why a name cannot be an operator's, or None."""
    if not OPERATOR_NAME.match(name):
        return "an operator name is 1 to 64 letters, digits or . _ @ -, starting with a letter or digit"
    return None


class SignInThrottle:
    """Failed sign-ins are slowed down: each failure in a row for a name (or an address) doubles the wait."""

    def __init__(self, *, base_seconds: float = 0.25, max_seconds: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.base = base_seconds
        self.max = max_seconds
        self.clock = clock
        self.failures: dict[str, tuple[int, float]] = {}

    def delay(self, *keys: str) -> float:
        """Seconds to wait before answering a failed attempt under these keys (after recording it)."""
        now = self.clock()
        worst = 0
        for key in keys:
            count, last = self.failures.get(key, (0, now))
            count = 0 if now - last > 900 else count  # forgotten after a quiet quarter of an hour
            self.failures[key] = (count + 1, now)
            worst = max(worst, count + 1)
        if len(self.failures) > 10_000:
            self.failures.clear()
        return float(min(self.base * 2 ** (worst - 1), self.max))

    def succeeded(self, *keys: str) -> None:
        for key in keys:
            self.failures.pop(key, None)


class Operators:
    """Adding, listing and removing operators; checking a sign-in; writing and reading the audit log."""

    def __init__(self, db: Database, throttle: SignInThrottle | None = None) -> None:
        self.db = db
        self.throttle = throttle or SignInThrottle()

    async def add(self, name: str, password: str, now: datetime) -> bool:
        """Create an operator or give one a new password; True when created."""
        if problem := valid_name(name):
            raise ValidationFailed(f"name: {problem}", details=[{"field": "name", "message": problem}])
        if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
            message = f"a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters"
            raise ValidationFailed(f"password: {message}", details=[{"field": "password", "message": message}])
        hashed = await asyncio.to_thread(_HASHER.hash, password)
        async with self.db.transaction() as tx:
            created = await console_store.add_operator(tx, name, hashed, now)
            await record(tx, now, "cli", "operator_added" if created else "operator_password_set", name, {})
        return created

    async def list(self) -> list[dict[str, Any]]:
        async with self.db.read() as tx:
            return await console_store.operators(tx)

    async def remove(self, name: str, now: datetime) -> None:
        async with self.db.transaction() as tx:
            if not await console_store.remove_operator(tx, name):
                raise NotFound(f"no operator {name[:64]!r}")
            await record(tx, now, "cli", "operator_removed", name, {})

    async def sign_in(self, name: str, password: str, now: datetime, *, address: str) -> int | None:
        """Check a name and password: the operator's session epoch, or None (logged, never the password, and slowly)."""
        row = None
        if not valid_name(name) and 0 < len(password) <= MAX_PASSWORD:
            async with self.db.read() as tx:
                row = await console_store.operator(tx, name)
        ok = await asyncio.to_thread(_verify, row["password_hash"] if row else _DUMMY_HASH, password[:MAX_PASSWORD])
        ok = ok and row is not None
        keys = (f"name:{name[:64].lower()}", f"address:{address}")
        if ok:
            self.throttle.succeeded(*keys)
            async with self.db.transaction() as tx:
                await record(tx, now, name, "signed_in", None, {})
            log.info("console sign-in", extra={"event": "console_signed_in", "operator": name})
            assert row is not None
            return int(row["session_epoch"])
        wait = self.throttle.delay(*keys)
        log.warning(
            "console sign-in refused",
            extra={"event": "console_sign_in_failed", "operator": name[:64], "known": row is not None, "address": address, "delay": wait},
        )
        await asyncio.sleep(wait)
        return None

    async def session_epoch(self, name: str) -> int | None:
        """The operator's current session epoch; None when there is no such operator (any more)."""
        async with self.db.read() as tx:
            row = await console_store.operator(tx, name)
        return int(row["session_epoch"]) if row else None

    async def sign_out(self, name: str, now: datetime) -> None:
        """End every session of this operator."""
        async with self.db.transaction() as tx:
            await console_store.end_sessions(tx, name)
            await record(tx, now, name, "signed_out", None, {})

    async def audit(self, now: datetime, actor: str, action: str, subject: str | None, detail: dict[str, Any]) -> None:
        async with self.db.transaction() as tx:
            await record(tx, now, actor, action, subject, detail)

    async def audit_log(self, *, limit: int = 100, before: int | None = None) -> builtins.list[dict[str, Any]]:
        async with self.db.read() as tx:
            rows = await console_store.audit_page(tx, limit=limit, before=before)
        for row in rows:
            row["detail"] = json.loads(row["detail"] or "{}")
        return rows


async def record(tx: Tx, now: datetime, actor: str, action: str, subject: str | None, detail: dict[str, Any]) -> None:
    """One audit entry, in the caller's transaction; `detail` must never hold a secret."""
    await console_store.audit(
        tx, at=now, actor=actor, action=action, subject=subject, detail=json.dumps(detail, sort_keys=True, default=str)
    )


def _verify(hashed: str, password: str) -> bool:
    try:
        return bool(_HASHER.verify(hashed, password))
    except (VerificationError, InvalidHashError):
        return False
