"""The console's page machinery: templates, the signed-in check, CSRF on forms, HTML errors."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from service.core.times import iso, parse
from service.errors import DatabaseUnavailable, ServiceError
from service.web.session import Session, Sessions

log = logging.getLogger("service.web.console")
MAX_FORM_FIELDS = 100

templates = Environment(loader=PackageLoader("service.web", "templates"), autoescape=select_autoescape(["html"]), auto_reload=False)


def _when(value: datetime | None) -> str:
    return (iso(value) or "").replace("T", " ").replace(".000Z", "Z") if value else "—"


def _age(seconds: float) -> str:
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 86400 * 2:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _zoned(value: datetime | str | None, zone: str = "UTC") -> str:
    """An instant in UTC and in the account's time zone: "2026-12-01 09:00 UTC · 10:00 Europe/Berlin"
    (the local date too when it differs)."""
    instant = value if isinstance(value, datetime) else parse(value)
    if instant is None:
        return "—"
    utc = instant.astimezone(timezone.utc)
    clock = "%H:%M:%S" if utc.second else "%H:%M"
    shown = f"{utc.strftime('%Y-%m-%d ' + clock)} UTC"
    if zone == "UTC":
        return shown
    local = utc.astimezone(ZoneInfo(zone))
    pattern = clock if local.date() == utc.date() else "%Y-%m-%d " + clock
    return f"{shown} · {local.strftime(pattern)} {zone}"


templates.filters["when"] = _when
templates.filters["zoned"] = _zoned
templates.filters["age"] = _age


@dataclass
class Page:
    """A signed-in request: the services, the operator, the session and its CSRF token."""

    request: Request
    services: Any
    sessions: Sessions
    session: Session
    operator: str

    @property
    def csrf(self) -> str:
        return self.sessions.csrf(self.session)

    def render(self, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        return render(self.request, template, status_code, operator=self.operator, csrf=self.csrf, **context)

    async def form(self) -> FormData | None:
        """The posted form if its CSRF token is this session's; None otherwise (the caller answers 403)."""
        form = await self.request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
        if not self.sessions.csrf_ok(self.session, form.get("csrf")):
            log.warning("console form refused: missing or wrong CSRF token",
                        extra={"event": "console_csrf_refused", "operator": self.operator, "path": self.request.url.path})  # fmt: skip
            return None
        return form

    def forbidden(self) -> HTMLResponse:
        return self.render(
            "error.html",
            403,
            title="Refused",
            message="This form is out of date or was not sent from the console. Nothing was changed; reload the page and try again.",
        )


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = templates.get_template(template).render(request=request, path=request.url.path, **context)
    return HTMLResponse(html, status_code=status_code)


def sessions_of(request: Request) -> Sessions:
    return request.app.state.console_sessions  # type: ignore[no-any-return]


PageHandler = Callable[[Page], Awaitable[Response]]


def page(handler: PageHandler) -> Callable[[Request], Awaitable[Response]]:
    """A console page: without a valid session (or once its operator is removed) it redirects to sign-in."""

    async def endpoint(request: Request) -> Response:
        sessions = sessions_of(request)
        if not sessions.configured:
            return render(request, "error.html", 503, title="Console not configured",
                          message="Set CONSOLE_SESSION_KEY (make run generates one into .env) and restart the web process.")  # fmt: skip
        services = request.app.state.services
        session = sessions.read(request)
        try:
            epoch = await services.operators.session_epoch(session.operator) if session and session.operator else None
            if session is None or session.operator is None or epoch is None or epoch != session.epoch:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/console/sign-in?next={quote(target, safe='')}", status_code=303)
            return await handler(Page(request, services, sessions, session, session.operator))
        except DatabaseUnavailable:
            return render(
                request, "error.html", 503, title="Database unavailable", message="The database is not answering; try again in a moment."
            )
        except ServiceError as exc:
            if exc.status_code >= 500:
                raise
            return render(request, "error.html", exc.status_code, title="Not possible", message=exc.message)

    endpoint.__name__ = handler.__name__
    return endpoint
