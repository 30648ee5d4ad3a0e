"""`/calcom/{account}/…`: the booking guard, a pass-through to the account's own Cal.com.

Everything is forwarded unchanged (hop-by-hop headers aside) and answered unchanged, streamed;
`POST /v2/bookings` is tagged, made idempotent and answered with the truth (app/guard_create.py).
Unknown account 404, wrong bearer 401, a path leaving the account's base 400: nothing forwarded.
"""

from __future__ import annotations

import json

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from service.app.guard_create import Outcome
from service.clients.forward import Unreachable
from service.web.http import read_body

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
CREATE_PATHS = ("v2/bookings", "v2/bookings/")


def _rest(request: Request) -> str:
    """The path after `/calcom/{account}/`, still percent-encoded as the client sent it."""
    raw = request.scope.get("raw_path") or request.scope["path"].encode("utf-8")
    path = raw.decode("latin-1").split("?", 1)[0]
    parts = path.split("/", 3)  # "", "calcom", account, rest
    return parts[3] if len(parts) > 3 else ""


async def calcom(request: Request) -> Response:
    services = request.app.state.services
    guard = services.guard
    account = await guard.admit(request.path_params["account"], request.headers.get("authorization"))
    rest = _rest(request)
    url = guard.target(account, rest, request.scope.get("query_string", b"").decode("latin-1"))
    body = await read_body(request, services.settings.max_body_bytes)
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
    if request.method == "POST" and rest in CREATE_PATHS:
        outcome: Outcome = await services.bookings.create(account, url, headers, body, request.headers.get("idempotency-key"))
        return Response(outcome.body, outcome.status, headers=outcome.headers)
    try:
        answer = await guard.forwarder.open(request.method, url, headers, body, services.settings.guard_calcom_timeout_seconds)
    except Unreachable as exc:
        problem = {"status": "error", "error": {"code": "calcom_unreachable", "message": str(exc)}}
        return Response(json.dumps(problem), 502, media_type="application/json")
    response = StreamingResponse(
        answer.chunks(), answer.status, background=BackgroundTask(guard.note_pace, account, answer.status, dict(answer.headers))
    )
    response.raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers]
    return response


routes = [Route("/calcom/{account}/{path:path}", calcom, methods=METHODS)]
