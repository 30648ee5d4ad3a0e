"""The OpenAPI 3.1 description of /api/* (request schemas come from the pydantic models)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from service.core.models import (
    REVIEW_REASONS,
    STATUSES,
    AccountIn,
    ResolveIn,
    VerificationIn,
)

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        401: "missing or wrong bearer token",
        404: "unknown account or verification",
        409: "conflicts with the current state",
        413: "body larger than MAX_BODY_BYTES",
        422: "validation error naming the field",
        503: "API_TOKEN not configured, or the database is unavailable",
    }
    return {str(code): _json(_ERROR, text[code]) for code in codes}


_WAIT = {
    "name": "wait",
    "in": "query",
    "required": False,
    "description": "long-poll: answer as soon as the verdict is known or after this many seconds (0-30)",
    "schema": {"type": "number", "minimum": 0, "maximum": 30},
}
_ACCOUNT_PARAM = {"name": "account", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,62}$"}}
_ID_PARAM = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}


@lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for model in (AccountIn, VerificationIn, ResolveIn):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    schemas["Error"] = {
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "details": {"type": "array", "items": {"type": "object", "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}},
                },
                "required": ["code", "message"],
            }
        },
    }
    booking = {
        "type": ["object", "null"],
        "properties": {
            "id": {"type": ["integer", "null"]},
            "uid": {"type": "string"},
            "seat_uid": {"type": "string"},
            "start": {"type": ["string", "null"], "format": "date-time"},
            "source": {"type": "string", "enum": ["webhook", "poll", "operator"]},
        },
    }
    schemas["Verification"] = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "account": {"type": "string"},
            "appointment_id": {"type": "string"},
            "service": {"type": ["string", "null"]},
            "status": {"type": "string", "enum": list(STATUSES)},
            "review_reason": {"type": ["string", "null"], "enum": [*REVIEW_REASONS, None]},
            "resolution": {"type": ["string", "null"], "enum": ["synced", "failed", None]},
            "resolved_via": {"type": ["string", "null"], "enum": ["webhook", "poll", "operator", "system", None]},
            "note": {"type": ["string", "null"]},
            "created_at": {"type": "string", "format": "date-time"},
            "resolved_at": {"type": ["string", "null"], "format": "date-time"},
            "next_check_at": {"type": ["string", "null"], "format": "date-time"},
            "deadline_at": {"type": ["string", "null"], "format": "date-time"},
            "checks": {"type": "integer"},
            "sync_error": {"type": ["string", "null"]},
            "missing_phases": {"type": "array", "items": {"type": "string"}},
            "phases": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "key": {"type": "string"},
                        "start": {"type": "string", "format": "date-time"},
                        "end": {"type": ["string", "null"], "format": "date-time"},
                        "staff_required": {"type": "boolean"},
                        "status": {"type": "string", "enum": ["pending", "matched", "missing", "ambiguous", "not_required"]},
                        "booking": booking,
                    },
                },
            },
            "callback": {
                "type": "object",
                "properties": {
                    "state": {"type": "string", "enum": ["none", "pending", "delivered", "failed"]},
                    "attempts": {"type": "integer"},
                    "last_error": {"type": ["string", "null"]},
                },
            },
        },
    }
    schemas["Account"] = {
        "type": "object",
        "description": "secrets are never echoed: they read \"set\"",
        "properties": {
            "account": {"type": "string"},
            "calcom_api_key": {"const": "set"},
            "webhook_secret": {"const": "set"},
            "calcom_api_base": {"type": ["string", "null"]},
            "callback_url": {"type": ["string", "null"]},
            "callback_secret": {"type": ["string", "null"], "enum": ["set", None]},
            "match_tolerance_seconds": {"type": "integer"},
            "enabled": {"type": "boolean"},
            "credentials": {"type": "string", "enum": ["ok", "broken"]},
        },
    }
    ref = lambda name: {"$ref": f"#/components/schemas/{name}"}
    paths = {
        "/api/accounts/{account}": {
            "put": {
                "summary": "Create or replace an account",
                "parameters": [_ACCOUNT_PARAM],
                "requestBody": {"required": True, "content": {"application/json": {"schema": ref("AccountIn")}}},
                "responses": {"201": _json(ref("Account"), "created"), "200": _json(ref("Account"), "replaced"), **_errors(401, 413, 422, 503)},
            },
            "get": {
                "summary": "Read an account (secrets shown as \"set\")",
                "parameters": [_ACCOUNT_PARAM],
                "responses": {"200": _json(ref("Account"), "the account"), **_errors(401, 404, 503)},
            },
        },
        "/api/verifications": {
            "post": {
                "summary": "Record a failed sync",
                "parameters": [_WAIT],
                "requestBody": {"required": True, "content": {"application/json": {"schema": ref("VerificationIn")}}},
                "responses": {
                    "201": _json(ref("Verification"), "recorded"),
                    "200": _json(ref("Verification"), "the same failure was recorded before (idempotent)"),
                    **_errors(401, 404, 409, 413, 422, 503),
                },
            },
            "get": {
                "summary": "List verifications, newest first",
                "parameters": [
                    {"name": name, "in": "query", "required": False, "schema": schema}
                    for name, schema in (
                        ("account", {"type": "string"}),
                        ("status", {"type": "string", "enum": list(STATUSES)}),
                        ("review_reason", {"type": "string", "enum": list(REVIEW_REASONS)}),
                        ("appointment_id", {"type": "string"}),
                        ("limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}),
                        ("cursor", {"type": "string"}),
                    )
                ],
                "responses": {
                    "200": _json(
                        {"type": "object", "properties": {"items": {"type": "array", "items": ref("Verification")}, "next_cursor": {"type": ["string", "null"]}}},
                        "one page",
                    ),
                    **_errors(401, 422, 503),
                },
            },
        },
        "/api/verifications/{id}": {
            "get": {
                "summary": "Read a verification (optionally long-poll for its verdict)",
                "parameters": [_ID_PARAM, _WAIT],
                "responses": {"200": _json(ref("Verification"), "the verification"), **_errors(401, 404, 422, 503)},
            }
        },
        "/api/verifications/{id}/resolve": {
            "post": {
                "summary": "Close a pending or manual_review verification by hand",
                "parameters": [_ID_PARAM],
                "requestBody": {"required": True, "content": {"application/json": {"schema": ref("ResolveIn")}}},
                "responses": {"200": _json(ref("Verification"), "resolved"), **_errors(401, 404, 409, 413, 422, 503)},
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Cal.com post-sync verifier", "version": "1"},
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }
