"""GET /api/duplicates and POST /api/duplicates/{uid}/dismiss: bookings Cal.com made twice for one create."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from service.core.models import ACCOUNT_ID
from service.core.responses import DismissedOut, DuplicateList
from service.errors import ValidationFailed
from service.web.http import parse_limit, read_body
from service.web.openapi import path_param, query_param
from service.web.routes.api import INVALID, TOO_LARGE, api

UID_PARAM = path_param("uid", "the duplicate booking's Cal.com uid")
ACCOUNT_FILTER = query_param("account", "only this account's duplicates")
LIMIT = query_param("limit", "at most this many (1 to 500, default 100)", type="integer", minimum=1, maximum=500)


def _account(request: Request) -> str | None:
    account = request.query_params.get("account")
    if account is not None and not ACCOUNT_ID.match(account):
        raise ValidationFailed(
            "account: must match [a-z0-9][a-z0-9_-]{0,62}", details=[{"field": "account", "message": "not an account id"}]
        )
    return account


@api.operation(
    "GET",
    "/duplicates",
    summary="Open duplicate bookings (a retry Cal.com accepted twice): cancel each in Cal.com, then dismiss it",
    params=[ACCOUNT_FILTER, LIMIT],
    responses={200: (DuplicateList, "open duplicates, oldest finding first"), 422: INVALID},
)
async def list_duplicates(request: Request) -> JSONResponse:
    services = request.app.state.services
    items = await services.duplicates.open_ones(_account(request), parse_limit(request, default=100, maximum=500))
    return JSONResponse({"items": items})


@api.operation(
    "POST",
    "/duplicates/{uid}/dismiss",
    summary="Mark a duplicate booking handled (after cancelling it in Cal.com; the service never cancels anything)",
    params=[UID_PARAM, ACCOUNT_FILTER],
    responses={200: (DismissedOut, "marked handled"), 404: "no open duplicate with this uid", 413: TOO_LARGE, 422: INVALID},
)
async def dismiss_duplicate(request: Request) -> JSONResponse:
    services = request.app.state.services
    body = await read_body(request, services.settings.max_body_bytes)
    if body.strip() not in (b"", b"{}"):
        raise ValidationFailed(
            "body: this request takes no fields (send nothing, or {})", details=[{"field": "body", "message": "takes no fields"}]
        )
    uid = request.path_params["uid"]
    changed = await services.duplicates.dismiss(uid, _account(request), "api", services.clock())
    return JSONResponse({"uid": uid, "dismissed": changed})
