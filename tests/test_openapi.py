"""/openapi.json: a valid OpenAPI 3.1 document that covers every /api route and is true of the real answers."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
import referencing
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_spec
from referencing.jsonschema import DRAFT202012
from starlette.routing import Mount

from service.core.views import render
from service.settings import Settings
from service.web.app import create_app
from service.web.openapi import Api, document, path_param

from .helpers import API_KEY, API_TOKEN, AUTH, CALLBACK_SECRET, WEBHOOK_SECRET, FakeClock, booking_event, failure, phase, post_webhook

T = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
DOC_URI = "urn:calcom-verifier:openapi"


def _registry(doc: dict[str, Any]) -> referencing.Registry:
    return referencing.Registry().with_resource(DOC_URI, DRAFT202012.create_resource(doc))


def _pointer(*parts: str) -> str:
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


def schema_errors(doc: dict[str, Any], body: Any, *location: str) -> list[str]:
    """Why `body` does not fit the schema at `location` in the document ($refs resolved within it)."""
    validator = Draft202012Validator({"$ref": DOC_URI + "#" + _pointer(*location)}, registry=_registry(doc))
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(body)]


def answer_errors(doc: dict[str, Any], method: str, path: str, response: httpx.Response) -> list[str]:
    """Why a real answer contradicts the document: undocumented path, method or status, or a body off schema."""
    templates = [t for t in doc["paths"] if re.fullmatch(re.sub(r"{\w+}", "[^/]+", t), path)]
    if len(templates) != 1:
        return [f"{path}: matches {templates} in the document"]
    operation = doc["paths"][templates[0]].get(method.lower())
    if operation is None:
        return [f"{method} {templates[0]} is not described"]
    status = str(response.status_code)
    if status not in operation["responses"]:
        return [f"{method} {templates[0]} does not describe a {status}"]
    if not response.headers["content-type"].startswith("application/json"):
        return [f"{method} {path} answered {response.headers['content-type']}"]
    return schema_errors(
        doc, response.json(), "paths", templates[0], method.lower(), "responses", status, "content", "application/json", "schema"
    )


class Conformance:
    """Sends requests to the real app and checks every answer against the document."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.doc = document()
        self.seen: set[tuple[str, str, int]] = set()

    async def __call__(self, method: str, path: str, expected: int, **kwargs: Any) -> dict[str, Any]:
        kwargs.setdefault("headers", AUTH)
        response = await self.client.request(method, path, **kwargs)
        assert response.status_code == expected, response.text
        assert answer_errors(self.doc, method, path, response) == []
        self.seen.add((method, path, expected))
        return response.json()


def test_document_is_valid_openapi_3_1() -> None:
    doc = document()
    assert doc["openapi"] == "3.1.0"
    validate_spec(doc)


def test_every_api_route_is_described_with_every_method() -> None:
    app = create_app(Settings(_env_file=None, api_token=API_TOKEN))
    mounts = [r for r in app.routes if isinstance(r, Mount) and r.path == "/api"]
    assert len(mounts) == 1
    served = {
        (mounts[0].path + route.path, method)
        for route in mounts[0].routes
        for method in route.methods - {"HEAD"}  # Starlette adds HEAD to every GET
    }
    described = {(path, method.upper()) for path, item in document()["paths"].items() for method in item}
    assert served == described
    assert len(served) >= 6


def test_every_operation_needs_the_bearer_token() -> None:
    doc = document()
    assert doc["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer", "description": "API_TOKEN"}
    assert doc["components"]["securitySchemes"]["platformToken"]["scheme"] == "bearer"
    scoped = set()
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            assert operation["security"] in ([{"bearer": []}], [{"bearer": []}, {"platformToken": []}])
            assert {"401", "503"} <= set(operation["responses"])
            if len(operation["security"]) == 2:
                scoped.add((method.upper(), path))
            else:  # the administrator's only: a platform token is refused
                assert "403" in operation["responses"]
    assert scoped == {
        ("POST", "/api/verifications"),
        ("GET", "/api/verifications"),
        ("GET", "/api/verifications/{id}"),
        ("POST", "/api/verifications/{id}/resolve"),
    }


def _object_schemas(doc: dict[str, Any], schema: Any, seen: set[str]) -> list[dict[str, Any]]:
    """Every object schema reachable from `schema`, following $refs into components."""
    if isinstance(schema, list):
        return [found for item in schema for found in _object_schemas(doc, item, seen)]
    if not isinstance(schema, dict):
        return []
    ref = schema.get("$ref")
    if ref is not None:
        if ref in seen:
            return []
        seen.add(ref)
        return _object_schemas(doc, doc["components"]["schemas"][ref.rsplit("/", 1)[-1]], seen)
    own = [schema] if schema.get("type") == "object" and "properties" in schema else []
    return own + [found for value in schema.values() for found in _object_schemas(doc, value, seen)]


def test_request_bodies_refuse_unknown_fields() -> None:
    doc = document()
    bodies = [op["requestBody"] for item in doc["paths"].values() for op in item.values() if "requestBody" in op]
    assert len(bodies) >= 4  # PUT and PATCH of accounts, the intake, the resolve (and what came since)
    objects = _object_schemas(doc, bodies, set())
    assert {o["title"] for o in objects} == {"AccountIn", "AccountPatch", "VerificationIn", "PhaseIn", "ResolveIn"}
    assert all(o["additionalProperties"] is False for o in objects)


def test_response_bodies_are_closed() -> None:
    """Every object in an answer is described field by field: a field the document does not name fails."""
    doc = document()
    responses = [op["responses"] for item in doc["paths"].values() for op in item.values()]
    objects = _object_schemas(doc, responses, set())
    assert {"VerificationOut", "PhaseOut", "BookingOut", "AccountOut", "ErrorOut", "VerificationPage"} <= {o["title"] for o in objects}
    assert all(o["additionalProperties"] is False for o in objects)


def _stored_phase(
    key: str, status: str, booking: tuple[str, str | None] | None = None, seat: str = "", **constraints: Any
) -> dict[str, Any]:
    source, identity = booking or (None, None)
    unseen = source == "operator"  # a booking an operator named that we never observed
    return {
        "key": key,
        "start_at": T,
        "end_at": None,
        "staff_required": status != "not_required",
        "status": status,
        "booking_uid": f"uid-{key}" if booking else None,
        "booking_seat": seat,
        "booking_id": None if unseen else 7,
        "booking_start_at": None if unseen else T + timedelta(milliseconds=250),
        "booking_source": source,
        "booking_identity": identity,
        **constraints,
    }


def _stored_verification(status: str, reason: str | None, via: str | None) -> dict[str, Any]:
    final = status != "pending"
    return {
        "id": "v_1",
        "account": "salon-1",
        "appointment_id": "762",
        "service": None,
        "status": status,
        "review_reason": reason,
        "resolution": "synced" if status == "resolved" else None,
        "resolved_via": via,
        "note": None,
        "created_at": T,
        "resolved_at": T if final else None,
        "next_check_at": T,
        "deadline_at": T,
        "checks": 3,
        "complete_checks": 2,
        "sync_error": None,
    }


@pytest.mark.parametrize(
    ("status", "reason", "via", "phases", "callback"),
    [
        ("pending", None, None, [_stored_phase("A", "pending"), _stored_phase("B", "not_required")], None),
        (
            "verified",
            None,
            "poll",
            [_stored_phase("A", "matched", ("poll", "tag"), seat="seat-9", event_type_id=101)],
            {"state": "delivered", "attempts": 1, "last_error": None},
        ),
        (
            "manual_review",
            "calcom_unavailable",
            "system",
            [_stored_phase("A", "unknown", attendee_phone="+49 30 1234")],
            {"state": "failed", "attempts": 8, "last_error": "HTTP 500"},
        ),
        (
            "manual_review",
            "unconfirmed_match",
            "system",
            [_stored_phase("A", "matched", ("webhook", "time")), _stored_phase("B", "ambiguous")],
            {"state": "pending", "attempts": 0, "last_error": None},
        ),
        (
            "manual_review",
            "partial_match",
            "system",
            [_stored_phase("A", "matched", ("webhook", "person")), _stored_phase("B", "missing", host_email="anna@salon.example")],
            None,
        ),
        ("resolved", None, "operator", [_stored_phase("A", "matched", ("operator", "operator"))], None),
    ],
    ids=["pending", "seat", "unknown", "unconfirmed", "partial", "operator"],
)
def test_every_kind_of_verification_fits_the_document(
    status: str, reason: str | None, via: str | None, phases: list, callback: dict | None
) -> None:
    view = render(_stored_verification(status, reason, via), phases, callback)
    assert schema_errors(document(), view, "components", "schemas", "VerificationOut") == []


def test_an_answer_with_a_field_the_document_does_not_name_is_caught() -> None:
    """The check the scenarios rely on can fail: an undescribed field, a value outside its set."""
    view = render(_stored_verification("pending", None, None), [_stored_phase("A", "pending")], None)
    surprise = {**view, "surprise": True}
    assert any("surprise" in e for e in schema_errors(document(), surprise, "components", "schemas", "VerificationOut"))
    odd = {**view, "phases": [{**view["phases"][0], "status": "lost"}]}
    assert schema_errors(document(), odd, "components", "schemas", "VerificationOut") != []


def test_render_refuses_a_view_the_document_does_not_describe() -> None:
    with pytest.raises(ValueError, match="status"):
        render(_stored_verification("pending", None, None), [_stored_phase("A", "lost")], None)
    with pytest.raises(ValueError, match="booking_source|source"):
        render(_stored_verification("verified", None, "webhook"), [_stored_phase("A", "matched", ("carrier pigeon", "tag"))], None)


def test_an_operation_must_declare_the_parameters_of_its_path() -> None:
    api = Api("/x", common={})
    with pytest.raises(ValueError, match="path parameters"):
        api.operation("GET", "/things/{thing}", summary="a thing", responses={200: "a thing"})
    with pytest.raises(ValueError, match="path parameters"):
        api.operation("GET", "/things", summary="things", responses={200: "things"}, params=[path_param("thing")])


async def test_real_answers_fit_the_document(client: httpx.AsyncClient, clock: FakeClock) -> None:
    call = Conformance(client)
    secret = {"calcom_api_key": API_KEY, "webhook_secret": WEBHOOK_SECRET}
    await call("PUT", "/api/accounts/salon-1", 201, json=secret)
    await call("PUT", "/api/accounts/salon-1", 200, json={**secret, "match_tolerance_seconds": 120, "time_only_matching": True})
    await call(
        "PUT",
        "/api/accounts/salon-2",
        201,
        json={**secret, "callback_url": "https://platform.example/hooks", "callback_secret": CALLBACK_SECRET},
    )
    assert (await call("GET", "/api/accounts/salon-2", 200))["callback_secret"] == "set"
    await call("GET", "/api/accounts/nobody", 404)
    await call("GET", "/api/accounts/Not_An_Id!", 422)
    await call("PUT", "/api/accounts/salon-3", 422, json={**secret, "calcom_api_base": "ftp://x"})

    phases = [
        phase("A", T, event_type_id=101, host_email="anna@salon.example", attendee_phone="+49 30 1234567"),
        {**phase("B", T + timedelta(minutes=30), who=None), "staff_required": False},
    ]
    pending = await call("POST", "/api/verifications", 201, json=failure(phases=phases))
    await call("POST", "/api/verifications", 200, json=failure(phases=phases))
    await call("POST", "/api/verifications", 409, json=failure(phases=[phase("A", T + timedelta(hours=1))]))
    await call("POST", "/api/verifications", 404, json=failure(account="nobody"))
    await call("POST", "/api/verifications", 422, json=failure(phases=[{**phase("A", T), "staff_requried": False}]))
    await call("POST", "/api/verifications", 422, json=failure(phases=[{"key": "A", "start": "2026-12-01T10:00:00"}]))
    await call("POST", "/api/verifications", 422, content=b"{not json", headers={**AUTH, "Content-Type": "application/json"})
    await call("POST", "/api/verifications", 413, json=failure(sync_error="x" * 70_000))
    await call("POST", "/api/verifications", 401, json=failure(), headers={})
    await call("POST", "/api/verifications", 422, json=failure(), params={"wait": "31"})

    assert (await post_webhook(client, booking_event(uid="hh-1", booking_id=4711, start=T + timedelta(hours=2)))).status_code == 200
    verified = await call("POST", "/api/verifications", 201, json=failure("763", phases=[phase("A", T + timedelta(hours=2))]))
    assert verified["status"] == "verified" and verified["phases"][0]["booking"]["identity"] == "person"

    await call("GET", f"/api/verifications/{pending['id']}", 200)
    await call("GET", f"/api/verifications/{pending['id']}", 200, params={"wait": "0"})
    await call("GET", "/api/verifications/no-such-id", 404)
    await call("GET", f"/api/verifications/{pending['id']}", 422, params={"wait": "soon"})
    await call("GET", f"/api/verifications/{pending['id']}", 401, headers={"Authorization": "Bearer wrong-token-000000"})
    page = await call("GET", "/api/verifications", 200, params={"limit": "1"})
    assert isinstance(page["next_cursor"], str)
    last = await call("GET", "/api/verifications", 200, params={"cursor": page["next_cursor"], "account": "salon-1", "status": "pending"})
    assert last["next_cursor"] is None
    await call("GET", "/api/verifications", 422, params={"status": "done"})
    await call("GET", "/api/verifications", 401, headers={})

    resolve = f"/api/verifications/{pending['id']}/resolve"
    await call("POST", resolve, 422, json={"outcome": "synced", "bookings": {"Z": "uid-1"}})
    await call("POST", resolve, 422, json={"outcome": "maybe"})
    resolved = await call("POST", resolve, 200, json={"outcome": "synced", "note": "booked by phone", "bookings": {"A": "never-seen-uid"}})
    assert resolved["phases"][0]["booking"] == {
        "id": None,
        "uid": "never-seen-uid",
        "start": None,
        "source": "operator",
        "identity": "operator",
    }
    await call("POST", resolve, 409, json={"outcome": "failed"})
    await call("POST", "/api/verifications/no-such-id/resolve", 404, json={"outcome": "failed"})
    await call("POST", resolve, 413, content=b"{" + b" " * 70_000 + b"}", headers={**AUTH, "Content-Type": "application/json"})

    assert {200, 201, 401, 404, 409, 413, 422} <= {status for _, _, status in call.seen}


async def test_unconfigured_api_answers_fit_the_document(database_url: str, clock: FakeClock) -> None:
    app = create_app(Settings(_env_file=None, database_url=database_url), clock=clock)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        await Conformance(http)("GET", "/api/verifications", 503)
        await Conformance(http)("PUT", "/api/accounts/salon-1", 503, json={})
