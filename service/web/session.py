"""The console's sessions: a signed cookie, CSRF tokens bound to it, and the security headers.

The cookie holds a random session id and, once signed in, the operator's name, signed with
CONSOLE_SESSION_KEY (itsdangerous: HMAC-SHA1 over the value and its timestamp, checked against
CONSOLE_SESSION_HOURS). A CSRF token is an HMAC of the session id under the same key, so a form is
only accepted from a page this session was served; the API token never signs in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from itsdangerous import BadSignature, TimestampSigner, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE = "console_session"
PATH = "/console"

# No inline script or style anywhere, nothing from another origin; SVG charts use attributes only.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


@dataclass(frozen=True)
class Session:
    sid: str
    operator: str | None
    epoch: int = 0  # the operator's session epoch when signed in (signing out raises it)


class Sessions:
    """Reading, writing and ending console sessions under one key."""

    def __init__(self, key: str | None, hours: float, clock: Callable[[], datetime] | None = None) -> None:
        self.key = key
        self.max_age = int(hours * 3600)
        signer: type[TimestampSigner] = TimestampSigner
        if clock is not None:
            now = clock

            # The service's clock stamps and ages the cookie (tests move it; nothing sleeps).
            class Signer(TimestampSigner):
                def get_timestamp(self) -> int:
                    return int(now().timestamp())

            signer = Signer
        self.serializer = URLSafeTimedSerializer(key, salt="console-session", signer=signer) if key else None

    @property
    def configured(self) -> bool:
        return self.serializer is not None

    def read(self, request: Request) -> Session | None:
        """The session the request's cookie carries, if it is signed with our key and not expired."""
        value = request.cookies.get(COOKIE)
        if not value or self.serializer is None or len(value) > 4096:
            return None
        try:
            data: Any = self.serializer.loads(value, max_age=self.max_age)
        except BadSignature:  # also SignatureExpired
            return None
        if not isinstance(data, dict) or not isinstance(data.get("sid"), str):
            return None
        operator, epoch = data.get("op"), data.get("ep")
        return Session(data["sid"], operator if isinstance(operator, str) else None, epoch if isinstance(epoch, int) else -1)

    def new(self, operator: str | None = None, epoch: int = 0) -> Session:
        return Session(secrets.token_urlsafe(24), operator, epoch)

    def write(self, response: Response, request: Request, session: Session) -> None:
        assert self.serializer is not None
        value = self.serializer.dumps({"sid": session.sid, "op": session.operator, "ep": session.epoch})
        response.set_cookie(
            COOKIE, value, max_age=self.max_age, path=PATH, httponly=True, samesite="strict", secure=request.url.scheme == "https"
        )

    def end(self, response: Response, request: Request) -> None:
        response.delete_cookie(COOKIE, path=PATH, httponly=True, samesite="strict", secure=request.url.scheme == "https")

    def csrf(self, session: Session) -> str:
        assert self.key is not None
        return hmac.new(self.key.encode(), f"csrf:{session.sid}".encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: Session | None, token: object) -> bool:
        # compare_digest: the time taken does not tell how much of a guessed token was right.
        return session is not None and isinstance(token, str) and hmac.compare_digest(self.csrf(session), token)


class SecurityHeaders:
    """Adds the console's security headers to every response under /console."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not (scope["path"] == PATH or scope["path"].startswith(PATH + "/")):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in HEADERS}
                message["headers"] = [h for h in message.get("headers", []) if h[0].lower() not in names] + HEADERS
            await send(message)

        await self.app(scope, receive, with_headers)
