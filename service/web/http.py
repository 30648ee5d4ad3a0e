"""Small HTTP edge helpers: bounded body reading, bearer auth, JSON answers, query parsing."""

from __future__ import annotations

import math

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from service.core.signatures import token_valid
from service.errors import (
    NotConfigured,
    PayloadTooLarge,
    Unauthorized,
    ValidationFailed,
)

MAX_WAIT_SECONDS = 30.0


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it exceeds `limit` (never read whole)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise PayloadTooLarge(f"the body is larger than {limit} bytes")
        except ValueError:
            pass
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


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


class BearerAuth:
    """Guards a mounted app: `Authorization: Bearer $API_TOKEN`, compared in constant time."""

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
            if scheme.lower() != "bearer" or not token_valid(self.token, presented.strip()):
                error = Unauthorized("missing or wrong bearer token (Authorization: Bearer <API_TOKEN>)")
        if error is None:
            await self.app(scope, receive, send)
            return
        headers = {"WWW-Authenticate": 'Bearer realm="api"'} if isinstance(error, Unauthorized) else None
        response = JSONResponse(error.body(), status_code=error.status_code, headers=headers)  # type: ignore[attr-defined]
        await response(scope, receive, send)
