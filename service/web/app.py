"""The `web` process: app factory, lifespan, error mapping."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from service.app.runtime import serving
from service.clock import Clock, system_clock
from service.core.tallies import Tally
from service.errors import ServiceError
from service.logs import secret_registry
from service.settings import Settings
from service.web.http import BearerAuth, service_error
from service.web.observe import ClientErrors
from service.web.routes import console as routes_console
from service.web.routes import console_admin as routes_console_admin
from service.web.routes import guard as routes_guard
from service.web.routes import ops as routes_ops
from service.web.routes import status as routes_status
from service.web.routes import webhooks as routes_webhooks
from service.web.routes.catalog import API
from service.web.routes.webhooks import WebhookReceiver
from service.web.session import SecurityHeaders, Sessions

log = logging.getLogger("service.web.app")


def create_app(settings: Settings, *, clock: Clock = system_clock, calcom_transport: Any = None) -> Starlette:
    """Build the web app; nothing connects until the lifespan starts (`calcom_transport`: tests route Cal.com to a fake)."""
    if settings.api_token:
        secret_registry.add(settings.api_token.get_secret_value())
    if settings.console_session_key:
        secret_registry.add(settings.console_session_key.get_secret_value())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with serving(settings, clock, calcom_transport=calcom_transport) as runtime:
            app.state.services = runtime
            if not settings.api_token:
                log.warning("API_TOKEN is not set: /api/* answers 503 until it is", extra={"event": "api_token_missing"})
            log.info("web started", extra={"event": "web_started", "database": runtime.db.dialect})
            yield

    api_routes = API.routes()
    api = Mount("/api", routes=api_routes)
    api.app = ClientErrors(BearerAuth(api.app, settings.api_token_value), api_routes, "/api", _tally)
    console_key = settings.console_session_key.get_secret_value() if settings.console_session_key else None
    console = [
        *routes_console.routes,
        *routes_console_admin.routes,
        Mount("/console/static", StaticFiles(packages=[("service.web", "static")]), name="console_static"),
    ]
    app = Starlette(
        routes=[*routes_ops.routes, *routes_status.routes, *routes_webhooks.routes, *routes_guard.routes, api, *console],
        middleware=[Middleware(WebhookReceiver), Middleware(SecurityHeaders)],
        lifespan=lifespan,
        exception_handlers={
            ServiceError: service_error,
            HTTPException: http_error,
            Exception: unexpected_error,
        },
    )
    app.state.console_sessions = Sessions(console_key, settings.console_session_hours, clock)
    return app


def _tally(scope: Scope) -> Tally | None:
    services = getattr(scope["app"].state, "services", None)
    return services.tally if services is not None else None


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse({"error": {"code": code, "message": str(exc.detail)}}, status_code=exc.status_code)


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.error(
        "unexpected error",
        exc_info=exc,
        extra={"event": "unexpected_error", "path": request.url.path, "error": type(exc).__name__},
    )
    return JSONResponse({"error": {"code": "internal_error", "message": "internal error; see the service log"}}, status_code=500)
