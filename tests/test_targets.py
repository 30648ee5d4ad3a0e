"""No SSRF: callback_url and calcom_api_base must be public https hosts, when saved and when connected to."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timezone

import httpx
import pytest

from service.clients import targets
from service.clients.callbacks import CallbackSender
from service.settings import Settings
from service.web.app import create_app

from .helpers import API_KEY, AUTH, CALLBACK_SECRET, WEBHOOK_SECRET, FakeClock

PUBLIC = "93.184.216.34"
REFUSED_URLS = [
    "https://127.0.0.1/verdicts",
    "https://10.1.2.3/verdicts",
    "https://169.254.169.254/latest/meta-data",
    "https://[::1]/verdicts",
    "https://[::ffff:127.0.0.1]/verdicts",
    "https://localhost/verdicts",
    "https://192.168.1.20:8443/verdicts",
    "http://platform.example/verdicts",
]


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Our resolver answers from this table (a name missing from it does not resolve)."""
    table: dict[str, list[str]] = {}

    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError(f"{host} does not resolve")
        return list(table[host])

    monkeypatch.setattr(targets, "resolve", resolve)
    return table


@pytest.fixture
async def strict_client(settings: Settings, clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    """The API with private targets refused (production's default)."""
    strict = settings.model_copy(update={"allow_private_targets": False})
    app = create_app(strict, clock=clock, calcom_transport=httpx.MockTransport(lambda r: httpx.Response(503)))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://verifier.test") as http:
            yield http


def account(**fields: str) -> dict[str, str]:
    return {"calcom_api_key": API_KEY, "webhook_secret": WEBHOOK_SECRET, **fields}


@pytest.mark.parametrize("url", REFUSED_URLS)
async def test_a_private_or_plain_http_callback_url_is_refused_when_saved(
    strict_client: httpx.AsyncClient, dns: dict[str, list[str]], url: str
) -> None:
    answer = await strict_client.put("/api/accounts/salon-1", json=account(callback_url=url, callback_secret=CALLBACK_SECRET), headers=AUTH)
    assert answer.status_code == 422, answer.text
    details = answer.json()["error"]["details"]
    assert details[0]["field"] == "callback_url"
    assert "https" in details[0]["message"] or "address" in details[0]["message"] or "machine" in details[0]["message"]


@pytest.mark.parametrize("url", REFUSED_URLS)
async def test_a_private_calcom_api_base_is_refused_when_saved_or_patched(
    strict_client: httpx.AsyncClient, dns: dict[str, list[str]], url: str
) -> None:
    assert (await strict_client.put("/api/accounts/salon-1", json=account(calcom_api_base=url), headers=AUTH)).status_code == 422
    assert (await strict_client.put("/api/accounts/salon-1", json=account(), headers=AUTH)).status_code == 201
    answer = await strict_client.patch("/api/accounts/salon-1", json={"calcom_api_base": url}, headers=AUTH)
    assert answer.status_code == 422 and answer.json()["error"]["details"][0]["field"] == "calcom_api_base"


async def test_a_name_resolving_to_loopback_is_refused_and_one_not_resolving_yet_is_accepted(
    strict_client: httpx.AsyncClient, dns: dict[str, list[str]]
) -> None:
    dns["rebind.example"] = [PUBLIC, "127.0.0.1"]
    answer = await strict_client.put(
        "/api/accounts/salon-1", json=account(callback_url="https://rebind.example/v", callback_secret=CALLBACK_SECRET), headers=AUTH
    )
    assert answer.status_code == 422 and "127.0.0.1" in answer.json()["error"]["details"][0]["message"]
    dns["platform.example"] = [PUBLIC]
    ok = await strict_client.put(
        "/api/accounts/salon-1", json=account(callback_url="https://platform.example/v", callback_secret=CALLBACK_SECRET), headers=AUTH
    )
    assert ok.status_code == 201
    later = await strict_client.put(
        "/api/accounts/salon-2", json=account(callback_url="https://not-yet.example/v", callback_secret=CALLBACK_SECRET), headers=AUTH
    )
    assert later.status_code == 201


class Recorder:
    """The network behind the guard: records what reaches it, answers `status` (and `location`)."""

    def __init__(self, status: int = 204, location: str | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.status = status
        self.location = location

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        headers = {"location": self.location} if self.location else {}
        return httpx.Response(self.status, headers=headers)


def guarded(recorder: Recorder) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=targets.GuardedTransport(httpx.MockTransport(recorder), allow_private=False), follow_redirects=False)


async def test_the_connection_goes_to_the_checked_address_with_the_name_kept(dns: dict[str, list[str]]) -> None:
    dns["platform.example"] = [PUBLIC]
    recorder = Recorder()
    async with guarded(recorder) as http:
        assert (await http.post("https://platform.example/v", content=b"{}")).status_code == 204
    sent = recorder.requests[0]
    assert sent.url.host == PUBLIC
    assert sent.headers["host"] == "platform.example"
    assert sent.extensions["sni_hostname"] == "platform.example"


@pytest.mark.parametrize("answer", [["127.0.0.1"], [PUBLIC, "10.0.0.7"], ["169.254.169.254"], ["::1"]])
async def test_dns_rebinding_to_a_private_address_is_refused_at_connect_time(dns: dict[str, list[str]], answer: list[str]) -> None:
    # Saved while the name pointed at a public address; at send time it answers a private one.
    dns["platform.example"] = answer
    recorder = Recorder()
    async with guarded(recorder) as http:
        with pytest.raises(targets.PrivateTarget):
            await http.post("https://platform.example/v", content=b"{}")
    assert recorder.requests == []


@pytest.mark.parametrize("url", REFUSED_URLS)
async def test_literal_private_targets_are_refused_at_connect_time(dns: dict[str, list[str]], url: str) -> None:
    recorder = Recorder()
    async with guarded(recorder) as http:
        with pytest.raises(targets.PrivateTarget):
            await http.get(url)
    assert recorder.requests == []


async def test_the_callback_sender_does_not_follow_a_redirect_to_a_private_address(dns: dict[str, list[str]]) -> None:
    dns["platform.example"] = [PUBLIC]
    recorder = Recorder(status=302, location="http://169.254.169.254/latest/meta-data")
    async with guarded(recorder) as http:
        sender = CallbackSender(http, timeout=5)
        attempt = await sender.post(
            "https://platform.example/v", CALLBACK_SECRET, "evt_1", b"{}", datetime(2026, 12, 1, tzinfo=timezone.utc)
        )
    assert not attempt.delivered and attempt.status == 302
    assert attempt.error is not None and "redirects are not followed" in attempt.error
    assert [str(r.url) for r in recorder.requests] == [f"https://{PUBLIC}/v"]


async def test_a_callback_to_a_private_address_fails_as_an_attempt_without_a_request(dns: dict[str, list[str]]) -> None:
    dns["platform.example"] = ["127.0.0.1"]
    recorder = Recorder()
    async with guarded(recorder) as http:
        attempt = await CallbackSender(http, timeout=5).post(
            "https://platform.example/v", CALLBACK_SECRET, "evt_1", b"{}", datetime(2026, 12, 1, tzinfo=timezone.utc)
        )
    assert attempt.status is None and attempt.error is not None and "not a public address" in attempt.error
    assert recorder.requests == []


def test_public_addresses() -> None:
    assert targets.is_public(PUBLIC) and targets.is_public("2606:4700:4700::1111")
    for address in (
        "127.0.0.1",
        "10.0.0.1",
        "172.16.0.1",
        "192.168.0.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "::1",
        "fe80::1",
        "fd00::1",
        "::ffff:10.0.0.1",
        "224.0.0.1",
        "not-an-ip",
    ):
        assert not targets.is_public(address), address
