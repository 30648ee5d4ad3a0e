"""Operational endpoints (no token): /healthz, /readyz, /openapi.json — and /status, /metrics."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.web.openapi import document


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    services = request.app.state.services
    try:
        missing = await services.pending_migrations()
    except Exception as exc:
        return JSONResponse({"status": "unavailable", "database": "unreachable", "error": type(exc).__name__}, status_code=503)
    if missing:
        return JSONResponse(
            {
                "status": "unavailable",
                "database": "ok",
                "migrations": "pending",
                "pending": missing,
                "hint": "run the release process: python -m service migrate",
            },
            status_code=503,
        )
    return JSONResponse({"status": "ok", "database": "ok", "migrations": "current"})


async def openapi(request: Request) -> Response:
    return JSONResponse(document())


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
]
