"""The guard's pass-through: everything forwarded unchanged, only for the account's own key, only to its own base."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest

from service.core.guard import safe_rest
from service.store.connector import Database, sql
from service.testing.fakecalcom import FakeCalcom

from .guard_kit import (  # noqa: F401 (fixtures)
    CALCOM,
    PLATFORM,
    START,
    calcom_transport,
    fake,
    guard_timeout,
    hooks,
    salon,
    settings,
)
from .helpers import API_KEY, AUTH, create_account


async def test_a_read_is_forwarded_with_its_query_and_answered_unchanged(client, fake: FakeCalcom, salon) -> None:
    fake.add_booking(API_KEY, uid="bk-1", start=START, end=START + timedelta(minutes=30))
    direct_http = httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app), base_url=CALCOM)
    async with direct_http:
        direct = await direct_http.get("/v2/bookings?take=5&status=upcoming", headers=PLATFORM)
    before = fake.calls

    response = await client.get("/calcom/salon-1/v2/bookings?take=5&status=upcoming", headers={**PLATFORM, "Connection": "keep-alive"})

    assert fake.calls == before + 1
    assert response.status_code == direct.status_code == 200
    assert response.content == direct.content
    assert response.headers["x-ratelimit-limit-default"] == direct.headers["x-ratelimit-limit-default"]


async def test_a_forwarded_reads_rate_limit_reading_feeds_the_keys_pace(client, fake: FakeCalcom, salon, db: Database) -> None:
    await client.get("/calcom/salon-1/v2/bookings", headers=PLATFORM)
    for _ in range(50):  # the reading is written after the answer went out
        async with db.read() as tx:
            rows = await tx.fetch_all(sql("SELECT remaining FROM calcom_keys"))
        if rows:
            break
        await asyncio.sleep(0)
    assert rows and rows[0]["remaining"] is not None


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-key", f"Basic {API_KEY}", f"Bearer {API_KEY}x", "Bearer "])
async def test_without_the_accounts_own_key_nothing_is_forwarded(client, fake: FakeCalcom, salon, authorization: str | None) -> None:
    headers = {"cal-api-version": "2024-08-13", **({"Authorization": authorization} if authorization is not None else {})}

    read = await client.get("/calcom/salon-1/v2/bookings", headers=headers)
    create = await client.post("/calcom/salon-1/v2/bookings", json={"start": "2026-12-01T10:00:00Z"}, headers=headers)

    assert read.status_code == create.status_code == 401
    assert fake.calls == 0 and fake.creates == 0
    assert API_KEY not in read.text


async def test_an_unknown_account_or_a_switched_off_guard_is_404(client, fake: FakeCalcom, salon) -> None:
    assert (await client.get("/calcom/nobody/v2/bookings", headers=PLATFORM)).status_code == 404
    await create_account(client, "salon-2", calcom_api_base=CALCOM, guard=False)
    assert (await client.get("/calcom/salon-2/v2/bookings", headers=PLATFORM)).status_code == 404
    assert fake.calls == 0


@pytest.mark.parametrize(
    "path",
    [
        "%2e%2e/api/verifications",
        "v2/%2E%2E/%2e%2e/x",
        "v2%2fbookings",
        "/evil.example/v2/bookings",
        "@evil.example/v2",
        "http://evil.example/v2",
        "v2/..%2fx",
        "v2%5c..%5cx",
    ],
)
async def test_a_path_leaving_the_accounts_base_is_refused_and_nothing_forwarded(client, fake: FakeCalcom, salon, path: str) -> None:
    response = await client.get(f"/calcom/salon-1/{path}", headers=PLATFORM)

    assert response.status_code == 400, response.text
    assert fake.calls == 0 and fake.creates == 0


@pytest.mark.parametrize(
    "rest",
    [
        "..",
        "../x",
        "v2/../../x",
        "./v2",
        "v2/./x",
        "//evil",
        "a\\b",
        "http://evil",
        "u@evil",
        "%2e%2e",
        "x%2F..",
        "v2/bookings#x",
        "v2/%00",
    ],
)
def test_unsafe_paths_are_recognised(rest: str) -> None:
    assert not safe_rest(rest)


@pytest.mark.parametrize("rest", ["v2/bookings", "v2/bookings/abc-123", "v2/bookings/abc/cancel", "v2/event-types", ""])
def test_plain_paths_pass(rest: str) -> None:
    assert safe_rest(rest)


async def test_a_body_over_the_limit_is_413_and_not_forwarded(client, fake: FakeCalcom, salon) -> None:
    response = await client.post("/calcom/salon-1/v2/bookings", content=b"x" * 70_000, headers=PLATFORM)

    assert response.status_code == 413 and fake.creates == 0


async def test_the_api_token_is_not_the_guards_key(client, fake: FakeCalcom, salon) -> None:
    response = await client.get("/calcom/salon-1/v2/bookings", headers={**AUTH, "cal-api-version": "2024-08-13"})
    assert response.status_code == 401 and fake.calls == 0


@pytest.mark.parametrize("guard_timeout", [60.0])
async def test_a_create_held_by_a_slow_cal_com_blocks_no_other_request(client, fake: FakeCalcom, salon, guard_timeout: float) -> None:
    from .guard_kit import book

    fake.fail_next_create("slow_answer")
    held = asyncio.create_task(book(client))
    await fake.wait_until_held()

    read = await client.get("/calcom/salon-1/v2/bookings", headers=PLATFORM)
    api = await client.get("/api/verifications", headers=AUTH)
    other = await book(client, start="2026-12-01T12:00:00Z")

    assert (read.status_code, api.status_code, other.status_code) == (200, 200, 201)
    assert not held.done()
    fake.release_answers()
    assert (await held).status_code == 201


async def test_the_forwarded_request_names_cal_coms_host_and_carries_no_hop_by_hop_header() -> None:
    from service.clients.forward import forwarding

    seen: list[httpx.Request] = []

    def calcom(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, headers={"X-RateLimit-Remaining-Default": "7", "Keep-Alive": "timeout=5"}, content=b"{}")

    # Private targets allowed: the made-up host resolves nowhere (the connection check is tested below).
    async with forwarding(transport=httpx.MockTransport(calcom), allow_private=True) as forwarder:
        headers = [
            ("Host", "verifier.example"),
            ("Connection", "keep-alive, x-private"),
            ("X-Private", "1"),
            ("Authorization", f"Bearer {API_KEY}"),
            ("cal-api-version", "2024-08-13"),
            ("Transfer-Encoding", "chunked"),
        ]
        answer = await forwarder.send("POST", "https://api.cal.example/v2/bookings", headers, b'{"a":1}', 5)

    sent = seen[0].headers
    assert sent["host"] == "api.cal.example" and sent["authorization"] == f"Bearer {API_KEY}"
    assert sent["cal-api-version"] == "2024-08-13" and sent["content-length"] == "7"
    assert "x-private" not in sent and "connection" not in sent and "transfer-encoding" not in sent
    assert answer.header("x-ratelimit-remaining-default") == "7" and answer.header("keep-alive") is None


async def test_the_forwarder_connects_to_public_https_hosts_only() -> None:
    """An account's base is checked when saved; the forwarder checks again at each connection (DNS rebinding)."""
    from service.clients.forward import Unreachable, forwarding

    seen: list[httpx.Request] = []

    def calcom(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"{}")

    async with forwarding(transport=httpx.MockTransport(calcom)) as forwarder:
        for target in ("https://127.0.0.1/v2/bookings", "http://api.cal.com/v2/bookings", "https://169.254.169.254/v2/bookings"):
            with pytest.raises(Unreachable):
                await forwarder.send("GET", target, [("Authorization", f"Bearer {API_KEY}")], b"", 5)
    assert seen == []


@pytest.mark.parametrize("method, path", [("POST", "/v2/bookings/abc/cancel"), ("DELETE", "/v2/bookings/abc"), ("GET", "/v2/me")])
async def test_any_other_request_comes_back_exactly_as_cal_com_answered_it(client, fake: FakeCalcom, salon, method: str, path: str) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app), base_url=CALCOM) as direct_http:
        direct = await direct_http.request(method, path, headers=PLATFORM, content=b'{"reason":"x"}')

    response = await client.request(method, f"/calcom/salon-1{path}", headers=PLATFORM, content=b'{"reason":"x"}')

    assert (response.status_code, response.content) == (direct.status_code, direct.content)
    assert fake.creates == 0
