"""/status (JSON) and /metrics (Prometheus): operational, no token, no secrets or personal data."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.web import metrics


async def status(request: Request) -> JSONResponse:
    services = request.app.state.services
    return JSONResponse(await services.status(), headers={"Cache-Control": "no-store"})


async def prometheus(request: Request) -> Response:
    services = request.app.state.services
    figures = await services.status()
    return Response(metrics.exposition(figures), media_type=metrics.CONTENT_TYPE, headers={"Cache-Control": "no-store"})


routes = [
    Route("/status", status, methods=["GET"]),
    Route("/metrics", prometheus, methods=["GET"]),
]
