"""Handlers of /api/*: parse, call one service function, answer. No SQL here."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from service.core.models import (
    ACCOUNT_ID,
    REVIEW_REASONS,
    STATUSES,
    AccountIn,
    ResolveIn,
    VerificationIn,
    parse,
)
from service.core.views import account_view
from service.errors import ValidationFailed
from service.web.http import parse_limit, parse_wait, read_body


def _account_id(request: Request) -> str:
    account_id = request.path_params["account"]
    if not ACCOUNT_ID.match(account_id):
        raise ValidationFailed(
            "account: must match [a-z0-9][a-z0-9_-]{0,62}",
            details=[{"field": "account", "message": "must match [a-z0-9][a-z0-9_-]{0,62}"}],
        )
    return account_id


async def put_account(request: Request) -> JSONResponse:
    services = request.app.state.services
    account_id = _account_id(request)
    body: AccountIn = parse(AccountIn, await read_body(request, services.settings.max_body_bytes))
    saved = await services.accounts.put(account_id, body, services.clock())
    services.secrets.forget(account_id)
    return JSONResponse(account_view(saved.account), status_code=201 if saved.created else 200)


async def get_account(request: Request) -> JSONResponse:
    services = request.app.state.services
    return JSONResponse(account_view(await services.accounts.get(_account_id(request))))


async def post_verification(request: Request) -> JSONResponse:
    services = request.app.state.services
    wait = parse_wait(request)
    body: VerificationIn = parse(VerificationIn, await read_body(request, services.settings.max_body_bytes))
    recorded = await services.intake.record(body, services.clock())
    view = recorded.view
    if wait > 0 and view["status"] == "pending":
        view = await _wait_for_verdict(services, view["id"], wait)
    return JSONResponse(view, status_code=201 if recorded.created else 200)


async def get_verification(request: Request) -> JSONResponse:
    services = request.app.state.services
    wait = parse_wait(request)
    view = await services.intake.get(request.path_params["id"])
    if wait > 0 and view["status"] == "pending":
        view = await _wait_for_verdict(services, view["id"], wait)
    return JSONResponse(view)


async def _wait_for_verdict(services: Any, verification_id: str, wait: float) -> dict[str, Any]:
    """Long-poll: the verification as soon as it has a verdict, or as it is after `wait` seconds."""
    loop = services.loop_time
    deadline = loop() + wait

    async def decided() -> bool:
        return await services.intake.status(verification_id) != "pending"

    first = True
    while True:
        await services.notifier.wait(verification_id, max(deadline - loop(), 0), decided=decided if first else None)
        first = False
        view = await services.intake.get(verification_id)
        if view["status"] != "pending" or loop() >= deadline:
            return view


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
    page = await services.intake.list(
        limit=parse_limit(request),
        cursor=params.get("cursor") or None,
        account=params.get("account") or None,
        status=status,
        appointment_id=params.get("appointment_id") or None,
        review_reason=reason,
    )
    return JSONResponse(page)


async def resolve_verification(request: Request) -> JSONResponse:
    services = request.app.state.services
    body: ResolveIn = parse(ResolveIn, await read_body(request, services.settings.max_body_bytes))
    view = await services.intake.resolve(request.path_params["id"], body, services.clock())
    return JSONResponse(view)


routes = [
    Route("/accounts/{account}", put_account, methods=["PUT"]),
    Route("/accounts/{account}", get_account, methods=["GET"]),
    Route("/verifications", post_verification, methods=["POST"]),
    Route("/verifications", list_verifications, methods=["GET"]),
    Route("/verifications/{id}", get_verification, methods=["GET"]),
    Route("/verifications/{id}/resolve", resolve_verification, methods=["POST"]),
]
