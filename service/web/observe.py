"""Counting /api answers 4xx by route, for /metrics (the route template, never the ids in a path)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.core.tallies import API_CLIENT_ERRORS, Tally


def route_template(path: str, routes: Sequence[BaseRoute], prefix: str = "") -> str:
    """`/api/verifications/{id}` for `/api/verifications/5c0e…`; `other` for a path no route knows."""
    inner = path[len(prefix) :] if path.startswith(prefix) else path
    for route in routes:
        if isinstance(route, Route) and route.path_regex.match(inner):
            return prefix + route.path
    return "other"


class ClientErrors:
    """Wraps the /api mount: every 4xx answer adds one to `api_client_errors` with method, route and status."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute], prefix: str, tally: Callable[[Scope], Tally | None]) -> None:
        self.app = app
        self.routes = routes
        self.prefix = prefix
        self.tally = tally

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start" and 400 <= message["status"] < 500:
                tally = self.tally(scope)
                if tally is not None:
                    route = route_template(scope["path"], self.routes, self.prefix)
                    tally.add(API_CLIENT_ERRORS, f"{scope['method']} {route} {message['status']}")
            await send(message)

        await self.app(scope, receive, watch)
