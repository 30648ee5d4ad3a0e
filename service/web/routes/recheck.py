"""POST /api/verifications/{id}/recheck: one more Cal.com check now (202), e.g. after an outage."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from service.core.responses import VerificationOut
from service.errors import ValidationFailed
from service.web.http import read_body
from service.web.routes.api import ID_PARAM, TOO_LARGE, api


@api.operation(
    "POST",
    "/verifications/{id}/recheck",
    summary="Check Cal.com once more now (a pending or calcom_unavailable/manual_review verification)",
    params=[ID_PARAM],
    responses={
        202: (VerificationOut, "the check is due now"),
        404: "no such verification",
        409: "the verification cannot be rechecked (already verified or resolved)",
        413: TOO_LARGE,
        422: "the request takes no fields",
    },
)
async def recheck_verification(request: Request) -> JSONResponse:
    services = request.app.state.services
    body = await read_body(request, services.settings.max_body_bytes)
    if body.strip() not in (b"", b"{}"):
        raise ValidationFailed(
            "body: this request takes no fields (send nothing, or {})", details=[{"field": "body", "message": "takes no fields"}]
        )
    view = await services.rechecks.recheck(request.path_params["id"], services.clock())
    return JSONResponse(view, status_code=202)
