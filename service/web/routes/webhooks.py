"""POST /webhooks/calcom/{account}: account (404), size (413), signature (401), shape (400), store (200).

Every refusal is logged and counted by reason (/metrics), so a webhook Cal.com keeps failing to
deliver shows up before anyone misses a verification.
"""

from __future__ import annotations

import hashlib
import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.app.ingest import Submission
from service.core.models import ACCOUNT_ID
from service.core.signatures import calcom_signature_valid
from service.core.tallies import WEBHOOK_REJECTIONS
from service.core.webhooks import parse
from service.errors import BadRequest, DatabaseUnavailable, NotFound, PayloadTooLarge, ServiceError, Unauthorized
from service.web.http import read_body

log = logging.getLogger("service.core.webhooks")

_STORED = Response(b'{"ok":true,"stored":true}', media_type="application/json")
_DUPLICATE = Response(b'{"ok":true,"stored":false,"duplicate":true}', media_type="application/json")
_IGNORED = Response(b'{"ok":true,"stored":true,"ignored":true}', media_type="application/json")
_REASONS = {
    NotFound: "unknown_account",
    PayloadTooLarge: "too_large",
    Unauthorized: "bad_signature",
    BadRequest: "bad_payload",
    DatabaseUnavailable: "database_unavailable",
}


async def calcom_webhook(request: Request) -> Response:
    try:
        return await _receive(request)
    except ServiceError as exc:
        reason = next((name for kind, name in _REASONS.items() if isinstance(exc, kind)), "other")
        request.app.state.services.tally.add(WEBHOOK_REJECTIONS, reason)
        if reason not in ("bad_signature", "database_unavailable"):  # those two log their own line
            log.warning(
                "webhook refused",
                extra={
                    "event": "webhook_rejected",
                    "reason": reason,
                    "status": exc.status_code,
                    "account": request.path_params["account"][:64],
                    "error": exc.message[:300],
                },
            )
        raise


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


async def _receive(request: Request) -> Response:
    services = request.app.state.services
    account = request.path_params["account"]
    secrets = await services.secrets.get(account) if ACCOUNT_ID.match(account) else None
    if secrets is None:
        raise _unknown_account(account)
    body = await read_body(request, services.settings.max_body_bytes)
    header = request.headers.get("x-cal-signature-256")
    if not _signed_with_any(secrets, body, header):
        if services.secrets.age(account) > 0.05:
            secrets = await services.secrets.get(account, fresh=True)
        if secrets is None or not _signed_with_any(secrets, body, header):
            log.warning(
                "webhook signature rejected",
                extra={"event": "webhook_signature_rejected", "account": account, "header_present": header is not None},
            )
            raise Unauthorized("missing or wrong X-Cal-Signature-256 (HMAC-SHA256 of the raw body with the webhook secret)")
    received_at = services.clock()
    event = parse(body, request.headers.get("content-type", ""), received_at)
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


routes = [Route("/webhooks/calcom/{account}", calcom_webhook, methods=["POST"])]
