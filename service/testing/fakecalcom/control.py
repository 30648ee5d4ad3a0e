"""The fake Cal.com's JSON control API under `/_fake/…`, so another process can drive it over HTTP.

Bookings: POST `/bookings`, `/bookings/{uid}/cancel`, `/bookings/{uid}/reschedule`, `/bookings/{uid}/seats`.
Creates: POST `/event-types` (`id`, `length`, `hosts`, `seats`, `recurring`, `durations`,
`requires_confirmation`), `/webhooks` (`api_key`, `url`, `secret`), `/fail-next-create` (`mode`, `n`,
`delay`, `status`), `/release`; GET `/deliveries`, `/creates`. Reads and the rest: POST `/api-keys`,
`/fail-next`, `/delay`, `/down`, `/clock`, `/rate-limit`, `/reset`; GET `/calls`, `/requests`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.testing.fakecalcom.shapes import parse_time

if TYPE_CHECKING:
    from service.testing.fakecalcom import FakeCalcom

Handler = Callable[[Request], Awaitable[Response]]

BOOKING_FIELDS = {
    "start",
    "end",
    "uid",
    "id",
    "status",
    "event_type_id",
    "hosts",
    "attendees",
    "metadata",
    "seats",
    "recurring_booking_uid",
    "title",
    "guests",
    "event_type_slug",
}
EVENT_TYPE_FIELDS = {"length", "hosts", "seats", "recurring", "durations", "requires_confirmation", "title", "slug"}


def routes(fake: FakeCalcom) -> list[Route]:
    """The control endpoints for one fake (mounted at `/_fake`)."""

    async def reset(body: dict[str, Any], request: Request) -> Any:
        fake.reset()
        return {"ok": True}

    async def add_api_key(body: dict[str, Any], request: Request) -> Any:
        fake.add_api_key(_text(body, "api_key"))
        return {"ok": True}

    async def add_booking(body: dict[str, Any], request: Request) -> Any:
        fields = {name: value for name, value in body.items() if name in BOOKING_FIELDS}
        return 201, fake.add_booking(_text(body, "api_key"), **fields)

    async def cancel(body: dict[str, Any], request: Request) -> Any:
        return fake.cancel_booking(request.path_params["uid"], **_pick(body, "status", "reason"))

    async def reschedule(body: dict[str, Any], request: Request) -> Any:
        return fake.reschedule_booking(request.path_params["uid"], **_pick(body, "start", "end", "new_uid"))

    async def add_seat(body: dict[str, Any], request: Request) -> Any:
        fields = _pick(body, "metadata", "seat_uid")
        return 201, fake.add_seat(request.path_params["uid"], _text(body, "email"), **fields)

    async def fail_next(body: dict[str, Any], request: Request) -> Any:
        fake.fail_next(_number(body, "n", int), _number(body, "status", int))
        return {"ok": True}

    async def fail_next_create(body: dict[str, Any], request: Request) -> Any:
        options = {name: _number(body, name, kind) for name, kind in (("delay", float), ("status", int)) if name in body}
        fake.fail_next_create(_text(body, "mode"), _number(body, "n", int) if "n" in body else 1, **options)
        return {"ok": True}

    async def release(body: dict[str, Any], request: Request) -> Any:
        held = fake.held
        fake.release_answers()
        return {"released": held}

    async def event_type(body: dict[str, Any], request: Request) -> Any:
        settings = {name: value for name, value in body.items() if name in EVENT_TYPE_FIELDS}
        return dataclasses.asdict(fake.set_event_type(_number(body, "id", int), **settings))

    async def webhook(body: dict[str, Any], request: Request) -> Any:
        secret = body.get("secret")
        if secret is not None and not isinstance(secret, str):
            raise ValueError("secret must be a string or null")
        fake.add_webhook(_text(body, "api_key"), _text(body, "url"), secret)
        return 201, {"ok": True}

    async def deliveries(body: dict[str, Any], request: Request) -> Any:
        return list(fake.deliveries)

    async def create_requests(body: dict[str, Any], request: Request) -> Any:
        return list(fake.create_requests)

    async def delay(body: dict[str, Any], request: Request) -> Any:
        fake.set_delay(_number(body, "seconds", float))
        return {"ok": True}

    async def down(body: dict[str, Any], request: Request) -> Any:
        if not isinstance(body.get("down"), bool):
            raise ValueError("down must be true or false")
        fake.set_down(body["down"])
        return {"ok": True}

    async def clock(body: dict[str, Any], request: Request) -> Any:
        now = body.get("now")
        moment = parse_time(now) if now is not None else None
        if now is not None and (moment is None or not isinstance(now, str)):
            raise ValueError("now must be an ISO 8601 time or null")
        fake.set_now(moment)
        return {"now": fake.clock().isoformat()}

    async def rate_limit(body: dict[str, Any], request: Request) -> Any:
        fake.limit = _number(body, "limit", int) if "limit" in body else fake.limit
        fake.window = _number(body, "window", float) if "window" in body else fake.window
        fake.block = _number(body, "block", float) if "block" in body else fake.block
        return {"limit": fake.limit, "window": fake.window, "block": fake.block}

    async def calls(body: dict[str, Any], request: Request) -> Any:
        return {
            "total": fake.calls,
            "by_key": dict(fake.calls_by_key),
            "creates": fake.creates,
            "creates_by_key": dict(fake.creates_by_key),
            "written": fake.written,
            "held": fake.held,
        }

    async def requests(body: dict[str, Any], request: Request) -> Any:
        return list(fake.requests)

    return [
        Route("/reset", _json(reset), methods=["POST"]),
        Route("/api-keys", _json(add_api_key), methods=["POST"]),
        Route("/bookings", _json(add_booking), methods=["POST"]),
        Route("/bookings/{uid}/cancel", _json(cancel), methods=["POST"]),
        Route("/bookings/{uid}/reschedule", _json(reschedule), methods=["POST"]),
        Route("/bookings/{uid}/seats", _json(add_seat), methods=["POST"]),
        Route("/fail-next", _json(fail_next), methods=["POST"]),
        Route("/fail-next-create", _json(fail_next_create), methods=["POST"]),
        Route("/release", _json(release), methods=["POST"]),
        Route("/event-types", _json(event_type), methods=["POST"]),
        Route("/webhooks", _json(webhook), methods=["POST"]),
        Route("/deliveries", _json(deliveries), methods=["GET"]),
        Route("/creates", _json(create_requests), methods=["GET"]),
        Route("/delay", _json(delay), methods=["POST"]),
        Route("/down", _json(down), methods=["POST"]),
        Route("/clock", _json(clock), methods=["POST"]),
        Route("/rate-limit", _json(rate_limit), methods=["POST"]),
        Route("/calls", _json(calls), methods=["GET"]),
        Route("/requests", _json(requests), methods=["GET"]),
    ]


def _json(action: Callable[[dict[str, Any], Request], Awaitable[Any]]) -> Handler:
    """Wrap an action: JSON object body in, JSON out; bad input → 400, unknown booking → 404."""

    async def endpoint(request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return JSONResponse({"error": "the body must be JSON"}, 400)
        if not isinstance(body, dict):
            return JSONResponse({"error": "the body must be a JSON object"}, 400)
        try:
            result = await action(body, request)
        except KeyError as exc:
            return JSONResponse({"error": str(exc.args[0]) if exc.args else "not found"}, 404)
        except (TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, 400)
        status, result = result if isinstance(result, tuple) else (200, result)
        return JSONResponse(result, status)

    return endpoint


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string")
    return value


def _number(body: dict[str, Any], name: str, kind: type) -> Any:
    value: Any = body.get(name)
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not numeric or (kind is int and not float(value).is_integer()):
        raise ValueError(f"{name} must be a number")
    return kind(value)


def _pick(body: dict[str, Any], *names: str) -> dict[str, Any]:
    return {name: body[name] for name in names if name in body}
