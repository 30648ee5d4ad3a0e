"""POST /api/accounts/{account}/tokens (issue a platform token) and DELETE …/tokens/{id} (revoke it)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from service.core.responses import TokenOut, TokenRevokedOut
from service.errors import ValidationFailed
from service.web.http import read_body
from service.web.openapi import path_param
from service.web.routes.accounts import _account_id
from service.web.routes.api import ACCOUNT_PARAM, INVALID, TOO_LARGE, api

TOKEN_PARAM = path_param("id", "the token's id (tok_…), as issued", maxLength=64)


@api.operation(
    "POST",
    "/accounts/{account}/tokens",
    summary="Issue a platform token for one account (shown once; only its hash is stored)",
    params=[ACCOUNT_PARAM],
    responses={201: (TokenOut, "issued: keep the token, it cannot be shown again"), 404: "unknown account", 413: TOO_LARGE, 422: INVALID},
)
async def issue_token(request: Request) -> JSONResponse:
    services = request.app.state.services
    account_id = _account_id(request)
    body = await read_body(request, services.settings.max_body_bytes)
    if body.strip() not in (b"", b"{}"):
        raise ValidationFailed(
            "body: this request takes no fields (send nothing, or {})", details=[{"field": "body", "message": "takes no fields"}]
        )
    token_id, token = await services.tokens.issue(account_id, services.clock())
    return JSONResponse({"id": token_id, "account": account_id, "token": token}, status_code=201)


@api.operation(
    "DELETE",
    "/accounts/{account}/tokens/{id}",
    summary="Revoke a platform token (it answers 401 from then on)",
    params=[ACCOUNT_PARAM, TOKEN_PARAM],
    responses={200: (TokenRevokedOut, "revoked"), 404: "no such token of this account", 422: INVALID},
)
async def revoke_token(request: Request) -> JSONResponse:
    services = request.app.state.services
    account_id = _account_id(request)
    token_id = str(request.path_params["id"])
    await services.tokens.revoke(account_id, token_id)
    return JSONResponse({"id": token_id, "account": account_id, "revoked": True})
