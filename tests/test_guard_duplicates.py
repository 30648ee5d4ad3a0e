"""A retry Cal.com accepted twice: listed on the verification, by GET /api/duplicates and in /status; dismissed by hand."""

from __future__ import annotations

from service.testing.fakecalcom import FakeCalcom

from .guard_kit import (  # noqa: F401 (fixtures)
    book,
    bookings_in,
    calcom_transport,
    fake,
    guard_timeout,
    hooks,
    salon,
    settings,
    verification,
)
from .helpers import AUTH


async def test_a_platform_retry_that_cal_com_books_on_another_host_is_a_listed_duplicate(client, fake: FakeCalcom, salon) -> None:
    fake.set_event_type(4004, hosts=["anna@salon.example", "ben@salon.example"])
    fake.fail_next_create("error_after_write_500")
    first = await book(client, eventTypeId=4004)
    retry = await book(client, eventTypeId=4004)  # no Idempotency-Key: the platform's own retry

    assert first.status_code == 201 and retry.status_code == 201
    assert len(bookings_in(fake)) == 2
    view = await verification(client, first.headers["x-verification-id"])
    assert view["status"] == "verified" and view["phases"][0]["booking"]["uid"] == first.json()["data"]["uid"]
    assert [d["uid"] for d in view["duplicates"]] == [retry.json()["data"]["uid"]]

    listed = (await client.get("/api/duplicates", headers=AUTH)).json()["items"]
    assert [(d["uid"], d["duplicate_of"], d["verification_id"]) for d in listed] == [
        (retry.json()["data"]["uid"], first.json()["data"]["uid"], view["id"])
    ]
    assert (await client.get("/status", headers=AUTH)).json()["duplicate_bookings"] == {"open": 1}

    dismissed = await client.post(f"/api/duplicates/{listed[0]['uid']}/dismiss", headers=AUTH)
    assert dismissed.status_code == 200 and dismissed.json() == {"uid": listed[0]["uid"], "dismissed": 1}
    assert (await client.get("/api/duplicates", headers=AUTH)).json()["items"] == []
    assert (await client.get("/status", headers=AUTH)).json()["duplicate_bookings"] == {"open": 0}
    assert (await client.post(f"/api/duplicates/{listed[0]['uid']}/dismiss", headers=AUTH)).status_code == 404
    assert len(bookings_in(fake)) == 2  # nothing is ever cancelled by the service


async def test_the_duplicates_list_needs_the_api_token(client, salon) -> None:
    assert (await client.get("/api/duplicates")).status_code == 401
