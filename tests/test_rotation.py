"""Secret rotation without refusals: the old webhook secret until a set time; callbacks signed with both for 24 h."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from service.app.accounts import CALLBACK_ROTATION
from service.settings import Settings
from service.store.connector import Database, sql
from service.workers.callbacks import CallbackDeliverer

from .helpers import AUTH, CALLBACK_SECRET, WEBHOOK_SECRET, FakeClock, booking_event, create_account, failure, iso, post_webhook, record

NEW_SECRET = "whk-secret-new-5e6f7a8b9c0d"
NEW_CALLBACK_SECRET = "whsec_bmV3LWNhbGxiYWNrLXNlY3JldC1vZi10ZXN0czE="
START = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


def event(n: int) -> dict[str, object]:
    return booking_event(uid=f"bk-{n}", booking_id=4700 + n, start=START + timedelta(hours=n))


async def test_the_old_webhook_secret_is_accepted_until_its_time_and_refused_after(client: httpx.AsyncClient, clock: FakeClock) -> None:
    await create_account(client)
    until = clock.now + timedelta(hours=1)
    changed = await client.patch(
        "/api/accounts/salon-1", json={"webhook_secret": NEW_SECRET, "webhook_secret_previous_until": iso(until)}, headers=AUTH
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["webhook_secret_previous_until"] == iso(until)

    assert (await post_webhook(client, event(1), secret=WEBHOOK_SECRET)).status_code == 200
    assert (await post_webhook(client, event(2), secret=NEW_SECRET)).status_code == 200
    clock.advance(3599)
    assert (await post_webhook(client, event(3), secret=WEBHOOK_SECRET)).status_code == 200
    clock.advance(1)  # the time given: no longer
    assert (await post_webhook(client, event(4), secret=WEBHOOK_SECRET)).status_code == 401
    assert (await post_webhook(client, event(5), secret=NEW_SECRET)).status_code == 200
    assert (await post_webhook(client, event(6), secret="neither-of-them-0000")).status_code == 401


async def test_a_new_webhook_secret_without_a_time_replaces_the_old_one_at_once(client: httpx.AsyncClient, clock: FakeClock) -> None:
    await create_account(client)
    assert (await client.patch("/api/accounts/salon-1", json={"webhook_secret": NEW_SECRET}, headers=AUTH)).json()[
        "webhook_secret_previous_until"
    ] is None
    assert (await post_webhook(client, event(1), secret=WEBHOOK_SECRET)).status_code == 401
    assert (await post_webhook(client, event(2), secret=NEW_SECRET)).status_code == 200


async def test_a_put_rotates_too_and_other_changes_keep_a_running_rotation(client: httpx.AsyncClient, clock: FakeClock) -> None:
    await create_account(client)
    until = clock.now + timedelta(minutes=30)
    await create_account(client, webhook_secret=NEW_SECRET, webhook_secret_previous_until=iso(until))
    # Changing something else (PATCH) keeps the rotation running.
    assert (await client.patch("/api/accounts/salon-1", json={"enabled": False}, headers=AUTH)).json()[
        "webhook_secret_previous_until"
    ] == iso(until)
    assert (await post_webhook(client, event(1), secret=WEBHOOK_SECRET)).status_code == 200
    clock.advance(1800)
    assert (await post_webhook(client, event(2), secret=WEBHOOK_SECRET)).status_code == 401


@pytest.mark.parametrize("when", ["2026-11-30T08:00:00Z", "2026-12-01T12:00:00"])
async def test_a_past_or_naive_time_keeps_no_old_secret_or_is_refused(client: httpx.AsyncClient, clock: FakeClock, when: str) -> None:
    await create_account(client)
    answer = await client.patch(
        "/api/accounts/salon-1", json={"webhook_secret": NEW_SECRET, "webhook_secret_previous_until": when}, headers=AUTH
    )
    if when.endswith("Z"):
        assert answer.status_code == 200 and answer.json()["webhook_secret_previous_until"] is None
        assert (await post_webhook(client, event(1), secret=WEBHOOK_SECRET)).status_code == 401
    else:
        assert answer.status_code == 422 and answer.json()["error"]["details"][0]["field"] == "webhook_secret_previous_until"


async def test_callbacks_are_signed_with_both_secrets_for_24_hours_after_a_change(
    client: httpx.AsyncClient, clock: FakeClock, db: Database, settings: Settings
) -> None:
    clock.now = datetime.now(timezone.utc).replace(microsecond=0)  # the verifier checks timestamps against the real clock
    sent: list[httpx.Request] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    await create_account(client, callback_url="https://platform.example/verdicts", callback_secret=CALLBACK_SECRET, enabled=False)
    changed = await client.patch("/api/accounts/salon-1", json={"callback_secret": NEW_CALLBACK_SECRET}, headers=AUTH)
    assert changed.json()["callback_secret_previous_until"] == iso(clock.now + CALLBACK_ROTATION)
    async with httpx.AsyncClient(transport=httpx.MockTransport(receiver)) as http:
        deliverer = CallbackDeliverer(db, http, settings, owner="p", rng=random.Random(1), clock=clock)
        assert (await record(client, failure("762"))).status_code == 201
        assert await deliverer.tick(clock.now) == 1
        [first] = sent
        assert len(first.headers["webhook-signature"].split(" ")) == 2
        # A platform on either secret accepts it (the Standard Webhooks library tries each signature).
        Webhook(CALLBACK_SECRET).verify(first.content, dict(first.headers))
        Webhook(NEW_CALLBACK_SECRET).verify(first.content, dict(first.headers))

        clock.advance(CALLBACK_ROTATION.total_seconds())  # a day later: the new secret only
        assert (await record(client, failure("763"))).status_code == 201
        assert await deliverer.tick(clock.now) == 1
        second = sent[1]
        # (The library's verify() would refuse a timestamp a day ahead of the real clock: compare with its sign().)
        stamp = datetime.fromtimestamp(int(second.headers["webhook-timestamp"]), timezone.utc)
        assert second.headers["webhook-signature"] == Webhook(NEW_CALLBACK_SECRET).sign(
            second.headers["webhook-id"], stamp, second.content.decode()
        )


async def test_a_rotation_leaves_no_secret_in_the_audit_log(client: httpx.AsyncClient, clock: FakeClock, db: Database) -> None:
    """The audit log is not encrypted: the old secrets an account keeps while rotating appear there only as "(replaced)"."""
    await create_account(client)
    until = iso(clock.now + timedelta(hours=1))
    await create_account(client, webhook_secret=NEW_SECRET, webhook_secret_previous_until=until, callback_secret=NEW_CALLBACK_SECRET)
    async with db.transaction() as tx:
        rows = await tx.fetch_all(sql("SELECT action, detail FROM audit_log ORDER BY seq"))
    assert [row["action"] for row in rows][:2] == ["account_created", "account_replaced"]
    stored = " ".join(str(row["detail"]) for row in rows)
    for secret in (WEBHOOK_SECRET, CALLBACK_SECRET, NEW_SECRET, NEW_CALLBACK_SECRET):
        assert secret not in stored
    assert "(replaced)" in stored
