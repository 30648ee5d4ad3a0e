"""The operator console over HTTP (in-process, both databases): sign-in, sessions, CSRF, pages, resolving."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from itsdangerous import URLSafeTimedSerializer
from pydantic import SecretStr

from service.app.operators import SignInThrottle
from service.settings import Settings
from service.web.app import create_app

from .console_support import OPERATOR, PASSWORD, SESSION_KEY, csrf_of, sign_in
from .helpers import (
    ALL_SECRETS,
    API_TOKEN,
    AUTH,
    CALLBACK_SECRET,
    FakeClock,
    booking_event,
    create_account,
    failure,
    phase,
    post_webhook,
    record,
)

FORMS = ["/console/sign-out", "/console/verifications/x/resolve", "/console/accounts/salon-1"]
PAGES = ["/console", "/console/dashboard", "/console/accounts", "/console/audit", "/console/duplicates", "/console/verifications/x"]
START = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def console_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"console_session_key": SecretStr(SESSION_KEY)})


@pytest.fixture
async def console(
    console_settings: Settings, clock: FakeClock, calcom_transport: httpx.AsyncBaseTransport
) -> AsyncIterator[httpx.AsyncClient]:
    application = create_app(console_settings, clock=clock, calcom_transport=calcom_transport)
    async with application.router.lifespan_context(application):
        services = application.state.services
        services.operators.throttle = SignInThrottle(base_seconds=0.0)  # the slow-down itself is tested below
        await services.operators.add(OPERATOR, PASSWORD, clock())
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://verifier.test") as http:
            yield http


async def _in_review(client: httpx.AsyncClient, appointment: str = "762") -> str:
    """A verification in the review queue (its account disabled), with bookings stored near its phase."""
    await create_account(client)
    await post_webhook(client, booking_event(uid="near-1", start=START + timedelta(minutes=2)))
    await post_webhook(client, booking_event(uid="far-1", start=START + timedelta(minutes=12)))
    await client.patch("/api/accounts/salon-1", json={"enabled": False}, headers=AUTH)
    response = await record(client, failure(appointment, phases=[phase("A", START)]))
    assert response.json()["status"] == "manual_review", response.text
    return str(response.json()["id"])


@pytest.mark.parametrize("path", PAGES)
async def test_every_console_page_redirects_to_sign_in_without_a_session(console: httpx.AsyncClient, path: str) -> None:
    response = await console.get(path)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/console/sign-in?next=")


@pytest.mark.parametrize("path", FORMS)
async def test_every_console_form_redirects_to_sign_in_without_a_session(console: httpx.AsyncClient, path: str) -> None:
    response = await console.post(path, data={"outcome": "failed", "action": "disable"})
    assert response.status_code == 303 and response.headers["location"].startswith("/console/sign-in")


async def test_a_session_ends_after_console_session_hours(console: httpx.AsyncClient, clock: FakeClock) -> None:
    await sign_in(console)
    clock.advance(11 * 3600)
    assert (await console.get("/console")).status_code == 200
    clock.advance(1.5 * 3600)  # 12.5 h after signing in (CONSOLE_SESSION_HOURS defaults to 12)
    assert (await console.get("/console")).status_code == 303


async def test_the_cookie_is_secure_over_https(console: httpx.AsyncClient) -> None:
    form = await console.get("https://verifier.test/console/sign-in")
    assert "secure" in form.headers["set-cookie"].lower()


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/console", "/api/verifications", "/console\\@evil"])
async def test_sign_in_sends_nobody_outside_the_console(console: httpx.AsyncClient, target: str) -> None:
    form = await console.get("/console/sign-in")
    response = await console.post(
        "/console/sign-in", data={"csrf": csrf_of(form.text), "name": OPERATOR, "password": PASSWORD, "next": target}
    )
    assert response.status_code == 303 and response.headers["location"] == "/console"


async def test_the_api_token_does_not_sign_in(console: httpx.AsyncClient) -> None:
    response = await console.get("/console", headers=AUTH)
    assert response.status_code == 303


async def test_sign_in_sets_a_strict_http_only_cookie_and_shows_the_queue(console: httpx.AsyncClient) -> None:
    response = await sign_in(console)
    assert response.status_code == 303 and response.headers["location"] == "/console"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
    page = await console.get("/console")
    assert page.status_code == 200 and "Review queue" in page.text and OPERATOR in page.text


async def test_a_wrong_password_is_refused(console: httpx.AsyncClient) -> None:
    response = await sign_in(console, password="not the password at all")
    assert response.status_code == 401 and "Wrong name or password" in response.text
    assert (await console.get("/console")).status_code == 303


async def test_an_unknown_operator_is_refused_like_a_wrong_password(console: httpx.AsyncClient) -> None:
    response = await sign_in(console, name="mallory")
    assert response.status_code == 401 and "Wrong name or password" in response.text


async def test_a_session_cookie_signed_with_another_key_is_refused(console: httpx.AsyncClient) -> None:
    forged = URLSafeTimedSerializer("another-key-another-key-another-key", salt="console-session").dumps(
        {"sid": "x", "op": OPERATOR, "ep": 0}
    )
    console.cookies.set("console_session", forged, domain="verifier.test", path="/console")
    assert (await console.get("/console")).status_code == 303


async def test_sign_in_without_the_form_token_is_refused(console: httpx.AsyncClient) -> None:
    await console.get("/console/sign-in")
    response = await console.post("/console/sign-in", data={"name": OPERATOR, "password": PASSWORD})
    assert response.status_code == 403
    assert (await console.get("/console")).status_code == 303


async def test_sign_out_ends_the_session_even_for_a_copy_of_the_cookie(console: httpx.AsyncClient) -> None:
    await sign_in(console)
    copied = console.cookies.get("console_session", domain="verifier.test", path="/console")
    page = await console.get("/console")
    out = await console.post("/console/sign-out", data={"csrf": csrf_of(page.text)})
    assert out.status_code == 303
    assert (await console.get("/console")).status_code == 303
    console.cookies.set("console_session", copied or "", domain="verifier.test", path="/console")
    assert (await console.get("/console")).status_code == 303


async def test_console_responses_carry_the_security_headers(console: httpx.AsyncClient) -> None:
    response = await console.get("/console/sign-in")
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"
    css = await console.get("/console/static/console.css")
    assert css.status_code == 200 and css.headers["x-frame-options"] == "DENY"


async def test_resolving_with_a_picked_booking_records_the_operator_and_leaves_the_queue(console: httpx.AsyncClient) -> None:
    verification_id = await _in_review(console)
    await sign_in(console)
    queue = await console.get("/console", params={"reason": "verification_disabled"})
    assert verification_id in queue.text
    detail = await console.get(f"/console/verifications/{verification_id}")
    assert "near-1" in detail.text and "far-1" in detail.text
    response = await console.post(
        f"/console/verifications/{verification_id}/resolve",
        data={"csrf": csrf_of(detail.text), "outcome": "synced", "booking.A": "near-1", "note": "seen in Cal.com"},
    )
    assert response.status_code == 303
    view = (await console.get(f"/api/verifications/{verification_id}", headers=AUTH)).json()
    assert view["status"] == "resolved" and view["resolved_by"] == OPERATOR
    assert view["phases"][0]["booking"]["uid"] == "near-1"
    assert verification_id not in (await console.get("/console")).text
    audit = await console.get("/console/audit")
    assert "verification_resolved" in audit.text and verification_id in audit.text


async def test_a_forged_resolve_without_the_csrf_token_changes_nothing(console: httpx.AsyncClient) -> None:
    verification_id = await _in_review(console)
    await sign_in(console)
    response = await console.post(f"/console/verifications/{verification_id}/resolve", data={"outcome": "failed"})
    assert response.status_code == 403
    view = (await console.get(f"/api/verifications/{verification_id}", headers=AUTH)).json()
    assert view["status"] == "manual_review"
    wrong = await console.post(f"/console/verifications/{verification_id}/resolve", data={"outcome": "failed", "csrf": "0" * 64})
    assert wrong.status_code == 403


async def test_the_queue_filters_by_account_reason_and_age(console: httpx.AsyncClient, clock: FakeClock) -> None:
    verification_id = await _in_review(console)
    await sign_in(console)
    assert verification_id in (await console.get("/console", params={"account": "salon-1"})).text
    assert verification_id not in (await console.get("/console", params={"reason": "no_booking_found"})).text
    assert verification_id not in (await console.get("/console", params={"age": "1h"})).text
    clock.advance(2 * 3600)
    assert verification_id in (await console.get("/console", params={"age": "1h"})).text


async def test_account_changes_are_audited_without_their_secrets(console: httpx.AsyncClient) -> None:
    await create_account(console)
    await sign_in(console)
    page = await console.get("/console/accounts")
    assert "/webhooks/calcom/salon-1" in page.text
    saved = await console.post(
        "/console/accounts/salon-1", data={"csrf": csrf_of(page.text), "action": "secrets", "webhook_secret": "a-new-webhook-secret-1234"}
    )
    assert saved.status_code == 303
    await console.post("/console/accounts/salon-1", data={"csrf": csrf_of(page.text), "action": "tolerance", "tolerance": "120"})
    account = (await console.get("/api/accounts/salon-1", headers=AUTH)).json()
    assert account["match_tolerance_seconds"] == 120
    audit = (await console.get("/console/audit")).text
    assert "account_changed" in audit and "(replaced)" in audit and "a-new-webhook-secret-1234" not in audit


async def test_the_accounts_page_changes_the_time_zone_and_the_detail_shows_phase_times_in_it(console: httpx.AsyncClient) -> None:
    verification_id = await _in_review(console)
    await sign_in(console)
    detail = (await console.get(f"/console/verifications/{verification_id}")).text
    assert "2026-12-01 09:00 UTC</td>" in detail and "Europe/Berlin" not in detail
    page = await console.get("/console/accounts")
    assert '<dd id="time-zone-salon-1">UTC</dd>' in page.text
    # Without the CSRF token nothing changes.
    refused = await console.post("/console/accounts/salon-1", data={"action": "time_zone", "time_zone": "Europe/Berlin"})
    assert refused.status_code == 403
    bad = await console.post(
        "/console/accounts/salon-1", data={"csrf": csrf_of(page.text), "action": "time_zone", "time_zone": "Mars/Olympus"}
    )
    assert bad.status_code == 422 and "time_zone is not valid" in bad.text
    assert (await console.get("/api/accounts/salon-1", headers=AUTH)).json()["time_zone"] == "UTC"
    saved = await console.post(
        "/console/accounts/salon-1", data={"csrf": csrf_of(page.text), "action": "time_zone", "time_zone": "Europe/Berlin"}
    )
    assert saved.status_code == 303
    assert (await console.get("/api/accounts/salon-1", headers=AUTH)).json()["time_zone"] == "Europe/Berlin"
    assert '<dd id="time-zone-salon-1">Europe/Berlin</dd>' in (await console.get("/console/accounts")).text
    detail = (await console.get(f"/console/verifications/{verification_id}")).text
    assert "2026-12-01 09:00 UTC · 10:00 Europe/Berlin" in detail
    audit = (await console.get("/console/audit")).text
    assert "time_zone: Europe/Berlin" in audit and OPERATOR in audit


async def test_no_console_page_shows_a_secret(console: httpx.AsyncClient) -> None:
    verification_id = await _in_review(console)
    await sign_in(console)
    for path in [*PAGES[:-1], f"/console/verifications/{verification_id}", "/console/sign-in"]:
        html = (await console.get(path)).text
        leaked = [s for s in [*ALL_SECRETS, SESSION_KEY, API_TOKEN] if s in html]
        assert not leaked, f"{path} shows a secret"
        assert not re.search(r"<script>|style=\"", html), f"{path} has inline script or style"


async def test_the_dashboard_draws_its_charts_as_svg(console: httpx.AsyncClient) -> None:
    await _in_review(console)
    await sign_in(console)
    page = await console.get("/console/dashboard")
    assert page.status_code == 200
    assert page.text.count("<svg") >= 4 and "Verifications per day by outcome" in page.text


async def test_failed_sign_ins_are_slowed_down_more_each_time() -> None:
    now = [0.0]
    throttle = SignInThrottle(base_seconds=0.25, max_seconds=5.0, clock=lambda: now[0])
    assert [throttle.delay("name:a", "address:x") for _ in range(6)] == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0]
    throttle.succeeded("name:a", "address:x")
    assert throttle.delay("name:a") == 0.25
    assert throttle.delay("name:b", "address:x") == 0.25


async def test_account_changes_through_the_api_are_audited_too(console: httpx.AsyncClient) -> None:
    await create_account(console)
    await console.patch("/api/accounts/salon-1", json={"enabled": False}, headers=AUTH)
    await console.patch("/api/accounts/salon-1", json={"time_zone": "Europe/Berlin"}, headers=AUTH)
    await sign_in(console)
    audit = (await console.get("/console/audit")).text
    assert "account_created" in audit and "account_changed" in audit and "enabled: False" in audit
    assert "time_zone: Europe/Berlin" in audit
    assert not [s for s in ALL_SECRETS if s in audit]


async def test_the_dashboard_counts_a_verification_still_in_review_from_before_the_fortnight(
    app: object, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    await _in_review(client)
    services = app.state.services  # type: ignore[attr-defined]
    today = await services.console.dashboard(clock())
    assert today[-1].created["manual_review"] == 1 and today[-1].review_entries == 1 and today[-1].queue_size == 1
    clock.advance(20 * 86400)
    later = await services.console.dashboard(clock())
    assert sum(d.created["manual_review"] for d in later) == 0
    assert all(d.queue_size == 1 for d in later)  # still waiting, every day of the fortnight


async def test_the_callback_of_a_console_resolution_names_the_operator(console: httpx.AsyncClient, database_url: str) -> None:
    from service.store.connector import Database, sql

    await create_account(console, callback_url="https://platform.example/hooks/verifier", callback_secret=CALLBACK_SECRET, enabled=False)
    created = (await record(console, failure(phases=[phase("A", START)]))).json()
    await sign_in(console)
    detail = await console.get(f"/console/verifications/{created['id']}")
    await console.post(f"/console/verifications/{created['id']}/resolve", data={"csrf": csrf_of(detail.text), "outcome": "failed"})
    db = Database(database_url)
    await db.connect()
    try:
        async with db.read() as tx:
            payloads = [row["payload"] for row in await tx.fetch_all(sql("SELECT payload FROM outbox ORDER BY seq"))]
    finally:
        await db.disconnect()
    resolved = json.loads(payloads[-1])["verification"]
    assert resolved["status"] == "resolved" and resolved["resolved_by"] == OPERATOR


async def test_a_failed_sign_in_is_logged_without_its_password(console: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO"):
        await sign_in(console, password="a wrong password 12345")
    failed = [r for r in caplog.records if getattr(r, "event", None) == "console_sign_in_failed"]
    assert len(failed) == 1 and failed[0].operator == OPERATOR and failed[0].known is True  # type: ignore[attr-defined]
    assert not [r for r in caplog.records if "a wrong password 12345" in r.getMessage() + str(vars(r))]
