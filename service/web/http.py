"""Small HTTP edge helpers: bounded body reading, bearer auth, JSON answers, query parsing."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from service.core.signatures import token_valid
from service.errors import (
    DatabaseUnavailable,
    Forbidden,
    NotConfigured,
    PayloadTooLarge,
    ServiceError,
    Unauthorized,
    ValidationFailed,
)

MAX_WAIT_SECONDS = 30.0
log = logging.getLogger("service.web.app")


class Disconnected(Exception):
    """The sender hung up before its body arrived: nobody to answer."""


async def read_limited(receive: Receive, declared: str | bytes | None, limit: int) -> bytes:
    """An ASGI request body, refused with 413 as soon as it exceeds `limit` (never read whole).

    `declared`: the Content-Length header, refused before any read when it is already too large.
    """
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it exceeds `limit` (never read whole)."""
    return await read_limited(request.receive, request.headers.get("content-length"), limit)


def parse_wait(request: Request) -> float:
    """`?wait=N`: 0 to 30 seconds, fractions allowed; anything else is a 422."""
    raw = request.query_params.get("wait")
    if raw is None:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0 <= value <= MAX_WAIT_SECONDS:
        raise ValidationFailed(
            "wait: must be a number of seconds from 0 to 30",
            details=[{"field": "wait", "message": "must be a number of seconds from 0 to 30"}],
        )
    return value


def parse_limit(request: Request, default: int = 50, maximum: int = 200) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= maximum:
        raise ValidationFailed(
            f"limit: must be an integer from 1 to {maximum}",
            details=[{"field": "limit", "message": f"must be an integer from 1 to {maximum}"}],
        )
    return int(raw)


PRINCIPAL = "verifier.principal"  # the scope key BearerAuth fills


@dataclass(frozen=True)
class Principal:
    """Who is calling: the administrator (API_TOKEN, `account` None) or one account's platform token."""

    account: str | None

    @property
    def admin(self) -> bool:
        return self.account is None


def principal(request: Request) -> Principal:
    found = request.scope.get(PRINCIPAL)
    assert isinstance(found, Principal), "BearerAuth runs before every /api handler"
    return found


def require_admin(request: Request) -> None:
    if not principal(request).admin:
        raise Forbidden("a platform token may only record, read and resolve its account's verifications; this needs API_TOKEN")


def may_see(request: Request, account: str) -> bool:
    """Whether the caller may see a verification of `account` (the administrator: every account)."""
    caller = principal(request)
    return caller.admin or caller.account == account


class BearerAuth:
    """Guards a mounted app: `Authorization: Bearer $API_TOKEN` (compared in constant time), or a platform token of one account."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        error: Exception | None = None
        if not self.token:
            error = NotConfigured("API_TOKEN is not set: the API stays closed until an operator sets one")
        else:
            header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
            scheme, _, presented = header.partition(" ")
            presented = presented.strip()
            if scheme.lower() == "bearer" and token_valid(self.token, presented):
                scope[PRINCIPAL] = Principal(None)
            else:
                account = None
                if scheme.lower() == "bearer" and presented:
                    try:
                        account = await scope["app"].state.services.tokens.account_of(presented)
                    except ServiceError as exc:  # the database is away: a 503, like any other request now
                        error = exc
                if account is not None:
                    scope[PRINCIPAL] = Principal(account)
                elif error is None:
                    error = Unauthorized("missing or wrong bearer token (Authorization: Bearer <API_TOKEN or platform token>)")
        if error is None:
            await self.app(scope, receive, send)
            return
        headers = {"WWW-Authenticate": 'Bearer realm="api"'} if isinstance(error, Unauthorized) else None
        response = JSONResponse(error.body(), status_code=error.status_code, headers=headers)  # type: ignore[attr-defined]
        await response(scope, receive, send)


_last_outage_log = [0.0]


async def service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    if isinstance(exc, ValidationFailed) and request.url.path.startswith("/api/"):
        # The fields at fault, never the values sent (they may be personal data or secrets).
        log.warning(
            "API request refused: invalid input",
            extra={
                "event": "api_validation_failed",
                "method": request.method,
                "path": request.url.path[:200],
                "fields": [d["field"] for d in (exc.details or [])][:20],
            },
        )
    if isinstance(exc, DatabaseUnavailable):
        # One line every few seconds while the database is away, not one per request.
        now = time.monotonic()
        if now - _last_outage_log[0] > 5:
            _last_outage_log[0] = now
            log.error(
                "database unavailable; answering 503",
                extra={"event": "database_unavailable", "path": request.url.path, "error": exc.reason},
            )
    return JSONResponse(exc.body(), status_code=exc.status_code)
