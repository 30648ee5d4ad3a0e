"""Platform tokens: one account's verifications only (record, read, long-poll, resolve); issued once, stored as a hash, revocable."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx

from service.web.openapi import document

from .helpers import AUTH, create_account, failure, record
from .test_openapi import answer_errors
from .test_secrets_at_rest import raw_table


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def issue(client: httpx.AsyncClient, account: str) -> dict[str, Any]:
    answer = await client.post(f"/api/accounts/{account}/tokens", headers=AUTH)
    assert answer.status_code == 201, answer.text
    assert answer_errors(document(), "POST", f"/api/accounts/{account}/tokens", answer) == []
    return dict(answer.json())


async def test_a_platform_token_reaches_its_own_accounts_verifications_only(client: httpx.AsyncClient, database_url: str) -> None:
    await create_account(client, "salon-1")
    await create_account(client, "salon-2")
    issued = await issue(client, "salon-1")
    mine = bearer(issued["token"])
    theirs = (await record(client, failure("900", account="salon-2"))).json()

    # Record and read its own.
    own = await client.post("/api/verifications", json=failure("762", account="salon-1"), headers=mine)
    assert own.status_code == 201, own.text
    own_id = own.json()["id"]
    assert (await client.get(f"/api/verifications/{own_id}", headers=mine)).status_code == 200
    assert (await client.get(f"/api/verifications/{own_id}?wait=0.01", headers=mine)).json()["status"] == "pending"
    page = (await client.get("/api/verifications", headers=mine)).json()
    assert [v["id"] for v in page["items"]] == [own_id]
    assert (await client.get("/api/verifications?account=salon-2", headers=mine)).json()["items"] == []
    assert (await client.get(f"/api/verifications/{own_id}/evidence", headers=mine)).status_code == 200  # for the platform's own tools

    # Another account's verification is not there for it (404, as for one that does not exist).
    for method, path, body in (
        ("GET", f"/api/verifications/{theirs['id']}", None),
        ("GET", f"/api/verifications/{theirs['id']}?wait=1", None),
        ("GET", f"/api/verifications/{theirs['id']}/evidence", None),
        ("POST", f"/api/verifications/{theirs['id']}/resolve", {"outcome": "failed"}),
        ("POST", "/api/verifications", failure("901", account="salon-2")),
    ):
        answer = await client.request(method, path, json=body, headers=mine)
        assert answer.status_code == 404, (method, path, answer.text)
        assert answer_errors(document(), method, path.split("?")[0], answer) == []
    assert (await client.get(f"/api/verifications/{theirs['id']}", headers=AUTH)).json()["status"] == "pending"

    # Account management is the administrator's (403).
    for method, path, body in (
        ("GET", "/api/accounts", None),
        ("GET", "/api/accounts/salon-1", None),
        ("PATCH", "/api/accounts/salon-1", {"enabled": False}),
        ("PUT", "/api/accounts/salon-1", {"calcom_api_key": "k", "webhook_secret": "s"}),
        ("POST", "/api/accounts/salon-1/tokens", None),
        ("DELETE", f"/api/accounts/salon-1/tokens/{issued['id']}", None),
        ("POST", f"/api/verifications/{own_id}/recheck", None),
        ("GET", "/api/duplicates", None),
    ):
        answer = await client.request(method, path, json=body, headers=mine)
        assert answer.status_code == 403, (method, path, answer.text)
        assert answer_errors(document(), method, path, answer) == []

    # Resolve its own.
    resolved = await client.post(f"/api/verifications/{own_id}/resolve", json={"outcome": "failed"}, headers=mine)
    assert resolved.status_code == 200 and resolved.json()["status"] == "resolved"

    # Only a hash is stored.
    raw = await raw_table(database_url, "api_tokens")
    assert issued["token"] not in raw
    assert hashlib.sha256(issued["token"].encode()).hexdigest() in raw


async def test_a_revoked_token_answers_401(client: httpx.AsyncClient) -> None:
    await create_account(client, "salon-1")
    issued = await issue(client, "salon-1")
    other = await issue(client, "salon-1")
    assert (await client.get("/api/verifications", headers=bearer(issued["token"]))).status_code == 200
    revoked = await client.delete(f"/api/accounts/salon-1/tokens/{issued['id']}", headers=AUTH)
    assert revoked.status_code == 200 and revoked.json() == {"id": issued["id"], "account": "salon-1", "revoked": True}
    assert answer_errors(document(), "DELETE", f"/api/accounts/salon-1/tokens/{issued['id']}", revoked) == []
    gone = await client.get("/api/verifications", headers=bearer(issued["token"]))
    assert gone.status_code == 401
    assert (await client.get("/api/verifications", headers=bearer(other["token"]))).status_code == 200
    again = await client.delete(f"/api/accounts/salon-1/tokens/{issued['id']}", headers=AUTH)
    assert again.status_code == 404


async def test_tokens_of_an_unknown_account_or_made_up_tokens(client: httpx.AsyncClient) -> None:
    assert (await client.post("/api/accounts/nobody/tokens", headers=AUTH)).status_code == 404
    assert (await client.get("/api/verifications", headers=bearer("vpt_made-up-token-000000000000000000000000"))).status_code == 401
    assert (await client.get("/api/verifications", headers=bearer("anything-else"))).status_code == 401
