"""Fuzzing the HTTP edge (hypothesis), on SQLite and PostgreSQL: whatever arrives, never a 500.

* `POST /webhooks/calcom/{account}`: random bytes, random JSON, mutated real Cal.com examples,
  form bodies, odd headers and paths, signed and unsigned. Unsigned or wrongly signed input never
  changes the database; signed garbage is either a 200 (stored) or a 400 (nothing stored).
* `POST /api/verifications`, `PUT`/`GET /api/accounts/{id}`, `GET /api/verifications[/{id}]`: valid
  bodies with a few fields broken (wrong types, huge numbers, odd unicode, naive and offset times,
  the edges of the calendar), random JSON, odd query strings (`wait`, `limit`, `cursor`, …) and
  tokens. A 401 or 422 stores nothing.

The inputs this fuzzer once turned into 500s (64-bit overflow, the edges of the calendar, NUL
characters on PostgreSQL, non-ASCII digit strings) are pinned by regression tests at the end.

SPEC §9 (bad input rows), §4 (validation is a 422 naming the field; webhook check order).
"""

from __future__ import annotations

import copy
import itertools
import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.store.connector import Database, sql

from .helpers import AUTH, EXAMPLES, OTHER_WEBHOOK_SECRET, booking_event, create_account, sign

FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "120")),  # e.g. FUZZ_EXAMPLES=5000 for a long hunt
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
MAX_BODY = 65536  # the `settings` fixture's MAX_BODY_BYTES
EXAMPLE_BODIES = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(Path(EXAMPLES).glob("*.json"))]
TRIGGERS = ["BOOKING_CREATED", "BOOKING_REQUESTED", "BOOKING_RESCHEDULED", "BOOKING_CANCELLED", "BOOKING_REJECTED", "PING", "MEETING_ENDED"]
APPOINTMENTS = itertools.count()

# --- strategies ---------------------------------------------------------------------------------

odd_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",))
    | st.sampled_from(["\x00", "\u202e", "\ufeff", "😀", "Ω", "\u0301", "'", '"', "\\", "%"]),
    max_size=40,
)
huge_numbers = st.sampled_from(
    [2**63, 2**63 - 1, -(2**63) - 1, 2**70, 10**30, -1, 0, 1e308, -1e308, 1.5, 2**53 + 1, "99999999999999999999"]
)
numbers = st.integers(min_value=-(2**66), max_value=2**66) | huge_numbers | st.floats(allow_nan=False, allow_infinity=False)
json_scalars = st.none() | st.booleans() | numbers | odd_text
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(odd_text, inner, max_size=4), max_leaves=12
)
EDGE_TIMES = [
    "9999-12-31T23:59:59-14:00",
    "9999-12-31T23:00:00Z",
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T00:10:00Z",
    "2026-12-01T10:00:00",
    "2026-12-01T10:00:00Z",
    "2026-12-01T10:00:00+01:00",
    "2026-12-01T10:00:00.123456789+01:00",
    "2026-12-01",
    "10:00",
    "2026-02-30T10:00:00Z",
    "2026-12-01T10:00:00+25:00",
    "2026-12-01T10:00:00+01",
    "",
    " ",
]


@st.composite
def times(draw: st.DrawFn) -> Any:
    """Times as a client might send them: with and without offsets, at the edges of the calendar, or not times at all."""
    moment = draw(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)))
    offset = draw(
        st.sampled_from([None, timedelta(0), timedelta(hours=1), timedelta(hours=-14), timedelta(hours=14), timedelta(minutes=330)])
    )
    text = moment.isoformat() if offset is None else moment.replace(tzinfo=timezone(offset)).isoformat()
    return draw(st.sampled_from([text]) | st.sampled_from(EDGE_TIMES) | json_scalars)


def edge_for(name: str) -> st.SearchStrategy[Any]:
    """Values to put into field `name`: its own kind at the edges, or any other kind."""
    own = {
        "start": times(),
        "end": times(),
        "createdAt": times(),
        "startTime": times(),
        "endTime": times(),
        "event_type_id": st.integers(min_value=-5, max_value=2**70) | huge_numbers | st.sampled_from([2**63 - 1, 2**63, 2**64, 10**30]),
        "match_tolerance_seconds": st.integers(min_value=-10, max_value=4000) | huge_numbers,
        "host_email": st.sampled_from(["ANNA@SALON.EXAMPLE", "not-an-email", "a@b", "a\x00@b.c", "x" * 400 + "@b.c"]) | st.emails(),
        "attendee_email": st.emails() | odd_text,
        "staff_required": st.booleans(),
        "enabled": st.booleans(),
        "appointment_id": st.integers(min_value=-(2**70), max_value=2**70) | st.text(max_size=140) | huge_numbers,
        "calcom_api_base": st.sampled_from(
            ["https://api.cal.com", "http://127.0.0.1:1", "ftp://x", "https://", "javascript:alert(1)", "http://[::1"]
        ),
        "callback_url": st.sampled_from(
            ["https://platform.example/hook", "http://[::1]:99999/", "https://user:pw@host/", "https://h/\x00"]
        ),
        "callback_secret": st.sampled_from(
            ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_", "whsec_!!!!", "whsec_" + "A" * 200, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
        ),
    }.get(name, odd_text)
    return st.one_of(own, own, own, json_scalars, json_values)


@st.composite
def broken(draw: st.DrawFn, body: dict[str, Any], nested: str | None = None) -> dict[str, Any]:
    """`body` with 0–3 of its fields (or of the items in `body[nested]`) deleted, replaced or added."""
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2, 3]))):  # mostly one broken field, so most bodies get far
        target = body
        if nested and isinstance(body.get(nested), list) and body[nested] and draw(st.booleans()):
            target = draw(st.sampled_from(body[nested]))
            if not isinstance(target, dict):
                continue
        own = st.sampled_from(sorted(target)) if target else st.nothing()
        name = draw(st.one_of(own, own, own, st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)))
        if draw(st.integers(0, 4)) == 0:
            target.pop(name, None)
        else:
            target[name] = draw(edge_for(name))
    return body


@st.composite
def verification_bodies(draw: st.DrawFn) -> Any:
    start = draw(
        st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(timezone(timedelta(hours=1))))
    )
    phase_list = []
    for n, key in enumerate(draw(st.lists(st.sampled_from("ABCD"), min_size=1, max_size=3, unique=True))):
        at = start + timedelta(minutes=30 * n)
        phase = {"key": key, "start": at.isoformat(), "end": (at + timedelta(minutes=30)).isoformat()}
        if draw(st.booleans()):
            phase.update(event_type_id=101, host_email="anna@salon.example", attendee_email="kunde@example.com")
        phase_list.append(phase)
    body = {
        "account": "salon-1",
        "appointment_id": f"fuzz-{next(APPOINTMENTS)}",
        "service": "Dauerwelle",
        "sync_error": "Cal.com HTTP 400",
        "phases": phase_list,
    }
    return draw(broken(body, "phases") | st.builds(dict) | json_values) if draw(st.integers(0, 9)) == 0 else draw(broken(body, "phases"))


@st.composite
def account_bodies(draw: st.DrawFn) -> Any:
    body = {
        "calcom_api_key": "cal_live_fuzz",
        "webhook_secret": "fuzz-webhook-secret",
        "calcom_api_base": "https://api.cal.com",
        "callback_url": "https://platform.example/hook",
        "callback_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "match_tolerance_seconds": 300,
        "enabled": True,
    }
    for name in draw(st.lists(st.sampled_from(sorted(body)), max_size=3)):  # optional fields left out
        if name not in ("calcom_api_key", "webhook_secret"):
            body.pop(name, None)
    return draw(json_values) if draw(st.integers(0, 9)) == 0 else draw(broken(body))


@st.composite
def mutated_examples(draw: st.DrawFn) -> Any:
    """A real Cal.com body (or one built on it with a fresh uid) with a few fields deleted, replaced or retyped."""
    if draw(st.booleans()):
        body = copy.deepcopy(draw(st.sampled_from(EXAMPLE_BODIES)))
    else:
        trigger = draw(st.sampled_from(TRIGGERS[:5]))
        start = draw(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(timezone.utc)))
        body = booking_event(trigger, uid=str(draw(st.uuids())), start=start)
    payload = body.get("payload")
    for _ in range(draw(st.integers(0, 3))):
        target = payload if isinstance(payload, dict) and draw(st.integers(0, 3)) else body
        name = draw(
            st.sampled_from(sorted(target))
            | st.sampled_from(
                [
                    "uid",
                    "startTime",
                    "endTime",
                    "bookingId",
                    "eventTypeId",
                    "createdAt",
                    "triggerEvent",
                    "attendees",
                    "metadata",
                    "rescheduleUid",
                    "attendeeSeatId",
                ]
            )
        )
        action = draw(st.integers(0, 5))
        if action == 0:
            target.pop(name, None)
        elif name == "triggerEvent":
            body["triggerEvent"] = draw(st.sampled_from(TRIGGERS) | odd_text | json_scalars)
        else:
            target[name] = draw(
                edge_for(name) if name in ("startTime", "endTime", "createdAt") else st.one_of(odd_text, huge_numbers, json_values)
            )
    return body


def encode(value: Any, ascii_only: bool) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


webhook_bodies = st.one_of(
    st.binary(max_size=512),
    st.builds(encode, json_values, st.booleans()),
    *[st.builds(encode, mutated_examples(), st.booleans())] * 5,
    st.sampled_from(
        [
            b"",
            b"{}",
            b"[]",
            b"null",
            b"triggerEvent=BOOKING_CREATED&payload=x",
            b'{"triggerEvent":',
            b"\xff\xfe{}",
            b'{"triggerEvent":"BOOKING_CREATED","payload":{"uid":"a\x00"}}',
        ]
    ),
    st.builds(lambda n: b"{" + b" " * (MAX_BODY + n) + b"}", st.integers(0, 10)),
)
header_values = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
extra_headers = st.dictionaries(
    st.sampled_from(["content-type", "x-forwarded-for", "content-encoding", "x-random", "authorization"]), header_values, max_size=3
)
query_values = st.one_of(
    st.sampled_from(
        [
            "",
            "0",
            "-0",
            "0.01",
            "30",
            "31",
            "-1",
            "nan",
            "inf",
            "-inf",
            "1e400",
            "0x10",
            "1_0",
            " 1",
            "１",
            "200",
            "201",
            "abc",
            "%00",
            "\x00",
        ]
    ),
    odd_text,
)

# --- helpers ------------------------------------------------------------------------------------


async def counts(db: Database) -> dict[str, int]:
    found = {}
    async with db.read() as tx:
        for table in ("webhook_events", "booking_observations", "verifications", "phases", "accounts", "booking_claims", "outbox"):
            found[table] = int(await tx.fetch_val(sql(f"SELECT COUNT(*) AS n FROM {table}")))
    return found


def check_answer(response: httpx.Response) -> None:
    """Never a 500; error answers are our JSON error shape."""
    assert response.status_code < 500, f"{response.status_code} for {response.request.method} {response.request.url}: {response.text[:300]}"
    if response.status_code >= 400 and response.headers.get("content-type", "").startswith("application/json"):
        assert "error" in response.json()


def valid_wait(raw: str) -> bool:
    try:
        value = float(raw)
    except ValueError:
        return False
    return 0 < value <= 30


@pytest.fixture
async def edge(app: object) -> Any:
    """Like the `client` fixture, but an unhandled error reaches the test as the 500 a caller would
    get (the default ASGI transport re-raises it inside the test instead)."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://verifier.test") as http:
        yield http


@pytest.fixture
async def account(edge: httpx.AsyncClient) -> None:
    await create_account(edge)


# --- webhooks -----------------------------------------------------------------------------------


@FUZZ
@given(
    body=webhook_bodies,
    signing=st.sampled_from(["right"] * 8 + ["none", "wrong-secret", "no-secret-provided", "garbage", "upper-hex", "prefixed"]),
    account_path=st.sampled_from(["salon-1"] * 8 + ["nobody", "<odd>"]),
    odd_path=odd_text,
    headers=extra_headers,
)
async def test_fuzzed_webhooks_never_500_and_only_correctly_signed_bodies_are_stored(
    edge: httpx.AsyncClient,
    db: Database,
    account: None,
    body: bytes,
    signing: str,
    account_path: str,
    odd_path: str,
    headers: dict[str, str],
) -> None:
    account_path = odd_path if account_path == "<odd>" else account_path
    signature = {
        "right": sign(body),
        "wrong-secret": sign(body, OTHER_WEBHOOK_SECRET),
        "no-secret-provided": "no-secret-provided",
        "garbage": "zz" * 32,
        "upper-hex": sign(body).upper(),
        "prefixed": "sha256=" + sign(body),
        "none": None,
    }[signing]
    if signature is not None:
        headers["X-Cal-Signature-256"] = signature
    before = await counts(db)
    response = await edge.post(f"/webhooks/calcom/{quote(account_path, safe='')}", content=body, headers=headers)
    after = await counts(db)
    signed_ok = signing in ("right", "upper-hex")
    check_answer(response)
    if response.status_code == 500:
        pass
    elif account_path != "salon-1":
        assert response.status_code in (307, 404, 405), response.text
    elif len(body) > MAX_BODY:
        assert response.status_code == 413
    elif not signed_ok:
        assert response.status_code == 401, response.text
    else:
        assert response.status_code in (200, 400, 500), response.text
    if response.status_code != 200:
        assert after == before, f"a {response.status_code} changed the database: {before} → {after}"
    else:
        duplicate = response.json().get("duplicate", False)
        assert after["webhook_events"] == before["webhook_events"] + (0 if duplicate else 1)
        assert not duplicate or after == before, "a duplicate changed something"


# --- /api/verifications -------------------------------------------------------------------------


@FUZZ
@given(
    body=verification_bodies() | st.binary(max_size=200),
    ascii_only=st.booleans(),
    wait=st.none() | query_values,
    token=st.sampled_from(["right"] * 6 + ["none", "wrong", "basic", "lower-bearer"]),
)
async def test_fuzzed_verification_intake_never_500_and_rejections_store_nothing(
    edge: httpx.AsyncClient, db: Database, account: None, body: Any, ascii_only: bool, wait: str | None, token: str
) -> None:
    from .helpers import API_TOKEN

    headers = {
        "right": AUTH,
        "none": {},
        "wrong": {"Authorization": "Bearer " + "x" * 32},
        "basic": {"Authorization": "Basic dXNlcjpwYXNz"},
        "lower-bearer": {"Authorization": "bearer " + API_TOKEN},
    }[token]
    content = body if isinstance(body, bytes) else encode(body, ascii_only)
    params = {"wait": wait} if wait is not None else None
    if wait is not None and valid_wait(wait):
        params = {"wait": "0"}  # a real wait holds the call up to 30 s; valid waits are tested in test_api_verifications
    before = await counts(db)
    response = await edge.post(
        "/api/verifications", content=content, headers={**headers, "Content-Type": "application/json"}, params=params
    )
    after = await counts(db)
    authorised = token in ("right", "lower-bearer")
    check_answer(response)
    if not authorised:
        assert response.status_code == 401
    assert response.status_code in (200, 201, 401, 404, 409, 422), response.text
    if response.status_code == 422:
        assert response.json()["error"]["details"], "a 422 must name the field"
    if response.status_code != 201:
        assert after == before, f"a {response.status_code} changed the database: {response.text[:200]}"
    else:
        assert after["verifications"] == before["verifications"] + 1


@FUZZ
@given(
    verification_id=st.sampled_from(["", "x", "00000000-0000-0000-0000-000000000000"]) | odd_text,
    params=st.dictionaries(
        st.sampled_from(["wait", "limit", "cursor", "status", "account", "review_reason", "appointment_id"]), query_values, max_size=4
    ),
)
async def test_fuzzed_verification_reads_never_500(
    edge: httpx.AsyncClient, account: None, verification_id: str, params: dict[str, str]
) -> None:
    if "wait" in params and valid_wait(params["wait"]):
        params["wait"] = "0"
    listing = await edge.get("/api/verifications", params=params, headers=AUTH)
    check_answer(listing)
    assert listing.status_code in (200, 422), listing.text
    one = await edge.get(f"/api/verifications/{quote(verification_id, safe='')}", params=params, headers=AUTH)
    check_answer(one)
    # 307: "/api/verifications/" is redirected to the list
    assert one.status_code in (200, 307, 404, 405, 422), one.text


# --- /api/accounts ------------------------------------------------------------------------------


@FUZZ
@given(
    account_id=st.sampled_from(["salon-2", "a", "a" * 63, "a" * 64, "Salon", "-x", "x_y-z", "salon-1"]) | odd_text,
    body=account_bodies() | st.binary(max_size=100),
    ascii_only=st.booleans(),
)
async def test_fuzzed_account_writes_never_500_and_invalid_ones_store_nothing(
    edge: httpx.AsyncClient, db: Database, account_id: str, body: Any, ascii_only: bool
) -> None:
    content = body if isinstance(body, bytes) else encode(body, ascii_only)
    before = await counts(db)
    response = await edge.put(
        f"/api/accounts/{quote(account_id, safe='')}", content=content, headers={**AUTH, "Content-Type": "application/json"}
    )
    after = await counts(db)
    check_answer(response)
    assert response.status_code in (200, 201, 307, 404, 405, 422), response.text
    if response.status_code in (200, 201):
        shown = response.json()
        assert shown["webhook_secret"] == "set" and shown["calcom_api_key"] == "set"
        assert "fuzz-webhook-secret" not in response.text and "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" not in response.text, "a secret was echoed"
    else:
        assert after == before, f"a {response.status_code} changed the database"
    read = await edge.get(f"/api/accounts/{quote(account_id, safe='')}", headers=AUTH)
    check_answer(read)
    assert read.status_code in (200, 307, 404, 405, 422)


# --- regressions: inputs that once gave a 500 ---------------------------------------------------

T = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


def _intake(**phase: Any) -> dict[str, Any]:
    return {"account": "salon-1", "appointment_id": "762", "phases": [{"key": "A", "start": "2026-12-01T10:00:00+01:00", **phase}]}


@pytest.mark.parametrize("value", [2**63])
async def test_intake_event_type_id_beyond_bigint_is_a_422(edge: httpx.AsyncClient, db: Database, account: None, value: int) -> None:
    response = await edge.post("/api/verifications", json=_intake(event_type_id=value), headers=AUTH)
    assert response.status_code == 422, response.text


@pytest.mark.parametrize("start", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"])
async def test_intake_start_at_the_edge_of_the_calendar_is_a_422(edge: httpx.AsyncClient, account: None, start: str) -> None:
    response = await edge.post("/api/verifications", json=_intake() | {"phases": [{"key": "A", "start": start}]}, headers=AUTH)
    assert response.status_code in (201, 422), response.text


@pytest.mark.parametrize("field", ["appointment_id", "key"])
async def test_intake_nul_character_is_a_422(edge: httpx.AsyncClient, database_url: str, account: None, field: str) -> None:
    body = _intake()
    if field == "key":
        body["phases"][0]["key"] = "A\x00"
    else:
        body[field] = "x\x00y"
    response = await edge.post("/api/verifications", json=body, headers=AUTH)
    assert response.status_code == 422, response.text


async def test_account_secret_with_nul_character_is_a_422(edge: httpx.AsyncClient, database_url: str) -> None:
    response = await edge.put("/api/accounts/salon-9", json={"calcom_api_key": "k\x00", "webhook_secret": "secret"}, headers=AUTH)
    assert response.status_code == 422, response.text


@pytest.mark.parametrize("case", ["bookingId", "eventTypeId", "startTime", "uid_nul", "trigger_nul", "bookingId_superscript"])
async def test_signed_webhook_garbage_is_a_200_or_a_400(
    edge: httpx.AsyncClient, database_url: str, db: Database, account: None, case: str
) -> None:
    envelope = booking_event(uid="bk-1", start=T)
    if case in ("bookingId", "eventTypeId"):
        envelope["payload"][case] = 2**64
    elif case == "bookingId_superscript":
        envelope["payload"]["bookingId"] = "²"
    elif case == "startTime":
        envelope["payload"]["startTime"] = "9999-12-31T23:59:59Z"
    elif case == "uid_nul":
        envelope["payload"]["uid"] = "bk\x001"
    else:
        envelope["triggerEvent"] = "PI\x00NG"
    body = json.dumps(envelope).encode()
    response = await edge.post("/webhooks/calcom/salon-1", content=body, headers={"X-Cal-Signature-256": sign(body)})
    assert response.status_code in (200, 400), response.text


@pytest.mark.parametrize(
    "url", ["/api/verifications/a%00b", "/api/verifications?account=%00", "/api/verifications?appointment_id=%00", "/webhooks/calcom/%00"]
)
async def test_nul_character_in_a_path_or_filter_is_not_a_500(edge: httpx.AsyncClient, database_url: str, account: None, url: str) -> None:
    response = await (edge.post(url, content=b"{}") if url.startswith("/webhooks") else edge.get(url, headers=AUTH))
    assert response.status_code in (200, 404, 422), response.text
