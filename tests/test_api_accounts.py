from __future__ import annotations

import httpx
import pytest

from service.store.connector import Database, sql

from .helpers import API_KEY, AUTH, CALLBACK_SECRET, WEBHOOK_SECRET, create_account

ACCOUNT = {"calcom_api_key": API_KEY, "webhook_secret": WEBHOOK_SECRET}


async def test_put_creates_then_replaces_an_account(client: httpx.AsyncClient) -> None:
    created = await client.put("/api/accounts/salon-1", json=ACCOUNT, headers=AUTH)
    assert created.status_code == 201
    body = created.json()
    assert body["account"] == "salon-1"
    assert body["match_tolerance_seconds"] == 300
    assert body["enabled"] is True and body["credentials"] == "ok"
    replaced = await client.put("/api/accounts/salon-1", json={**ACCOUNT, "match_tolerance_seconds": 120, "enabled": False}, headers=AUTH)
    assert replaced.status_code == 200
    assert replaced.json()["match_tolerance_seconds"] == 120
    assert replaced.json()["enabled"] is False


async def test_account_secrets_are_never_echoed(client: httpx.AsyncClient) -> None:
    body = {**ACCOUNT, "callback_url": "https://platform.example/hooks", "callback_secret": CALLBACK_SECRET}
    for response in (
        await client.put("/api/accounts/salon-1", json=body, headers=AUTH),
        await client.get("/api/accounts/salon-1", headers=AUTH),
    ):
        assert response.status_code in (200, 201)
        for secret in (API_KEY, WEBHOOK_SECRET, CALLBACK_SECRET):
            assert secret not in response.text
        data = response.json()
        assert data["calcom_api_key"] == "set"
        assert data["webhook_secret"] == "set"
        assert data["callback_secret"] == "set"
        assert data["callback_url"] == "https://platform.example/hooks"


async def test_get_unknown_account_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/accounts/nobody", headers=AUTH)
    assert response.status_code == 404
    assert "nobody" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"webhook_secret": WEBHOOK_SECRET}, "calcom_api_key"),
        ({"calcom_api_key": API_KEY}, "webhook_secret"),
        ({**ACCOUNT, "webhook_secret": ""}, "webhook_secret"),
        ({**ACCOUNT, "calcom_api_key": "   "}, "calcom_api_key"),
        ({**ACCOUNT, "callback_url": "https://platform.example/hook"}, "callback_secret"),
        ({**ACCOUNT, "callback_url": "https://p.example/h", "callback_secret": "not-whsec"}, "callback_secret"),
        ({**ACCOUNT, "callback_url": "https://p.example/h", "callback_secret": "whsec_c2hvcnQ="}, "callback_secret"),
        ({**ACCOUNT, "callback_url": "javascript:alert(1)", "callback_secret": CALLBACK_SECRET}, "callback_url"),
        ({**ACCOUNT, "calcom_api_base": "not a url"}, "calcom_api_base"),
        ({**ACCOUNT, "match_tolerance_seconds": "300"}, "match_tolerance_seconds"),
        ({**ACCOUNT, "match_tolerance_seconds": -5}, "match_tolerance_seconds"),
        ({**ACCOUNT, "enabled": "yes"}, "enabled"),
    ],
)
async def test_invalid_account_is_422_naming_the_field(client: httpx.AsyncClient, db: Database, body: dict, field: str) -> None:
    response = await client.put("/api/accounts/salon-1", json=body, headers=AUTH)
    assert response.status_code == 422, response.text
    assert field in response.text
    for secret in (API_KEY, WEBHOOK_SECRET):
        assert secret not in response.text
    async with db.read() as tx:
        assert await tx.fetch_val(sql("SELECT COUNT(*) AS n FROM accounts")) == 0


@pytest.mark.parametrize("account", ["Salon", "-salon", "a" * 64, "sal on", "salon.1"])
async def test_account_id_must_match_the_pattern(client: httpx.AsyncClient, account: str) -> None:
    response = await client.put(f"/api/accounts/{account}", json=ACCOUNT, headers=AUTH)
    assert response.status_code in (404, 422)
    assert response.status_code == 422 or "/" in account


async def test_accounts_need_the_token(client: httpx.AsyncClient, db: Database) -> None:
    assert (await client.put("/api/accounts/salon-1", json=ACCOUNT)).status_code == 401
    assert (
        await client.put("/api/accounts/salon-1", json=ACCOUNT, headers={"Authorization": "Bearer wrong-token-0000000000"})
    ).status_code == 401
    assert (await client.get("/api/accounts/salon-1")).status_code == 401
    async with db.read() as tx:
        assert await tx.fetch_val(sql("SELECT COUNT(*) AS n FROM accounts")) == 0


async def test_new_api_key_clears_broken_credentials(client: httpx.AsyncClient, db: Database, clock) -> None:
    from service.store.queries import accounts

    await create_account(client)
    async with db.transaction() as tx:
        await accounts.set_credentials(tx, "salon-1", "broken", "401 from Cal.com", clock())
    assert (await client.get("/api/accounts/salon-1", headers=AUTH)).json()["credentials"] == "broken"
    await create_account(client)  # same key: still broken
    assert (await client.get("/api/accounts/salon-1", headers=AUTH)).json()["credentials"] == "broken"
    await client.put("/api/accounts/salon-1", json={**ACCOUNT, "calcom_api_key": "cal_live_new_key_123456"}, headers=AUTH)
    assert (await client.get("/api/accounts/salon-1", headers=AUTH)).json()["credentials"] == "ok"
