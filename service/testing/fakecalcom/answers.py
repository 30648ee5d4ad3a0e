"""How Cal.com API v2 answers when something is wrong: its error envelope, throttling, outages."""

from __future__ import annotations

import math
from datetime import datetime, timezone

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from service.testing.fakecalcom.shapes import iso

THROTTLED = "CustomThrottlerGuard - Too many requests. Please try again later."


def bearer(request: Request) -> str | None:
    """The API key of `Authorization: Bearer <key>`, or None."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def error(request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    """Cal.com's HttpException envelope (apps/api/v2/src/filters/http-exception.filter.ts)."""
    body = {
        "status": "error",
        "timestamp": iso(datetime.now(timezone.utc)),
        "path": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        "error": {"code": code, "message": message, "details": {"message": message, "statusCode": status}},
    }
    return JSONResponse(body, status, headers=headers)


def internal_error(request: Request, headers: dict[str, str] | None = None) -> Response:
    """Cal.com's answer to an exception no filter knows (sentry-exception.filter.ts): a bare 500."""
    body = {
        "status": "error",
        "timestamp": iso(datetime.now(timezone.utc)),
        "path": request.url.path,
        "error": {"code": "INTERNAL_SERVER_ERROR", "message": "Internal server error."},
    }
    return JSONResponse(body, 500, headers=headers)


def throttled(request: Request, limit: int, block: float) -> Response:
    """An injected 429 as Cal.com's throttler guard sends it (no Retry-After)."""
    headers = {
        "X-RateLimit-Limit-Default": str(limit),
        "X-RateLimit-Remaining-Default": "0",
        "X-RateLimit-Reset-Default": str(math.ceil(block)),
    }
    return error(request, 429, "ThrottlerException", THROTTLED, headers)


def unavailable(status: int = 503) -> Response:
    """What a load balancer answers for a Cal.com that is down: an HTML page, not Cal.com's JSON."""
    reason = {502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}.get(status, "Error")
    return PlainTextResponse(f"<html><body>{status} {reason}</body></html>", status)
