"""The operator console: sign-in and sign-out, the review queue, a verification's evidence, resolving it."""

from __future__ import annotations

import json
import logging

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from service.core.evidence import REASONS
from service.core.models import ACCOUNT_ID, REVIEW_REASONS, ResolveIn, parse
from service.errors import Conflict, ValidationFailed
from service.web.pages import Page, page, render, sessions_of

log = logging.getLogger("service.web.console")
AGES = {"": None, "1h": 1.0, "24h": 24.0, "3d": 72.0, "7d": 168.0}


def _next(value: object) -> str:
    """Where to go after signing in: a console path only (never another site)."""
    text = value if isinstance(value, str) else ""
    return text if text.startswith("/console") and not text.startswith("//") and "\\" not in text else "/console"


async def sign_in_form(request: Request) -> Response:
    sessions = sessions_of(request)
    if not sessions.configured:
        return render(request, "error.html", 503, title="Console not configured",
                      message="Set CONSOLE_SESSION_KEY (make run generates one into .env) and restart the web process.")  # fmt: skip
    session = sessions.read(request) or sessions.new()
    response = render(request, "sign_in.html", csrf=sessions.csrf(session), next=_next(request.query_params.get("next")), error=None)
    sessions.write(response, request, session)
    return response


async def sign_in(request: Request) -> Response:
    sessions = sessions_of(request)
    services = request.app.state.services
    if not sessions.configured:
        return render(request, "error.html", 503, title="Console not configured", message="Set CONSOLE_SESSION_KEY.")
    session = sessions.read(request)
    form = await request.form(max_files=0, max_fields=10)
    if not sessions.csrf_ok(session, form.get("csrf")):
        log.warning(
            "console sign-in refused: missing or wrong CSRF token", extra={"event": "console_csrf_refused", "path": request.url.path}
        )
        return render(request, "error.html", 403, title="Refused", message="The sign-in form is out of date; reload it and try again.")
    name, password = str(form.get("name") or "").strip(), str(form.get("password") or "")
    address = request.client.host if request.client else "?"
    target = _next(form.get("next"))
    epoch = await services.operators.sign_in(name, password, services.clock(), address=address)
    if epoch is None:
        assert session is not None
        return render(request, "sign_in.html", 401, csrf=sessions.csrf(session), next=target, error="Wrong name or password.")
    redirect = RedirectResponse(target, status_code=303)
    sessions.write(redirect, request, sessions.new(name, epoch))  # a new session id: nothing from before sign-in carries over
    return redirect


@page
async def sign_out(p: Page) -> Response:
    if await p.form() is None:
        return p.forbidden()
    await p.services.operators.sign_out(p.operator, p.services.clock())
    response = RedirectResponse("/console/sign-in", status_code=303)
    p.sessions.end(response, p.request)
    return response


@page
async def queue(p: Page) -> Response:
    params = p.request.query_params
    account = params.get("account") or None
    reason = params.get("reason") or None
    age = params.get("age") or ""
    if account is not None and not ACCOUNT_ID.match(account):
        account = None
    if reason not in (None, *REVIEW_REASONS):
        reason = None
    if age not in AGES:
        age = ""
    now = p.services.clock()
    found = await p.services.console.queue(now, account=account, reason=reason, older_than_hours=AGES[age])
    accounts = await p.services.console.account_ids()
    return p.render(
        "queue.html", queue=found, accounts=accounts, reasons=REVIEW_REASONS, ages=list(AGES),
        chosen={"account": account or "", "reason": reason or "", "age": age}, resolved=params.get("resolved"),
    )  # fmt: skip


async def _detail(p: Page, verification_id: str, status_code: int = 200, error: str | None = None) -> Response:
    detail = await p.services.console.detail(verification_id)
    evidence = await p.services.console.evidence(verification_id)
    zone = detail["account"].time_zone if detail["account"] else "UTC"
    return p.render("verification.html", status_code, v=detail["view"], row=detail["row"], deliveries=detail["deliveries"],
                    evidence=evidence, reasons=REASONS, error=error, zone=zone)  # fmt: skip


@page
async def verification(p: Page) -> Response:
    return await _detail(p, p.request.path_params["id"])


@page
async def resolve(p: Page) -> Response:
    verification_id = p.request.path_params["id"]
    form = await p.form()
    if form is None:
        return p.forbidden()
    bookings: dict[str, str] = {}
    for name, value in form.multi_items():
        if name.startswith("booking.") and isinstance(value, str):
            key = name.removeprefix("booking.")
            typed = str(form.get(f"uid.{key}") or "").strip()
            chosen = typed if value == "typed" else value
            if chosen and chosen != "none":
                bookings[key] = chosen
    body = {"outcome": form.get("outcome"), "note": str(form.get("note") or "").strip() or None, "bookings": bookings or None}
    try:
        request: ResolveIn = parse(ResolveIn, json.dumps(body).encode())
        await p.services.console.resolve(p.operator, verification_id, request, p.services.clock())
    except (ValidationFailed, Conflict) as exc:
        return await _detail(p, verification_id, exc.status_code, error=exc.message)
    return RedirectResponse(f"/console?resolved={verification_id}", status_code=303)


routes = [
    Route("/console/sign-in", sign_in_form, methods=["GET"]),
    Route("/console/sign-in", sign_in, methods=["POST"]),
    Route("/console/sign-out", sign_out, methods=["POST"]),
    Route("/console", queue, methods=["GET"]),
    Route("/console/verifications/{id}", verification, methods=["GET"]),
    Route("/console/verifications/{id}/resolve", resolve, methods=["POST"]),
]
