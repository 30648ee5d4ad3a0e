"""Signatures: checking Cal.com's, making Standard Webhooks ones for our callbacks. Pure."""

from __future__ import annotations

import base64
import hashlib
import hmac

NO_SECRET = "no-secret-provided"


def calcom_signature(secret: str, body: bytes) -> str:
    """What Cal.com sends in X-Cal-Signature-256: hex HMAC-SHA256 of the raw body."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def calcom_signature_valid(secret: str, body: bytes, header: str | None) -> bool:
    """Check the raw body's signature in constant time (compare_digest: no early exit to time)."""
    if not header or not secret or header.strip() == NO_SECRET:
        return False
    expected = calcom_signature(secret, body)
    return hmac.compare_digest(expected.encode("ascii"), header.strip().lower().encode("ascii", "replace"))


def standard_webhooks_key(secret: str) -> bytes:
    """The signing key of a `whsec_…` secret: the bytes its base64 part decodes to."""
    return base64.b64decode(secret.removeprefix("whsec_"))


def standard_webhooks_signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, as the Standard Webhooks libraries make it."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(standard_webhooks_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def token_valid(expected: str, presented: str | None) -> bool:
    """Bearer token check in constant time."""
    if presented is None:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), presented.encode("utf-8", "replace"))
