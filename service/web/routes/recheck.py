"""POST /api/verifications/{id}/recheck: one more Cal.com check now (202), e.g. after an outage."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from service.errors import ValidationFailed
from service.web.http import read_body


async def recheck_verification(request: Request) -> JSONResponse:
    services = request.app.state.services
    body = await read_body(request, services.settings.max_body_bytes)
    if body.strip() not in (b"", b"{}"):
        raise ValidationFailed("body: this request takes no fields (send nothing, or {})", details=[{"field": "body", "message": "takes no fields"}])
    view = await services.rechecks.recheck(request.path_params["id"], services.clock())
    return JSONResponse(view, status_code=202)


routes = [Route("/verifications/{id}/recheck", recheck_verification, methods=["POST"])]
