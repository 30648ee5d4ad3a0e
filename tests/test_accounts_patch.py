"""GET /api/accounts, PATCH /api/accounts/{account} (only the fields sent; a new key is tried at once), webhook 404 wording."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import httpx
import pytest

from service.testing.fakecalcom import FakeCalcom

from .helpers import API_KEY, AUTH, CALLBACK_SECRET, WEBHOOK_SECRET, FakeClock, booking_event, create_account, post_webhook

CALCOM = "http://calcom.test"
GOOD_KEY = "cal_live_good_replacement_0b1c2d"
BAD_KEY = "cal_live_revoked_key_3e4f5a6b"


@pytest.fixture
def fake(clock: FakeClock) -> FakeCalcom:
    calcom = FakeCalcom(clock=clock)
    calcom.add_api_key(API_KEY)
    calcom.add_api_key(GOOD_KEY)
    return calcom


@pytest.fixture
def calcom_transport(fake: FakeCalcom) -> httpx.AsyncBaseTransport:
    """The web app's Cal.com is the fake: a key it does not know gets a 401."""
    return httpx.ASGITransport(app=fake.app)


def patch(client: httpx.AsyncClient, body: object, account: str = "salon-1"):  # type: ignore[no-untyped-def]
    return client.patch(f"/api/accounts/{account}", json=body, headers=AUTH)


async def test_accounts_are_listed_without_secrets(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/accounts", headers=AUTH)).json() == {"items": []}
    await create_account(client, "salon-2", calcom_api_base=CALCOM)
    await create_account(
        client, "salon-1", calcom_api_base=CALCOM, callback_url="https://platform.example/hooks", callback_secret=CALLBACK_SECRET
    )
    response = await client.get("/api/accounts", headers=AUTH)
    assert response.status_code == 200
    items = response.json()["items"]
    assert [a["account"] for a in items] == ["salon-1", "salon-2"]
    assert {(a["calcom_api_key"], a["webhook_secret"]) for a in items} == {("set", "set")}
    for secret in (API_KEY, WEBHOOK_SECRET, CALLBACK_SECRET):
        assert secret not in response.text
    assert (await client.get("/api/accounts")).status_code == 401


async def test_patch_changes_only_the_fields_it_sends(client: httpx.AsyncClient) -> None:
    await create_account(
        client,
        calcom_api_base=CALCOM,
        callback_url="https://platform.example/hooks",
        callback_secret=CALLBACK_SECRET,
        match_tolerance_seconds=120,
    )
    response = await patch(client, {"enabled": False})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["enabled"] is False
    # What PUT would have erased stays: the callback, its secret, the tolerance, the API base.
    assert (body["callback_url"], body["callback_secret"], body["match_tolerance_seconds"], body["calcom_api_base"]) == (
        "https://platform.example/hooks",
        "set",
        120,
        CALCOM,
    )
    body = (await patch(client, {"callback_url": None, "callback_secret": None})).json()
    assert (body["callback_url"], body["callback_secret"], body["enabled"]) == (None, None, False)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"enabeld": True}, "enabeld"),
        ({"calcom_api_key": None}, "calcom_api_key"),
        ({"match_tolerance_seconds": 7200}, "match_tolerance_seconds"),
        ({"callback_url": "https://platform.example/hooks"}, "callback_secret"),
        ({"enabled": "no"}, "enabled"),
    ],
)
async def test_patch_refuses_what_would_make_an_invalid_account(client: httpx.AsyncClient, body: dict, field: str) -> None:
    await create_account(client, calcom_api_base=CALCOM)
    response = await patch(client, body)
    assert response.status_code == 422 and field in response.text
    assert (await client.get("/api/accounts/salon-1", headers=AUTH)).json()["enabled"] is True


async def test_patch_of_an_unknown_or_upper_case_account(client: httpx.AsyncClient) -> None:
    assert (await patch(client, {"enabled": False}, "nobody")).status_code == 404
    response = await patch(client, {"enabled": False}, "Salon-1")
    assert response.status_code == 422 and "lower-case" in response.text


async def test_a_replaced_key_is_tried_at_once(client: httpx.AsyncClient, fake: FakeCalcom) -> None:
    await create_account(client, calcom_api_base=CALCOM)
    calls = fake.calls
    body = (await patch(client, {"calcom_api_key": BAD_KEY})).json()
    assert body["credentials"] == "broken" and fake.calls == calls + 1  # Cal.com answered 401 just now
    body = (await patch(client, {"calcom_api_key": GOOD_KEY})).json()
    assert body["credentials"] == "ok"
    assert (await patch(client, {"match_tolerance_seconds": 60})).json()["credentials"] == "ok" and fake.calls == calls + 2
    # PUT replacing the key does the same.
    response = await client.put(
        "/api/accounts/salon-1", json={"calcom_api_key": BAD_KEY, "webhook_secret": WEBHOOK_SECRET, "calcom_api_base": CALCOM}, headers=AUTH
    )
    assert response.status_code == 200 and response.json()["credentials"] == "broken"
    assert BAD_KEY not in response.text and GOOD_KEY not in response.text


async def test_a_key_check_without_an_answer_leaves_the_state_to_the_next_poll(client: httpx.AsyncClient, fake: FakeCalcom, caplog) -> None:
    await create_account(client, calcom_api_base=CALCOM)
    fake.set_down(True)
    caplog.set_level(logging.WARNING)
    body = (await patch(client, {"calcom_api_key": BAD_KEY})).json()
    assert body["credentials"] == "ok"  # a new key gets a fresh chance; a 503 says nothing about it
    assert any(getattr(r, "event", None) == "credentials_unchecked" for r in caplog.records)


async def test_webhook_for_an_upper_case_account_id_says_ids_are_lower_case(client: httpx.AsyncClient) -> None:
    await create_account(client, calcom_api_base=CALCOM)
    response = await post_webhook(client, booking_event(uid="bk-1", start=datetime(2026, 12, 1, 9, tzinfo=timezone.utc)), account="Salon-1")
    assert response.status_code == 404
    message = response.json()["error"]["message"]
    assert "lower-case" in message and "/webhooks/calcom/salon-1" in message and "PUT" not in message
