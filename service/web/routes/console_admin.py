"""The console's accounts, dashboard, audit log and duplicates pages."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from service.core import dashboard as charts
from service.core.models import AccountPatch, parse
from service.errors import ValidationFailed
from service.web.pages import Page, page

SECRET_FIELDS = ("calcom_api_key", "webhook_secret", "callback_secret")
COLOURS = {
    "verified": "#2a8a4a", "manual_review": "#d08a00", "resolved": "#3366cc", "pending": "#999999", "caught": "#2a8a4a",
    "rate": "#2a8a4a", "entries": "#d08a00", "size": "#d08a00", "p50": "#3366cc", "p99": "#c0392b",
}  # fmt: skip


@page
async def accounts(p: Page) -> Response:
    overview = await p.services.console.accounts_overview()
    base = str(p.request.base_url).rstrip("/")
    return p.render("accounts.html", accounts=overview, base=base, changed=p.request.query_params.get("changed"), error=None)


@page
async def change_account(p: Page) -> Response:
    account_id = p.request.path_params["account"]
    form = await p.form()
    if form is None:
        return p.forbidden()
    body: dict[str, Any] = {}
    action = form.get("action")
    if action == "enable":
        body["enabled"] = True
    elif action == "disable":
        body["enabled"] = False
    elif action == "tolerance":
        text = str(form.get("tolerance") or "").strip()
        body["match_tolerance_seconds"] = int(text) if text.isascii() and text.isdigit() else text
    elif action == "time_zone":
        body["time_zone"] = str(form.get("time_zone") or "").strip()
    elif action == "secrets":
        # Only the secrets typed in are replaced; an empty field keeps the stored one.
        body = {name: str(form.get(name)) for name in SECRET_FIELDS if str(form.get(name) or "").strip()}
    if not body:
        return await _accounts_error(p, "Nothing to change.")
    try:
        request = parse(AccountPatch, json.dumps(body).encode())
        await p.services.console.change_account(p.operator, account_id, request, p.services.clock())
    except ValidationFailed as exc:
        fields = ", ".join(d["field"] for d in exc.details or []) or "the form"
        return await _accounts_error(p, f"Not saved: {fields} is not valid.", 422)
    p.services.secrets.forget(account_id)
    return RedirectResponse(f"/console/accounts?changed={account_id}", status_code=303)


async def _accounts_error(p: Page, message: str, status_code: int = 422) -> Response:
    overview = await p.services.console.accounts_overview()
    base = str(p.request.base_url).rstrip("/")
    return p.render("accounts.html", status_code, accounts=overview, base=base, changed=None, error=message)


@page
async def dashboard(p: Page) -> Response:
    days = await p.services.console.dashboard(p.services.clock())
    status = await p.services.status()
    return p.render("dashboard.html", charts=charts.charts(days), days=days, status=status, colours=COLOURS)


@page
async def audit(p: Page) -> Response:
    before_text = p.request.query_params.get("before") or ""
    before = int(before_text) if before_text.isascii() and before_text.isdigit() and len(before_text) < 19 else None
    entries = await p.services.operators.audit_log(limit=100, before=before)
    older = entries[-1]["seq"] if len(entries) == 100 else None
    return p.render("audit.html", entries=entries, older=older)


@page
async def duplicates(p: Page) -> Response:
    return p.render("duplicates.html", duplicates=await p.services.console.duplicates())


routes = [
    Route("/console/accounts", accounts, methods=["GET"]),
    Route("/console/accounts/{account}", change_account, methods=["POST"]),
    Route("/console/dashboard", dashboard, methods=["GET"]),
    Route("/console/audit", audit, methods=["GET"]),
    Route("/console/duplicates", duplicates, methods=["GET"]),
]
