"""The webhook endpoint is plain ASGI in front of the routing: what it reads, and what it leaves to the router."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import httpx

from service.store.connector import Database, sql

from .helpers import booking_event, create_account, signed

START = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)


def scope_for(app: Any, body_length: int | None, signature: str, account: str = "salon-1") -> dict[str, Any]:
    headers = [(b"content-type", b"application/json"), (b"x-cal-signature-256", signature.encode())]
    if body_length is not None:
        headers.append((b"content-length", str(body_length).encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": f"/webhooks/calcom/{account}",
        "raw_path": f"/webhooks/calcom/{account}".encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "app": app,
    }


async def call(app: Any, scope: dict[str, Any], chunks: list[bytes], *, endless: bytes | None = None) -> tuple[int, bytes, int]:
    """Send the body in `chunks` (then `endless` for ever, if given); answer status, body and how many chunks were read."""
    read = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal read
        read += 1
        if read <= len(chunks):
            return {"type": "http.request", "body": chunks[read - 1], "more_body": read < len(chunks) or endless is not None}
        assert endless is not None, "read past the end of the body"
        return {"type": "http.request", "body": endless, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body, read


async def stored(db: Database) -> int:
    async with db.read() as tx:
        return int((await tx.fetch_one(sql("SELECT COUNT(*) AS n FROM webhook_events")))["n"])  # type: ignore[index]


async def test_a_body_sent_in_chunks_is_stored_once_whole(app: Any, client: httpx.AsyncClient, db: Database) -> None:
    await create_account(client)
    request = signed(booking_event(uid="bk-chunks", start=START))
    body = request.body
    parts = [body[:100], body[100:1000], body[1000:]]
    status, answer, read = await call(app, scope_for(app, None, request.headers["X-Cal-Signature-256"]), parts)
    assert (status, json.loads(answer), read) == (200, {"ok": True, "stored": True}, 3)
    assert await stored(db) == 1


async def test_an_endless_body_without_a_length_is_refused_once_past_the_limit(
    app: Any, client: httpx.AsyncClient, db: Database, settings: Any
) -> None:
    await create_account(client)
    chunk = b"x" * 4096
    status, answer, read = await call(app, scope_for(app, None, "00"), [b'{"triggerEvent":"'], endless=chunk)
    assert status == 413 and json.loads(answer)["error"]["code"]
    assert read <= settings.max_body_bytes // len(chunk) + 2  # stopped at the limit, not at the end of the stream
    assert await stored(db) == 0


async def test_a_declared_length_over_the_limit_is_refused_before_any_read(app: Any, client: httpx.AsyncClient, settings: Any) -> None:
    await create_account(client)
    status, _, read = await call(app, scope_for(app, settings.max_body_bytes + 1, "00"), [], endless=b"x")
    assert (status, read) == (413, 0)


async def test_other_methods_and_deeper_paths_are_the_router_s(client: httpx.AsyncClient) -> None:
    await create_account(client)
    assert (await client.get("/webhooks/calcom/salon-1")).status_code == 405
    assert (await client.post("/webhooks/calcom/salon-1/extra", content=b"{}")).status_code == 404


async def test_an_unexpected_error_is_the_app_s_json_500(app: Any, client: httpx.AsyncClient, monkeypatch: Any) -> None:
    await create_account(client)

    async def broken(submission: Any) -> bool:
        raise RuntimeError("boom")

    monkeypatch.setattr(app.state.services.ingestor, "submit", broken)
    request = signed(booking_event(uid="bk-boom", start=START))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://verifier.test") as plain:
        response = await plain.post("/webhooks/calcom/salon-1", content=request.body, headers=request.headers)
    assert response.status_code == 500
    assert response.json() == {"error": {"code": "internal_error", "message": "internal error; see the service log"}}
