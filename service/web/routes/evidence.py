"""GET /api/verifications/{id}/evidence: why each booking near each phase did or did not match (reads only)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from service.core.responses import EvidenceOut
from service.web.routes.api import ID_PARAM, _own_verification, api


@api.operation(
    "GET",
    "/verifications/{id}/evidence",
    summary="The booking observations near each staff-required phase and why each did or did not match",
    params=[ID_PARAM],
    admin=False,
    responses={200: (EvidenceOut, "the evidence, computed from what is stored (nothing changes)"), 404: "no such verification"},
)
async def verification_evidence(request: Request) -> JSONResponse:
    services = request.app.state.services
    await _own_verification(request, request.path_params["id"])  # a platform token: its account's only, else 404
    return JSONResponse(await services.console.evidence(request.path_params["id"]))
