"""Handlers of /api/*: parse, call one service function, answer. No SQL here.

Each handler declares its operation on `api` (parameters, body, answers); the routes and
/openapi.json are both made from those declarations.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from service.core.models import (
    ACCOUNT_ID,
    REVIEW_REASONS,
    STATUSES,
    AccountIn,
    ResolveIn,
    VerificationIn,
    parse,
)
from service.core.responses import AccountOut, VerificationOut, VerificationPage
from service.core.views import account_view
from service.errors import NotFound, ValidationFailed
from service.web.http import MAX_WAIT_SECONDS, may_see, parse_limit, parse_wait, principal, read_body
from service.web.openapi import Api, path_param, query_param

api = Api(
    "/api",
    common={
        401: "missing or wrong bearer token",
        503: "API_TOKEN is not configured, or the database is unavailable (nothing was stored)",
    },
)
ACCOUNT_PARAM = path_param("account", "the account id", pattern=ACCOUNT_ID.pattern)
ID_PARAM = path_param("id", "the verification id")
WAIT_PARAM = query_param(
    "wait",
    "long-poll: answer as soon as the verdict is known or after this many seconds",
    type="number",
    minimum=0,
    maximum=MAX_WAIT_SECONDS,
)
TOO_LARGE = "the body is larger than MAX_BODY_BYTES"
INVALID = "validation error naming the field"


def _account_id(request: Request) -> str:
    account_id = str(request.path_params["account"])
    if not ACCOUNT_ID.match(account_id):
        raise ValidationFailed(
            "account: must match [a-z0-9][a-z0-9_-]{0,62}",
            details=[{"field": "account", "message": "must match [a-z0-9][a-z0-9_-]{0,62}"}],
        )
    return account_id


@api.operation(
    "PUT",
    "/accounts/{account}",
    summary="Create or replace an account",
    params=[ACCOUNT_PARAM],
    body=AccountIn,
    responses={201: (AccountOut, "created"), 200: (AccountOut, "replaced"), 413: TOO_LARGE, 422: INVALID},
)
async def put_account(request: Request) -> JSONResponse:
    services = request.app.state.services
    account_id = _account_id(request)
    body: AccountIn = parse(AccountIn, await read_body(request, services.settings.max_body_bytes))
    saved = await services.accounts.put(account_id, body, services.clock())
    services.secrets.forget(account_id)
    return JSONResponse(account_view(saved.account), status_code=201 if saved.created else 200)


@api.operation(
    "GET",
    "/accounts/{account}",
    summary='Read an account (its secrets read "set")',
    params=[ACCOUNT_PARAM],
    responses={200: (AccountOut, "the account"), 404: "no such account", 422: INVALID},
)
async def get_account(request: Request) -> JSONResponse:
    services = request.app.state.services
    return JSONResponse(account_view(await services.accounts.get(_account_id(request))))


@api.operation(
    "POST",
    "/verifications",
    summary="Record a failed sync",
    params=[WAIT_PARAM],
    admin=False,
    body=VerificationIn,
    responses={
        201: (VerificationOut, "recorded"),
        200: (VerificationOut, "the same failure was recorded before (idempotent)"),
        404: "no such account",
        409: "different phases for an appointment whose verification is still pending",
        413: TOO_LARGE,
        422: INVALID,
    },
)
async def post_verification(request: Request) -> JSONResponse:
    services = request.app.state.services
    wait = parse_wait(request)
    body: VerificationIn = parse(VerificationIn, await read_body(request, services.settings.max_body_bytes))
    if not may_see(request, body.account):
        raise NotFound(f"unknown account {body.account!r}")  # another account's is none of this token's business
    recorded = await services.intake.record(body, services.clock())
    view = recorded.view
    if wait > 0 and view["status"] == "pending":
        view = await _wait_for_verdict(services, view["id"], wait)
    return JSONResponse(view, status_code=201 if recorded.created else 200)


@api.operation(
    "GET",
    "/verifications/{id}",
    summary="Read a verification, optionally long-polling for its verdict",
    params=[ID_PARAM, WAIT_PARAM],
    admin=False,
    responses={200: (VerificationOut, "the verification"), 404: "no such verification", 422: INVALID},
)
async def get_verification(request: Request) -> JSONResponse:
    services = request.app.state.services
    wait = parse_wait(request)
    view = await _own_verification(request, request.path_params["id"])
    if wait > 0 and view["status"] == "pending":
        view = await _wait_for_verdict(services, view["id"], wait)
    return JSONResponse(view)


async def _own_verification(request: Request, verification_id: str) -> dict[str, Any]:
    """The verification, if the caller may see it; otherwise the same 404 as for one that does not exist."""
    view = await request.app.state.services.intake.get(verification_id)
    if not may_see(request, view["account"]):
        raise NotFound(f"no verification {verification_id!r}")
    return dict(view)


async def _wait_for_verdict(services: Any, verification_id: str, wait: float) -> dict[str, Any]:
    """Long-poll: the verification as soon as it has a verdict, or as it is after `wait` seconds."""
    loop = services.loop_time
    deadline = loop() + wait

    async def decided() -> bool:
        return bool(await services.intake.status(verification_id) != "pending")

    first = True
    while True:
        await services.notifier.wait(verification_id, max(deadline - loop(), 0), decided=decided if first else None)
        first = False
        view = await services.intake.get(verification_id)
        if view["status"] != "pending" or loop() >= deadline:
            return dict(view)


@api.operation(
    "GET",
    "/verifications",
    summary="List verifications, newest first (a platform token: its account's only)",
    admin=False,
    params=[
        query_param("account"),
        query_param("status", type="string", enum=list(STATUSES)),
        query_param("review_reason", type="string", enum=list(REVIEW_REASONS)),
        query_param("appointment_id"),
        query_param("limit", type="integer", minimum=1, maximum=200, default=50),
        query_param("cursor", "next_cursor of the previous page"),
    ],
    responses={200: (VerificationPage, "one page"), 422: INVALID},
)
async def list_verifications(request: Request) -> JSONResponse:
    services = request.app.state.services
    params = request.query_params
    status = params.get("status")
    if status is not None and status not in STATUSES:
        raise ValidationFailed(
            f"status: must be one of {', '.join(STATUSES)}",
            details=[{"field": "status", "message": f"must be one of {', '.join(STATUSES)}"}],
        )
    reason = params.get("review_reason")
    if reason is not None and reason not in REVIEW_REASONS:
        raise ValidationFailed(
            f"review_reason: must be one of {', '.join(REVIEW_REASONS)}",
            details=[{"field": "review_reason", "message": "unknown review reason"}],
        )
    for name in ("account", "appointment_id", "cursor"):
        value = params.get(name)
        if value is not None and ("\x00" in value or len(value) > 200):
            raise ValidationFailed(f"{name}: not a valid value", details=[{"field": name, "message": "not a valid value"}])
    account = params.get("account") or None
    caller = principal(request)
    if not caller.admin:
        if account is not None and account != caller.account:
            return JSONResponse({"items": [], "next_cursor": None})
        account = caller.account
    page = await services.intake.list(
        limit=parse_limit(request),
        cursor=params.get("cursor") or None,
        account=account,
        status=status,
        appointment_id=params.get("appointment_id") or None,
        review_reason=reason,
    )
    return JSONResponse(page)


@api.operation(
    "POST",
    "/verifications/{id}/resolve",
    summary="Close a pending or manual_review verification by hand",
    params=[ID_PARAM],
    admin=False,
    body=ResolveIn,
    responses={
        200: (VerificationOut, "resolved"),
        404: "no such verification",
        409: "the verification is already verified or resolved",
        413: TOO_LARGE,
        422: INVALID,
    },
)
async def resolve_verification(request: Request) -> JSONResponse:
    services = request.app.state.services
    body: ResolveIn = parse(ResolveIn, await read_body(request, services.settings.max_body_bytes))
    await _own_verification(request, request.path_params["id"])
    view = await services.intake.resolve(request.path_params["id"], body, services.clock())
    return JSONResponse(view)
