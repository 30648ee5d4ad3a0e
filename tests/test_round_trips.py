"""How many statements the hot decisions take.

Every statement is a round trip to the database (on PostgreSQL through the network stack), and a
failure recorded just after its webhook is what the booking platform waits for: the statements that
only repeat what the transaction already knows are left out, and these tests keep them out.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from service.store import connector
from service.store.connector import Query, sql
from service.store.queries import claims as claim_store
from service.store.queries import observations as observation_store
from service.store.queries import verifications as verification_store

from .helpers import booking_event, create_account, failure, phase, post_webhook, record

START = datetime(2026, 12, 1, 10, 0, tzinfo=timezone(timedelta(hours=1)))


def statements(monkeypatch: pytest.MonkeyPatch) -> list[Query]:
    """Every query run from now on, through whichever connector (fetch_one and fetch_val go through fetch_all)."""
    seen: list[Query] = []
    fetch_all, execute = connector.Tx.fetch_all, connector.Tx.execute

    async def counted_fetch_all(self: connector.Tx, query: Query, **params: Any) -> Any:
        seen.append(query)
        return await fetch_all(self, query, **params)

    async def counted_execute(self: connector.Tx, query: Query, **params: Any) -> Any:
        seen.append(query)
        return await execute(self, query, **params)

    monkeypatch.setattr(connector.Tx, "fetch_all", counted_fetch_all)
    monkeypatch.setattr(connector.Tx, "execute", counted_execute)
    return seen


async def test_an_intake_verified_with_a_free_booking_probes_once_and_reads_no_owner_back(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    await create_account(client)
    assert (await post_webhook(client, booking_event(uid="bk-free", start=START))).status_code == 200
    seen = statements(monkeypatch)
    recorded = await record(client, failure(phases=[phase("A", START)]))
    assert recorded.json()["status"] == "verified"
    # The window around its phase was probed for competitors once (the group's loading reuses it).
    assert seen.count(verification_store.PENDING_NEAR) == 1
    assert claim_store.CLAIM_MANY in seen and claim_store.OWNERS_OF not in seen
    # The group's candidates, near its phases, tagged for its appointment or made for its verifier_ref: one statement.
    assert seen.count(observation_store.AVAILABLE_FOR) == 1
    # Read to decide, then read back once as written (its announcement and the answer share that read).
    assert seen.count(verification_store.BY_SEQS) == 2 and seen.count(verification_store.PHASES_OF) == 2


async def test_claims_read_their_owners_back_only_when_a_unit_was_taken(app: Any, client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    await create_account(client)
    first = await record(client, failure("801", phases=[phase("A", START)]))
    second = await record(client, failure("802", phases=[phase("A", START + timedelta(hours=2))]))
    db = app.state.services.db
    async with db.read() as tx:
        seqs = {r["id"]: r["seq"] for r in await tx.fetch_all(sql("SELECT id, seq FROM verifications"))}
    one, two = seqs[first.json()["id"]], seqs[second.json()["id"]]
    now = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)
    seen = statements(monkeypatch)
    async with db.transaction() as tx:
        assert await claim_store.claim_many(tx, "salon-1", [("bk-1", "", one, "A")], now) == {("bk-1", ""): one}
        assert claim_store.OWNERS_OF not in seen  # free: its claimer owns it
        owners = await claim_store.claim_many(tx, "salon-1", [("bk-1", "", two, "A"), ("bk-2", "", two, "A")], now)
        assert owners == {("bk-1", ""): one, ("bk-2", ""): two}  # bk-1 stays the first one's
        assert seen.count(claim_store.OWNERS_OF) == 1


async def test_a_tagged_webhook_with_nothing_pending_is_matched_without_a_decision(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """One probe finds what is pending near the booking or under its tag; with nothing, only the duplicate check remains."""
    await create_account(client)
    seen = statements(monkeypatch)
    tagged = booking_event(uid="bk-tagged", start=START, metadata={"appointment_id": "804"})
    assert (await post_webhook(client, tagged)).status_code == 200  # answered once matched (the test client waits)
    assert seen.count(verification_store.PENDING_CONCERNED_MANY) == 1
    assert verification_store.PENDING_FOR_APPOINTMENTS not in seen
    assert connector._SAVEPOINT not in seen  # no decision opened
