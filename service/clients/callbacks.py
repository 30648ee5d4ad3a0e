"""Sending verdict callbacks: one signed POST (Standard Webhooks) and a short, safe account of its outcome."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

import httpx

from service.core.signatures import standard_webhooks_signature
from service.logs import REDACTED, secret_registry

USER_AGENT = "calcom-post-sync-verifier/0.1 (verdict callback)"
BODY_SNIPPET_CHARS = 120
HEAD_BYTES = 2048  # far past the snippet, so a secret cut at this edge lies beyond the snippet too
ERROR_CHARS = 200


@dataclass(frozen=True)
class Attempt:
    """What one POST got: the HTTP status (None when no answer came) and a short, safe error."""

    status: int | None
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class CallbackSender:
    """POSTs events with a shared `httpx.AsyncClient`; redirects are never followed."""

    def __init__(self, http: httpx.AsyncClient, *, timeout: float) -> None:
        self._http = http
        self._timeout = timeout

    async def post(self, url: str, secret: str, event_id: str, body: bytes, signed_at: datetime, *, previous: str | None = None) -> Attempt:
        """POST one signed event to the account's callback URL, once; never raises for the receiver's sake.

        `previous`: a callback secret being replaced also signs (space-separated signatures, which
        Standard Webhooks verifiers accept when any one matches)."""
        # Receivers refuse timestamps more than 5 minutes off: sign with the time of sending.
        timestamp = int(signed_at.timestamp())
        signatures = [standard_webhooks_signature(key, event_id, timestamp, body) for key in (secret, previous) if key]
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": event_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": " ".join(signatures),
        }
        try:
            # httpx's timeout is per operation (connect, write, read); this caps the whole attempt.
            async with asyncio.timeout(self._timeout):
                async with self._http.stream(
                    "POST", url, content=body, headers=headers, timeout=self._timeout, follow_redirects=False
                ) as response:
                    if response.is_success:
                        return Attempt(response.status_code, None)
                    snippet = await _head(response)
        except (httpx.TimeoutException, TimeoutError):
            return Attempt(None, f"timed out after {self._timeout:g} s")
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return Attempt(None, _clean(_describe(exc, url), url, secret, previous))
        text = f"HTTP {response.status_code}"
        if 300 <= response.status_code < 400:
            text += " (redirects are not followed)"
        # Cleaned before it is cut, so a secret at the cut cannot survive as a fragment.
        snippet = _clean(snippet, url, secret, previous)
        if snippet:
            text += ": " + snippet[:BODY_SNIPPET_CHARS] + ("…" if len(snippet) > BODY_SNIPPET_CHARS else "")
        return Attempt(response.status_code, text)


async def _head(response: httpx.Response) -> str:
    """The start of an error answer's body (a few KiB at most), whitespace collapsed."""
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in response.aiter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size >= HEAD_BYTES:
                break
    except httpx.HTTPError:
        pass
    return " ".join(b"".join(chunks)[:HEAD_BYTES].decode("utf-8", "replace").split())


def _describe(exc: BaseException, url: str) -> str:
    """The exception's class and message, unless the message repeats the URL's path, query or credentials."""
    name = type(exc).__name__
    detail = " ".join(str(exc).split())
    parts = urlsplit(url)
    private = [p for p in (parts.path, parts.query, parts.username, parts.password) if p and p != "/"]
    if not detail or any(p in detail for p in private):
        return name
    return f"{name}: {detail}"


def _clean(text: str, url: str, secret: str, previous: str | None = None) -> str:
    """Short, without the callback URL's path, query or credentials, the callback secrets or any other known secret."""
    parts = urlsplit(url)
    text = text.replace(url, f"{parts.scheme}://{parts.hostname}/…")
    old = (previous, previous.removeprefix("whsec_")) if previous else ()
    for value in (secret, secret.removeprefix("whsec_"), *old, parts.query, parts.path, parts.username, parts.password):
        if value and len(value) >= 2:
            text = text.replace(value, REDACTED)
    return secret_registry.scrub(text)[:ERROR_CHARS]
