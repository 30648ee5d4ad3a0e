"""Where the service may send requests: `https://` hosts on public addresses only (no SSRF).

An account's `callback_url` and `calcom_api_base` are checked when the account is saved
(`check_target`: IP literals, and names that resolve to loopback, private, link-local, metadata or
other non-public addresses are refused; a name that does not resolve yet is accepted), and again
for the address actually connected to (`GuardedTransport`: the name is resolved, every address is
checked, and the connection goes to the checked address, so a DNS answer that changes between the
check and the connection — DNS rebinding — cannot send a request inside). `ALLOW_PRIVATE_TARGETS`
lifts both checks for development and tests, whose fakes listen on localhost over plain HTTP.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

import httpx


class PrivateTarget(httpx.ConnectError):
    """A request to a non-public or non-https target, refused before connecting."""


def is_public(address: str) -> bool:
    """A globally routable unicast address (not loopback, private, link-local, shared, reserved, multicast)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (tests replace this function to play DNS)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def _literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


async def refusal(url: str, *, resolve_required: bool) -> str | None:
    """Why `url` may not be a target (one line, without its path or query), or None.

    `resolve_required`: a name that does not resolve is refused (at connect time) or accepted (when saved).
    """
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme != "https":
        return "must be an https:// URL"
    if not host:
        return "must name a host"
    if host == "localhost" or host.endswith(".localhost"):
        return f"{host} is this machine: loopback addresses are refused"
    if _literal(host):
        return (
            None
            if is_public(host)
            else f"{host} is not a public address (loopback, private, link-local and metadata addresses are refused)"
        )
    try:
        addresses = await resolve(host, parts.port or 443)
    except (OSError, UnicodeError):
        return f"{host} does not resolve" if resolve_required else None
    if not addresses:
        return f"{host} does not resolve" if resolve_required else None
    private = [a for a in addresses if not is_public(a)]
    if private:
        return f"{host} resolves to {private[0]}, not a public address (loopback, private, link-local and metadata addresses are refused)"
    return None


async def check_target(url: str | None, *, allow_private: bool) -> str | None:
    """When an account is saved: why its URL is refused, or None."""
    if url is None or allow_private:
        return None
    return await refusal(url, resolve_required=False)


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport that connects only to checked public addresses (unless private targets are allowed).

    The host is resolved here, every address it resolves to must be public, and the request goes to
    the first of them with the original name kept for TLS (SNI, certificate check) and the Host header.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport | None = None, *, allow_private: bool, **options: object) -> None:
        self._inner = inner if inner is not None else httpx.AsyncHTTPTransport(**options)  # type: ignore[arg-type]
        self._allow_private = allow_private

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._allow_private:
            return await self._inner.handle_async_request(request)
        host = request.url.host
        if request.url.scheme != "https":
            raise PrivateTarget(f"refused: {request.url.scheme}://{host} is not https", request=request)
        if _literal(host):
            if not is_public(host):
                raise PrivateTarget(f"refused: {host} is not a public address", request=request)
            return await self._inner.handle_async_request(request)
        if host == "localhost" or host.endswith(".localhost"):
            raise PrivateTarget(f"refused: {host} is this machine", request=request)
        # One lookup: every address it gives is checked, and the connection goes to one of those, not
        # to whatever a second lookup by the connection would answer (DNS rebinding).
        try:
            addresses = await resolve(host, request.url.port or 443)
        except (OSError, UnicodeError):
            raise PrivateTarget(f"refused: {host} does not resolve", request=request) from None
        private = [a for a in addresses if not is_public(a)]
        if not addresses or private:
            where = private[0] if private else "nothing"
            raise PrivateTarget(f"refused: {host} resolves to {where}, not a public address", request=request)
        address = addresses[0]
        request.url = request.url.copy_with(host=address)
        request.extensions = {**request.extensions, "sni_hostname": host}
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()
