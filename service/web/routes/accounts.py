"""GET /api/accounts (the list) and PATCH /api/accounts/{account} (only the fields sent change)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from service.core.models import ACCOUNT_ID, AccountPatch, parse
from service.core.responses import AccountList, AccountOut
from service.core.views import account_view
from service.errors import ValidationFailed
from service.web.http import read_body
from service.web.routes.api import ACCOUNT_PARAM, INVALID, TOO_LARGE, api


def _account_id(request: Request) -> str:
    account_id = str(request.path_params["account"])
    if not ACCOUNT_ID.match(account_id):
        hint = " (account ids are lower-case)" if ACCOUNT_ID.match(account_id.lower()) else ""
        message = f"must match [a-z0-9][a-z0-9_-]{{0,62}}{hint}"
        raise ValidationFailed(f"account: {message}", details=[{"field": "account", "message": message}])
    return account_id


@api.operation("GET", "/accounts", summary='List the accounts (secrets shown as "set")', responses={200: (AccountList, "every account")})
async def list_accounts(request: Request) -> JSONResponse:
    services = request.app.state.services
    return JSONResponse({"items": [account_view(account) for account in await services.accounts.list()]})


@api.operation(
    "PATCH",
    "/accounts/{account}",
    summary="Change only the fields sent (a new Cal.com API key is checked with Cal.com at once)",
    params=[ACCOUNT_PARAM],
    body=AccountPatch,
    responses={200: (AccountOut, "the account after the change"), 404: "unknown account", 413: TOO_LARGE, 422: INVALID},
)
async def patch_account(request: Request) -> JSONResponse:
    services = request.app.state.services
    account_id = _account_id(request)
    body = parse(AccountPatch, await read_body(request, services.settings.max_body_bytes))
    saved = await services.accounts.patch(account_id, body, services.clock())
    services.secrets.forget(account_id)
    return JSONResponse(account_view(saved.account))
