"""HTTP forwarding to an account's Cal.com, for the booking guard: requests passed on unchanged.

Only end-to-end headers travel (hop-by-hop ones are dropped both ways); answers are streamed back
raw, so a compressed body stays compressed and its Content-Length stays right. httpx adds no
headers of its own here (no default Accept-Encoding or User-Agent).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from service.clients.targets import GuardedTransport

# RFC 9110 section 7.6.1 and the old RFC 2616 list; `host` and `content-length` are the forwarder's own.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


class Unreachable(Exception):
    """Cal.com gave no answer: a timeout, a refused connection, a broken answer."""

    def __init__(self, reason: str, *, timeout: bool) -> None:
        super().__init__(reason)
        self.timeout = timeout


class Streamed:
    """An answer being streamed: status, end-to-end headers, the raw body chunks."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status = response.status_code
        self.headers = end_to_end(response.headers.multi_items())
        # Content-Length is hop-by-hop for us, but the raw body is passed unchanged: keep the length.
        length = response.headers.get("content-length")
        if length is not None:
            self.headers.append(("content-length", length))

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_raw():
                yield chunk
        except httpx.HTTPError:
            return  # Cal.com broke off mid-answer: the platform sees a short body, as it would directly
        finally:
            await self._response.aclose()

    async def close(self) -> None:
        await self._response.aclose()


@dataclass
class Answer:
    """A complete (buffered) answer."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)


def end_to_end(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The headers without the hop-by-hop ones (and without those a `Connection` header names)."""
    pairs = list(headers)
    named = {t.strip().lower() for k, v in pairs if k.lower() == "connection" for t in v.split(",")}
    return [(k, v) for k, v in pairs if k.lower() not in HOP_BY_HOP and k.lower() not in named]


class Forwarder:
    """Sends requests to Cal.com on one shared connection pool."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    def _request(self, method: str, url: str, headers: list[tuple[str, str]], body: bytes) -> httpx.Request:
        request = self._http.build_request(method, url, content=body if body else None)
        request.headers = httpx.Headers(end_to_end(headers))
        request.headers["host"] = request.url.netloc.decode("ascii")  # Cal.com's host, never the verifier's
        if body:
            request.headers["content-length"] = str(len(body))
        return request

    async def open(self, method: str, url: str, headers: list[tuple[str, str]], body: bytes, within: float) -> Streamed:
        """The answer's status and headers, its body still to be read (raw) and closed by the caller."""
        request = self._request(method, url, headers, body)
        try:
            response = await asyncio.wait_for(self._http.send(request, stream=True), within)
        except (TimeoutError, httpx.TimeoutException):
            raise Unreachable("Cal.com did not answer in time", timeout=True) from None
        except httpx.HTTPError as exc:  # never the exception itself: it holds the Authorization header
            raise Unreachable(f"Cal.com could not be reached ({type(exc).__name__})", timeout=False) from None
        return Streamed(response)

    async def send(
        self, method: str, url: str, headers: list[tuple[str, str]], body: bytes, within: float, *, params: dict[str, str] | None = None
    ) -> Answer:
        """One request, its whole answer read within `within` seconds."""
        request = self._request(method, url, headers, body)
        if params:
            request.url = request.url.copy_merge_params(params)

        async def exchange() -> Answer:
            response = await self._http.send(request)
            # The body comes decoded: its Content-Encoding no longer applies.
            headers = [(k, v) for k, v in end_to_end(response.headers.multi_items()) if k.lower() != "content-encoding"]
            return Answer(response.status_code, headers, response.content)

        try:
            return await asyncio.wait_for(exchange(), within)
        except (TimeoutError, httpx.TimeoutException):
            raise Unreachable("Cal.com did not answer in time", timeout=True) from None
        except httpx.HTTPError as exc:
            raise Unreachable(f"Cal.com could not be reached ({type(exc).__name__})", timeout=False) from None


@asynccontextmanager
async def forwarding(*, transport: Any = None, allow_private: bool = False) -> AsyncIterator[Forwarder]:
    """A forwarder with its own pool, closed on exit (`transport`: tests route it to a fake).

    Like every client of ours it connects to public https hosts only, checked at each connection,
    unless `allow_private` (ALLOW_PRIVATE_TARGETS)."""
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    guarded = GuardedTransport(transport, allow_private=allow_private, limits=limits)
    # Timeouts are the caller's (asyncio.wait_for over the whole exchange); httpx's own stay generous.
    async with httpx.AsyncClient(follow_redirects=False, transport=guarded, timeout=httpx.Timeout(300.0)) as http:
        http.headers.clear()
        yield Forwarder(http)
