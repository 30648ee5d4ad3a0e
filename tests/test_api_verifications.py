from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from service.store.connector import Database, sql

from .helpers import API_KEY, AUTH, WEBHOOK_SECRET, FakeClock, create_account, failure, phase, record

START = datetime(2026, 12, 1, 10, 0, tzinfo=timezone(timedelta(hours=1)))


async def count(db: Database, table: str = "verifications") -> int:
    async with db.read() as tx:
        return int(await tx.fetch_val(sql(f"SELECT COUNT(*) AS n FROM {table}")))


@pytest.fixture
async def account(client: httpx.AsyncClient) -> None:
    await create_account(client)


async def test_recorded_failure_is_pending_until_the_settle_window(client: httpx.AsyncClient, account: None, clock: FakeClock) -> None:
    response = await record(client, failure())
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "pending"
    assert body["resolved_via"] is None and body["review_reason"] is None
    assert body["next_check_at"] == "2026-11-30T09:00:02Z"  # clock + SETTLE_SECONDS
    assert body["created_at"] == "2026-11-30T09:00:00Z"
    assert body["checks"] == 0
    assert body["phases"][0] == {
        "key": "A",
        "start": "2026-12-01T09:00:00Z",
        "end": "2026-12-01T09:30:00Z",
        "staff_required": True,
        "status": "pending",
        "booking": None,
        "attendee_email": "kunde@example.com",
    }
    assert body["callback"] == {"state": "none", "attempts": 0, "last_error": None}


async def test_phases_keep_their_order_and_optional_ones_are_not_required(client: httpx.AsyncClient, account: None) -> None:
    phases = [
        phase("A", START, event_type_id=101, host_email="Anna@Salon.example", attendee_email="kunde@example.com"),
        {**phase("B", START + timedelta(minutes=30)), "staff_required": False},
        phase("C", START + timedelta(minutes=75)),
    ]
    body = (await record(client, failure(phases=phases, service="Dauerwelle"))).json()
    assert [p["key"] for p in body["phases"]] == ["A", "B", "C"]
    assert [p["status"] for p in body["phases"]] == ["pending", "not_required", "pending"]
    assert body["phases"][0]["host_email"] == "anna@salon.example"
    assert body["phases"][0]["event_type_id"] == 101
    assert body["service"] == "Dauerwelle"


async def test_replay_is_idempotent_whatever_the_offset_or_order(client: httpx.AsyncClient, account: None, db: Database) -> None:
    phases = [phase("A", START), phase("B", START + timedelta(minutes=30))]
    first = await record(client, failure(phases=phases))
    utc = timezone.utc
    replay_phases = [
        {
            "key": "B",
            "start": (START + timedelta(minutes=30)).astimezone(utc).isoformat(),
            "end": (START + timedelta(minutes=60)).astimezone(utc).isoformat(),
            "staff_required": True,
            "attendee_email": "KUNDE@example.com",
        },
        {
            "key": "A",
            "start": START.astimezone(utc).isoformat(),
            "end": (START + timedelta(minutes=30)).astimezone(utc).isoformat(),
            "attendee_email": "kunde@example.com",
        },
    ]
    replay = await record(client, failure(phases=replay_phases, sync_error="another message", service="other"))
    assert first.status_code == 201 and replay.status_code == 200
    assert replay.json()["id"] == first.json()["id"]
    assert replay.json()["sync_error"] == first.json()["sync_error"]  # the first one is kept
    assert await count(db) == 1


async def test_different_phases_while_pending_is_409(client: httpx.AsyncClient, account: None, db: Database) -> None:
    await record(client, failure(phases=[phase("A", START)]))
    response = await record(client, failure(phases=[phase("A", START + timedelta(minutes=15))]))
    assert response.status_code == 409
    assert "pending" in response.json()["error"]["message"]
    assert await count(db) == 1


async def test_different_phases_after_a_final_verdict_make_a_new_verification(
    client: httpx.AsyncClient, account: None, db: Database
) -> None:
    first = (await record(client, failure(phases=[phase("A", START)]))).json()
    resolved = await client.post(f"/api/verifications/{first['id']}/resolve", json={"outcome": "failed"}, headers=AUTH)
    assert resolved.status_code == 200
    second = await record(client, failure(phases=[phase("A", START + timedelta(hours=2))]))
    assert second.status_code == 201
    assert second.json()["id"] != first["id"]
    again = await record(client, failure(phases=[phase("A", START + timedelta(hours=2))]))
    assert again.status_code == 200 and again.json()["id"] == second.json()["id"]
    assert await count(db) == 2


async def test_unknown_account_is_404_and_stores_nothing(client: httpx.AsyncClient, db: Database) -> None:
    response = await record(client, failure(account="nobody"))
    assert response.status_code == 404
    assert "nobody" in response.json()["error"]["message"]
    assert await count(db) == 0


def _body_variants() -> list[tuple[str, object, str]]:
    good = failure()
    naive = failure(phases=[{"key": "A", "start": "2026-12-01T10:00:00"}])
    naive_end = failure(phases=[{"key": "A", "start": "2026-12-01T10:00:00Z", "end": "2026-12-01T10:30:00"}])
    return [
        ("invalid JSON", b'{"account": "salon-1", "phases": [', "body"),
        ("not an object", b"[1, 2, 3]", "body"),
        ("empty body", b"", "body"),
        ("naive start", naive, "phases.0.start"),
        ("naive end", naive_end, "phases.0.end"),
        ("empty phases", failure(phases=[]), "phases"),
        ("no phases", {k: v for k, v in good.items() if k != "phases"}, "phases"),
        ("all optional", failure(phases=[{**phase("A", START), "staff_required": False}]), "staff_required"),
        ("duplicate keys", failure(phases=[phase("A", START), phase("A", START + timedelta(hours=1))]), "unique"),
        ("missing start", failure(phases=[{"key": "A"}]), "phases.0.start"),
        ("start not a time", failure(phases=[{"key": "A", "start": "tomorrow"}]), "phases.0.start"),
        ("start a number", failure(phases=[{"key": "A", "start": 1764579600}]), "phases.0.start"),
        ("event type as text", failure(phases=[phase("A", START, event_type_id="101")]), "phases.0.event_type_id"),
        ("staff_required as text", failure(phases=[{**phase("A", START), "staff_required": "yes"}]), "phases.0.staff_required"),
        ("phases not a list", {**good, "phases": {"A": "x"}}, "phases"),
        ("bad e-mail", failure(phases=[phase("A", START, host_email="anna")]), "phases.0.host_email"),
        (
            "end before start",
            failure(phases=[{"key": "A", "start": START.isoformat(), "end": (START - timedelta(minutes=5)).isoformat()}]),
            "phases.0",
        ),
        ("missing account", {k: v for k, v in good.items() if k != "account"}, "account"),
        ("missing appointment", {k: v for k, v in good.items() if k != "appointment_id"}, "appointment_id"),
        ("appointment a list", {**good, "appointment_id": [762]}, "appointment_id"),
        ("service a number", {**good, "service": 5}, "service"),
    ]


@pytest.mark.parametrize(("case", "body", "field"), _body_variants(), ids=[c for c, _, _ in _body_variants()])
async def test_bad_intake_is_422_naming_the_field_and_stores_nothing(
    client: httpx.AsyncClient, account: None, db: Database, case: str, body: object, field: str
) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = await client.post("/api/verifications", content=content, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in json.dumps(error), error
    assert await count(db) == 0
    assert await count(db, "phases") == 0


async def test_unknown_fields_are_a_422_naming_them_and_store_nothing(client: httpx.AsyncClient, account: None, db: Database) -> None:
    # A typo must not flip a phase to the default (staff_required: true) without a word.
    body = failure(
        phases=[{**phase("A", START), "staff_requried": False}, phase("B", START + timedelta(minutes=30))], customer={"name": "x"}
    )
    response = await record(client, body)
    assert response.status_code == 422
    fields = {d["field"] for d in response.json()["error"]["details"]}
    assert fields == {"phases.0.staff_requried", "customer"}
    assert "staff_requried" in response.json()["error"]["message"]
    assert await count(db) == 0


async def test_an_over_long_sync_error_is_cut_with_a_marker_not_refused(client: httpx.AsyncClient, account: None) -> None:
    body = (await record(client, failure(sync_error="x" * 10_000))).json()
    assert len(body["sync_error"]) == 4000 and body["sync_error"].endswith("…[truncated]")


async def test_numeric_appointment_id_is_kept_as_text(client: httpx.AsyncClient, account: None) -> None:
    body = (await record(client, failure(appointment_id=762))).json()  # type: ignore[arg-type]
    assert body["appointment_id"] == "762"


async def test_oversize_body_is_413_and_stores_nothing(client: httpx.AsyncClient, account: None, db: Database, settings) -> None:
    body = failure(sync_error="x" * 100, padding="y" * (settings.max_body_bytes + 10))
    response = await record(client, body)
    assert response.status_code == 413
    assert await count(db) == 0


async def test_oversize_chunked_body_is_413_without_content_length(
    client: httpx.AsyncClient, account: None, db: Database, settings
) -> None:
    async def chunks():
        yield b'{"account": "salon-1", "padding": "'
        for _ in range(settings.max_body_bytes // 1000 + 2):
            yield b"z" * 1000
        yield b'"}'

    response = await client.post("/api/verifications", content=chunks(), headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 413
    assert await count(db) == 0


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token-value-000000"}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer"}],
    ids=["missing", "wrong", "basic", "empty"],
)
async def test_missing_or_wrong_token_is_401_and_stores_nothing(
    client: httpx.AsyncClient, account: None, db: Database, headers: dict
) -> None:
    response = await client.post("/api/verifications", json=failure(), headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert await count(db) == 0
    assert (await client.get("/api/verifications", headers=headers)).status_code == 401


async def test_api_without_configured_token_answers_503(database_url: str, clock: FakeClock) -> None:
    from service.settings import Settings
    from service.web.app import create_app

    app = create_app(Settings(_env_file=None, database_url=database_url), clock=clock)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            response = await http.get("/api/verifications", headers={"Authorization": "Bearer anything-at-all-123"})
            assert response.status_code == 503
            assert "API_TOKEN" in response.json()["error"]["message"]
            assert (await http.get("/healthz")).status_code == 200


@pytest.mark.parametrize("wait", ["-1", "31", "abc", "nan", "inf", ""])
async def test_bad_wait_is_422(client: httpx.AsyncClient, account: None, db: Database, wait: str) -> None:
    response = await client.post("/api/verifications", params={"wait": wait}, json=failure(), headers=AUTH)
    assert response.status_code == 422
    assert "wait" in response.text
    assert await count(db) == 0


async def test_wait_with_fraction_answers_pending_when_nothing_arrives(client: httpx.AsyncClient, account: None) -> None:
    response = await record(client, failure(), wait=0.05)
    assert response.status_code == 201
    assert response.json()["status"] == "pending"


async def test_get_by_id_and_404(client: httpx.AsyncClient, account: None) -> None:
    created = (await record(client, failure())).json()
    assert (await client.get(f"/api/verifications/{created['id']}", headers=AUTH)).json() == created
    missing = await client.get("/api/verifications/does-not-exist", headers=AUTH)
    assert missing.status_code == 404


async def test_list_is_newest_first_with_cursor_pages(client: httpx.AsyncClient, account: None, clock: FakeClock) -> None:
    ids = []
    for n in range(5):
        clock.advance(1)
        ids.append((await record(client, failure(appointment_id=str(n)))).json()["id"])
    seen = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/verifications", params=params, headers=AUTH)).json()
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    assert pages == 3


async def test_list_filters_by_account_status_and_appointment(client: httpx.AsyncClient, account: None) -> None:
    await create_account(client, "salon-2", webhook_secret=WEBHOOK_SECRET)
    a = (await record(client, failure(appointment_id="1"))).json()
    b = (await record(client, failure(appointment_id="2", account="salon-2"))).json()
    await client.post(f"/api/verifications/{a['id']}/resolve", json={"outcome": "synced"}, headers=AUTH)

    async def ids(**params: str) -> list[str]:
        response = await client.get("/api/verifications", params=params, headers=AUTH)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert await ids(account="salon-2") == [b["id"]]
    assert await ids(status="resolved") == [a["id"]]
    assert await ids(status="pending") == [b["id"]]
    assert await ids(appointment_id="1") == [a["id"]]
    assert await ids(account="salon-1", status="pending") == []


@pytest.mark.parametrize("params", [{"status": "done"}, {"limit": "0"}, {"limit": "500"}, {"limit": "x"}, {"cursor": "garbage!"}])
async def test_list_rejects_bad_parameters(client: httpx.AsyncClient, account: None, params: dict) -> None:
    response = await client.get("/api/verifications", params=params, headers=AUTH)
    assert response.status_code == 422
    assert next(iter(params)) in response.text


async def test_no_response_contains_a_secret(client: httpx.AsyncClient) -> None:
    texts = [(await create_account(client)).text]
    texts.append((await client.get("/api/accounts/salon-1", headers=AUTH)).text)
    texts.append((await record(client, failure())).text)
    texts.append((await client.get("/api/verifications", headers=AUTH)).text)
    texts.append((await client.get("/openapi.json")).text)
    for text in texts:
        assert API_KEY not in text and WEBHOOK_SECRET not in text


async def test_openapi_describes_the_api(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    assert document["openapi"].startswith("3.")
    assert {"/api/accounts/{account}", "/api/verifications", "/api/verifications/{id}", "/api/verifications/{id}/resolve"} <= set(
        document["paths"]
    )
    assert "VerificationIn" in document["components"]["schemas"]


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["migrations"] == "current"


async def test_status_and_metrics_are_served_without_a_token(client: httpx.AsyncClient) -> None:
    status = await client.get("/status")
    assert status.status_code == 200 and "verifications" in status.json()
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    assert "calcom_verifier_verifications" in metrics.text


async def test_a_limit_in_other_digits_is_a_422_not_a_500(client: httpx.AsyncClient, account: None) -> None:
    # "²" and "٣" are digits to str.isdigit() but not to int().
    for value in ("²", "٣"):
        response = await client.get("/api/verifications", params={"limit": value}, headers=AUTH)
        assert response.status_code == 422
