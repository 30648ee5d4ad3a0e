"""A small open-loop HTTP/1.1 client for benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from kit_base import *
from kit_load import *

# --- a small open-loop HTTP/1.1 client ----------------------------------------------------------------


class Client:
    """Keep-alive HTTP/1.1 over asyncio streams: little client overhead, one request per connection at a time."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.host, self.port = host, port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self.opened = 0

    async def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        for attempt in (1, 2):
            reader, writer = await self._connection()
            writer.write(data)
            status_line = await reader.readline()
            if status_line:
                break
            # uvicorn closes keep-alive connections idle for 5 s; the request was not read: resend once.
            writer.close()
            if attempt == 2:
                raise ConnectionError("the server closed the connection without answering")
        length = 0
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value.strip())
        payload = await reader.readexactly(length) if length else b""
        self.idle.append((reader, writer, time.monotonic()))
        return int(status_line.split()[1]), payload

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while self.idle:
            reader, writer, since = self.idle.pop()
            if time.monotonic() - since < 3.0:
                return reader, writer
            writer.close()
        self.opened += 1
        return await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        for _, writer, _since in self.idle:
            writer.close()
        self.idle.clear()


async def post_webhook(client: Client, booking: Booking) -> tuple[int, bytes]:
    return await client.request(
        "POST", booking.path, booking.body, {"Content-Type": "application/json", "X-Cal-Signature-256": booking.signature}
    )


async def api(client: Client, method: str, path: str, payload: Any = None) -> tuple[int, Any]:
    body = json.dumps(payload).encode() if payload is not None else b""
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    if payload is not None:
        headers["Content-Type"] = "application/json"
    status, raw = await client.request(method, path, body, headers)
    return status, (json.loads(raw) if raw else None)


def run_async(coro: Any) -> Any:
    with contextlib.suppress(ImportError):
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)
