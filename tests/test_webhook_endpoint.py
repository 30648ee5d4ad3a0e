"""POST /webhooks/calcom/{account}: signature, size, shape — each test breaks exactly one thing."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from service.store.connector import Database, sql

from .helpers import EXAMPLES, OTHER_WEBHOOK_SECRET, WEBHOOK_SECRET, create_account, sign, signed

REAL_EXAMPLES = sorted(p.name for p in Path(EXAMPLES).glob("*.json"))


async def stored(db: Database) -> tuple[int, int]:
    async with db.read() as tx:
        events = await tx.fetch_val(sql("SELECT COUNT(*) AS n FROM webhook_events"))
        observations = await tx.fetch_val(sql("SELECT COUNT(*) AS n FROM booking_observations"))
    return int(events), int(observations)


@pytest.fixture
async def account(client: httpx.AsyncClient) -> None:
    await create_account(client)


def raw(name: str) -> bytes:
    return (Path(EXAMPLES) / name).read_bytes()


async def send(client: httpx.AsyncClient, body: bytes, headers: dict[str, str], account: str = "salon-1") -> httpx.Response:
    return await client.post(f"/webhooks/calcom/{account}", content=body, headers=headers)


@pytest.mark.parametrize("name", [n for n in REAL_EXAMPLES if "redacted" not in n])
async def test_real_example_signed_like_calcom_is_accepted(client: httpx.AsyncClient, account: None, db: Database, name: str) -> None:
    body = raw(name)  # the exact bytes, as Cal.com would send them
    response = await send(client, body, {"Content-Type": "application/json", "X-Cal-Signature-256": sign(body)})
    assert response.status_code == 200, response.text
    assert (await stored(db))[0] == 1


async def test_redacted_snapshot_is_rejected_for_its_unusable_start_time(client: httpx.AsyncClient, account: None, db: Database) -> None:
    body = raw("booking_created.e2e-snapshot-redacted.json")
    response = await send(client, body, {"X-Cal-Signature-256": sign(body)})
    assert response.status_code == 400
    assert "startTime" in response.json()["error"]["message"]
    assert await stored(db) == (0, 0)


async def test_webhook_rejects_tampered_body(client: httpx.AsyncClient, account: None, db: Database) -> None:
    body = raw("booking_created.docs-v2021-10-20.json")
    tampered = body.replace(b"2024-01-01T10:00:00Z", b"2024-01-01T11:00:00Z")
    response = await send(client, tampered, {"X-Cal-Signature-256": sign(body)})
    assert response.status_code == 401
    assert await stored(db) == (0, 0)


async def test_webhook_rejects_wrong_secret(client: httpx.AsyncClient, account: None, db: Database) -> None:
    body = raw("booking_created.docs-v2021-10-20.json")
    response = await send(client, body, {"X-Cal-Signature-256": sign(body, OTHER_WEBHOOK_SECRET)})
    assert response.status_code == 401
    assert await stored(db) == (0, 0)


async def test_webhook_rejects_no_secret_provided(client: httpx.AsyncClient, account: None, db: Database) -> None:
    body = raw("booking_created.docs-v2021-10-20.json")
    response = await send(client, body, {"X-Cal-Signature-256": "no-secret-provided"})
    assert response.status_code == 401
    assert await stored(db) == (0, 0)


async def test_webhook_rejects_missing_signature_header(client: httpx.AsyncClient, account: None, db: Database) -> None:
    response = await send(client, raw("booking_created.docs-v2021-10-20.json"), {"Content-Type": "application/json"})
    assert response.status_code == 401
    assert await stored(db) == (0, 0)


async def test_webhook_rejects_reserialised_json(client: httpx.AsyncClient, account: None, db: Database) -> None:
    body = raw("booking_created.docs-v2021-10-20.json")
    reserialised = json.dumps(json.loads(body), separators=(",", ":")).encode()
    assert reserialised != body
    response = await send(client, reserialised, {"X-Cal-Signature-256": sign(body)})
    assert response.status_code == 401
    assert await stored(db) == (0, 0)


async def test_signature_is_case_insensitive_hex(client: httpx.AsyncClient, account: None) -> None:
    body = raw("booking_created.docs-v2021-10-20.json")
    response = await send(client, body, {"X-Cal-Signature-256": sign(body).upper()})
    assert response.status_code == 200


async def test_webhook_rejects_oversize_body_before_checking_signature(
    client: httpx.AsyncClient, account: None, db: Database, settings
) -> None:
    body = b'{"triggerEvent":"BOOKING_CREATED","payload":{"x":"' + b"a" * settings.max_body_bytes + b'"}}'
    response = await send(client, body, {"X-Cal-Signature-256": sign(body)})
    assert response.status_code == 413
    unsigned = await send(client, body, {})
    assert unsigned.status_code == 413
    assert await stored(db) == (0, 0)


async def test_unknown_account_is_404_before_size_or_signature(client: httpx.AsyncClient, db: Database, settings) -> None:
    big = b"x" * (settings.max_body_bytes + 1)
    assert (await send(client, big, {}, account="nobody")).status_code == 404
    body = raw("booking_created.docs-v2021-10-20.json")
    response = await send(client, body, {"X-Cal-Signature-256": sign(body)}, account="nobody")
    assert response.status_code == 404
    assert await stored(db) == (0, 0)


async def test_signature_is_checked_before_the_shape(client: httpx.AsyncClient, account: None) -> None:
    assert (await send(client, b"not json at all", {"X-Cal-Signature-256": "00" * 32})).status_code == 401


async def test_webhook_rejects_signed_non_json(client: httpx.AsyncClient, account: None, db: Database) -> None:
    body = b"<xml>booking</xml>"
    response = await send(client, body, {"X-Cal-Signature-256": sign(body)})
    assert response.status_code == 400
    assert "JSON" in response.json()["error"]["message"]
    assert await stored(db) == (0, 0)


async def test_form_encoded_template_body_is_explained(client: httpx.AsyncClient, account: None, db: Database) -> None:
    body = b"triggerEvent=BOOKING_CREATED&uid=abc&startTime=2026-12-01T09%3A00%3A00Z"
    response = await send(client, body, {"Content-Type": "application/x-www-form-urlencoded", "X-Cal-Signature-256": sign(body)})
    assert response.status_code == 400
    assert "payload template" in response.json()["error"]["message"]
    assert await stored(db) == (0, 0)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ([1, 2, 3], "triggerEvent"),
        ({"payload": {"uid": "x"}}, "triggerEvent"),
        ({"triggerEvent": 5}, "triggerEvent"),
        ({"triggerEvent": "BOOKING_CREATED", "payload": "x"}, "payload"),
        ({"triggerEvent": "BOOKING_CREATED", "payload": {"startTime": "2026-12-01T09:00:00Z"}}, "uid"),
        ({"triggerEvent": "BOOKING_CREATED", "payload": {"uid": "x"}}, "startTime"),
        ({"triggerEvent": "BOOKING_CANCELLED", "payload": {"startTime": "2026-12-01T09:00:00Z"}}, "uid"),
        ({"triggerEvent": "BOOKING_CREATED", "payload": {"uid": "x", "startTime": "2026-12-01T09:00:00"}}, "startTime"),
    ],
)
async def test_signed_but_wrong_shape_is_400(client: httpx.AsyncClient, account: None, db: Database, body: object, needle: str) -> None:
    request = signed(json.dumps(body).encode())
    response = await send(client, request.body, request.headers)
    assert response.status_code == 400
    assert needle in response.json()["error"]["message"]
    assert await stored(db) == (0, 0)


@pytest.mark.parametrize(
    "body",
    [
        {
            "triggerEvent": "PING",
            "createdAt": "2026-11-30T09:00:00Z",
            "payload": {
                "type": "Test",
                "title": "Test trigger event",
                "startTime": "2026-11-30T09:00:00Z",
                "endTime": "2026-11-30T09:00:00Z",
            },
        },
        {"triggerEvent": "MEETING_ENDED", "uid": "abc", "startTime": "2026-11-30T09:00:00Z"},
        {"triggerEvent": "FORM_SUBMITTED", "createdAt": "2026-11-30T09:00:00Z", "payload": {"responses": {}}},
        {"triggerEvent": "SOMETHING_NEW", "payload": None},
    ],
    ids=["ping", "meeting-ended", "form", "unknown"],
)
async def test_other_triggers_are_accepted_and_ignored(client: httpx.AsyncClient, account: None, db: Database, body: dict) -> None:
    request = signed(body)
    response = await send(client, request.body, request.headers)
    assert response.status_code == 200
    assert response.json()["ignored"] is True
    assert (await stored(db))[1] == 0


async def test_no_show_example_is_ignored(client: httpx.AsyncClient, account: None, db: Database) -> None:
    body = raw("booking_no_show_updated.docs-2025-12.json")
    response = await send(client, body, {"X-Cal-Signature-256": sign(body)})
    assert response.status_code == 200 and response.json()["ignored"] is True
    assert (await stored(db))[1] == 0


async def test_duplicate_body_is_accepted_and_changes_nothing(client: httpx.AsyncClient, account: None, db: Database) -> None:
    body = raw("booking_created.docs-v2021-10-20.json")
    first = await send(client, body, {"X-Cal-Signature-256": sign(body)})
    assert first.json() == {"ok": True, "stored": True}
    async with db.read() as tx:
        before = await tx.fetch_all(sql("SELECT * FROM booking_observations"))
    second = await send(client, body, {"X-Cal-Signature-256": sign(body)})
    assert second.status_code == 200 and second.json()["duplicate"] is True
    async with db.read() as tx:
        after = await tx.fetch_all(sql("SELECT * FROM booking_observations"))
    assert after == before and await stored(db) == (1, 1)


async def test_disabled_account_still_stores_webhooks(client: httpx.AsyncClient, db: Database) -> None:
    await create_account(client, enabled=False)
    body = raw("booking_created.docs-v2021-10-20.json")
    assert (await send(client, body, {"X-Cal-Signature-256": sign(body)})).status_code == 200
    assert await stored(db) == (1, 1)


async def test_rotated_secret_takes_effect_at_once(client: httpx.AsyncClient, account: None) -> None:
    body = raw("booking_created.docs-v2021-10-20.json")
    assert (await send(client, body, {"X-Cal-Signature-256": sign(body)})).status_code == 200
    await create_account(client, webhook_secret=OTHER_WEBHOOK_SECRET)
    body2 = raw("booking_requested.docs-v2021-10-20.json")
    assert (await send(client, body2, {"X-Cal-Signature-256": sign(body2, WEBHOOK_SECRET)})).status_code == 401
    assert (await send(client, body2, {"X-Cal-Signature-256": sign(body2, OTHER_WEBHOOK_SECRET)})).status_code == 200
