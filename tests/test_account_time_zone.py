"""The account's time zone: an IANA name, UTC unless set; PUT, PATCH, GET, the list, the CLI, the audit."""

from __future__ import annotations

import httpx
import pytest

from service.core.models import AccountIn, AccountPatch, valid_time_zone

from .helpers import AUTH, create_account


async def test_a_new_account_is_in_utc_and_put_sets_another_zone(client: httpx.AsyncClient) -> None:
    body = (await create_account(client)).json()
    assert body["time_zone"] == "UTC"
    body = (await create_account(client, time_zone="Europe/Berlin")).json()
    assert body["time_zone"] == "Europe/Berlin"
    assert (await client.get("/api/accounts/salon-1", headers=AUTH)).json()["time_zone"] == "Europe/Berlin"
    listed = (await client.get("/api/accounts", headers=AUTH)).json()["items"]
    assert [a["time_zone"] for a in listed] == ["Europe/Berlin"]


async def test_patch_changes_the_zone_and_keeps_it_when_other_fields_change(client: httpx.AsyncClient) -> None:
    await create_account(client)
    response = await client.patch("/api/accounts/salon-1", json={"time_zone": "America/New_York"}, headers=AUTH)
    assert response.status_code == 200 and response.json()["time_zone"] == "America/New_York"
    response = await client.patch("/api/accounts/salon-1", json={"enabled": False}, headers=AUTH)
    assert response.json()["time_zone"] == "America/New_York"


@pytest.mark.parametrize("value", ["Mars/Olympus", "", "europe/berlin", "Europe", "../etc/passwd", "/etc/localtime", 1, None, "X" * 65])
async def test_an_unknown_zone_is_a_422_naming_the_field_and_changes_nothing(client: httpx.AsyncClient, value: object) -> None:
    await create_account(client, time_zone="Europe/Berlin")
    for method in ("PATCH", "PUT"):
        body = {"time_zone": value}
        if method == "PUT":
            body |= {"calcom_api_key": "cal_live_other_key_1234", "webhook_secret": "another-secret"}
        response = await client.request(method, "/api/accounts/salon-1", json=body, headers=AUTH)
        assert response.status_code == 422, (method, response.text)
        assert [d["field"] for d in response.json()["error"]["details"]] == ["time_zone"], response.text
    assert (await client.get("/api/accounts/salon-1", headers=AUTH)).json()["time_zone"] == "Europe/Berlin"


async def test_an_unknown_zone_on_a_new_account_stores_nothing(client: httpx.AsyncClient) -> None:
    body = {"calcom_api_key": "cal_live_key_1234", "webhook_secret": "secret-1", "time_zone": "Mars/Olympus"}
    response = await client.put("/api/accounts/salon-9", json=body, headers=AUTH)
    assert response.status_code == 422 and "time_zone" in response.text and "IANA" in response.text
    assert (await client.get("/api/accounts/salon-9", headers=AUTH)).status_code == 404


def test_the_zone_is_checked_by_name() -> None:
    assert valid_time_zone("Europe/Berlin") == "Europe/Berlin"
    assert AccountIn(calcom_api_key="k", webhook_secret="s").time_zone == "UTC"
    assert "time_zone" in AccountPatch.model_fields
    with pytest.raises(ValueError, match="IANA time zone"):
        valid_time_zone("Mars/Olympus")
