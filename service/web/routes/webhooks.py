"""POST /webhooks/calcom/{account}: account (404), size (413), signature (401), shape (400), store (200)."""

from __future__ import annotations

import hashlib
import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.app.ingest import Submission
from service.core.models import ACCOUNT_ID
from service.core.signatures import calcom_signature_valid
from service.core.webhooks import parse
from service.errors import NotFound, Unauthorized
from service.web.http import read_body

log = logging.getLogger("service.core.webhooks")

_STORED = Response(b'{"ok":true,"stored":true}', media_type="application/json")
_DUPLICATE = Response(b'{"ok":true,"stored":false,"duplicate":true}', media_type="application/json")
_IGNORED = Response(b'{"ok":true,"stored":true,"ignored":true}', media_type="application/json")


async def calcom_webhook(request: Request) -> Response:
    services = request.app.state.services
    account = request.path_params["account"]
    secret = await services.secrets.get(account) if ACCOUNT_ID.match(account) else None
    if secret is None:
        raise NotFound(f"unknown account {account!r}: register it with PUT /api/accounts/{account} first")
    body = await read_body(request, services.settings.max_body_bytes)
    header = request.headers.get("x-cal-signature-256")
    if not calcom_signature_valid(secret, body, header):
        if services.secrets.age(account) > 0.05:
            secret = await services.secrets.get(account, fresh=True)
        if secret is None or not calcom_signature_valid(secret, body, header):
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
