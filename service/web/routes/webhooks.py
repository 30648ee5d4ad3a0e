"""POST /webhooks/calcom/{account}: account (404), size (413), signature (401), shape (400), store (200).

Cal.com waits for this answer inside its own booking request, and a burst of webhooks meets this
code thousands of times a second, so it is plain ASGI: `WebhookReceiver` sits in front of the
routing and the request/response objects and handles these POSTs itself (other methods fall through
to the route, which answers 405). Errors answer exactly as everywhere else (the service's JSON error
body; an unexpected one reaches the app's 500 handler).

Every refusal is logged and counted by reason (/metrics), so a webhook Cal.com keeps failing to
deliver shows up before anyone misses a verification.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from service.app.ingest import Submission
from service.core.models import ACCOUNT_ID
from service.core.signatures import calcom_signature_valid
from service.core.tallies import WEBHOOK_REJECTIONS
from service.core.webhooks import parse
from service.errors import BadRequest, DatabaseUnavailable, NotFound, PayloadTooLarge, ServiceError, Unauthorized
from service.web.http import Disconnected, read_limited, service_error

log = logging.getLogger("service.core.webhooks")

PREFIX = "/webhooks/calcom/"
_STORED = b'{"ok":true,"stored":true}'
_DUPLICATE = b'{"ok":true,"stored":false,"duplicate":true}'
_IGNORED = b'{"ok":true,"stored":true,"ignored":true}'
_REASONS = {
    NotFound: "unknown_account",
    PayloadTooLarge: "too_large",
    Unauthorized: "bad_signature",
    BadRequest: "bad_payload",
    DatabaseUnavailable: "database_unavailable",
}


class WebhookReceiver:
    """Handles `POST /webhooks/calcom/{account}` before the routing; everything else goes on to `app`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].startswith(PREFIX):
            account = scope["path"][len(PREFIX) :]
            if account and "/" not in account:
                await receive_webhook(scope, receive, send, account)
                return
        await self.app(scope, receive, send)


async def receive_webhook(scope: Scope, receive: Receive, send: Send, account: str) -> None:
    services = scope["app"].state.services
    try:
        body = await _receive(services, scope, receive, account)
    except Disconnected:
        return
    except ServiceError as exc:
        reason = next((name for kind, name in _REASONS.items() if isinstance(exc, kind)), "other")
        services.tally.add(WEBHOOK_REJECTIONS, reason)
        if reason not in ("bad_signature", "database_unavailable"):  # those two log their own line
            log.warning(
                "webhook refused",
                extra={
                    "event": "webhook_rejected",
                    "reason": reason,
                    "status": exc.status_code,
                    "account": account[:64],
                    "error": exc.message[:300],
                },
            )
        await (await service_error(Request(scope, receive), exc))(scope, receive, send)
        return
    await send({"type": "http.response.start", "status": 200, "headers": _json_headers(len(body))})
    await send({"type": "http.response.body", "body": body})


def _json_headers(length: int) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"application/json"), (b"content-length", str(length).encode())]


def _unknown_account(account: str) -> NotFound:
    if ACCOUNT_ID.match(account.lower()) and account != account.lower():
        return NotFound(
            f"unknown account {account!r}: account ids are lower-case; the webhook URL would be /webhooks/calcom/{account.lower()}"
        )
    if not ACCOUNT_ID.match(account):
        return NotFound(f"unknown account {account[:64]!r}: account ids match [a-z0-9][a-z0-9_-]{{0,62}}")
    return NotFound(f"unknown account {account!r}: register it with PUT /api/accounts/{account} first")


def _signed_with_any(secrets: list[str], body: bytes, header: str | None) -> bool:
    """Signed with the current secret or, while a rotation runs, the previous one (each checked in constant time)."""
    return any([calcom_signature_valid(secret, body, header) for secret in secrets])


def _headers(scope: Scope) -> dict[bytes, bytes]:
    """The few request headers this endpoint reads (lower-case names, as ASGI gives them)."""
    return {name: value for name, value in scope["headers"] if name in _WANTED}


_WANTED = frozenset({b"content-length", b"content-type", b"x-cal-signature-256"})


async def _receive(services: Any, scope: Scope, receive: Receive, account: str) -> bytes:
    """Store the event; answer the body of the 200 (ServiceError for every refusal)."""
    secrets = await services.secrets.get(account) if ACCOUNT_ID.match(account) else None
    if secrets is None:
        raise _unknown_account(account)
    headers = _headers(scope)
    body = await read_limited(receive, headers.get(b"content-length"), services.settings.max_body_bytes)
    raw_signature = headers.get(b"x-cal-signature-256")
    signature = raw_signature.decode("latin-1") if raw_signature is not None else None
    if not _signed_with_any(secrets, body, signature):
        if services.secrets.age(account) > 0.05:
            secrets = await services.secrets.get(account, fresh=True)
        if secrets is None or not _signed_with_any(secrets, body, signature):
            log.warning(
                "webhook signature rejected",
                extra={"event": "webhook_signature_rejected", "account": account, "header_present": signature is not None},
            )
            raise Unauthorized("missing or wrong X-Cal-Signature-256 (HMAC-SHA256 of the raw body with the webhook secret)")
    received_at = services.clock()
    event = parse(body, headers.get(b"content-type", b"").decode("latin-1"), received_at)
    submission = Submission(
        account=account,
        body=body,
        body_sha256=hashlib.sha256(body).hexdigest(),
        event=event,
        received_at=received_at,
    )
    new = await services.ingestor.submit(submission)
    if not new:
        return _DUPLICATE
    if not event.concerns_bookings:
        return _IGNORED
    return _STORED


async def _other_methods(request: Request) -> Response:  # pragma: no cover - WebhookReceiver answers every POST
    raise AssertionError("WebhookReceiver handles POST /webhooks/calcom/{account}")


# Registered so that the path is known: GET and the like get the router's 405, POST never gets here.
routes = [Route("/webhooks/calcom/{account}", _other_methods, methods=["POST"])]
