"""The OpenAPI 3.1 description of /api/*, made from the operations the routes declare.

Each handler declares its operation once (method, path, parameters, request body, answers) on an
`Api`; the routes and this document are both built from those declarations, and every schema comes
from the pydantic types that parse the requests and validate the views. So an endpoint cannot be
served without being described, and the description cannot drift from what the code answers.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from http import HTTPStatus
from typing import Any, Literal

from pydantic import TypeAdapter
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.core.responses import ErrorOut
from service.web.http import require_admin

Handler = Callable[[Request], Awaitable[Response]]
# An answer: a body type; a body type with its description; or, as a bare description, an error
# (its body is always `ErrorOut`).
Answer = type | tuple[type, str] | str
SECURITY_SCHEME = "bearer"
PLATFORM_SCHEME = "platformToken"
FORBIDDEN = "a platform token may not do this: it needs the administrator's API_TOKEN"


@dataclass(frozen=True)
class Param:
    """A path or query parameter and the JSON schema of its value."""

    name: str
    where: Literal["path", "query"]
    schema: Mapping[str, Any]
    description: str = ""

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "in": self.where, "required": self.where == "path", "schema": dict(self.schema)}
        if self.description:
            out["description"] = self.description
        return out


def path_param(name: str, description: str = "", **schema: Any) -> Param:
    return Param(name, "path", {"type": "string", **schema}, description)


def query_param(name: str, description: str = "", **schema: Any) -> Param:
    return Param(name, "query", schema or {"type": "string"}, description)


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    handler: Handler
    summary: str
    responses: Mapping[int, Answer]
    body: type | None = None
    params: tuple[Param, ...] = ()
    # True: the administrator's API_TOKEN only (a platform token gets 403). False: a platform token
    # may call it too, for its own account's verifications (the handler keeps it to them).
    admin: bool = True


class Api:
    """The operations of one mounted API, each declared once beside its handler."""

    def __init__(self, prefix: str, *, common: Mapping[int, str]) -> None:
        self.prefix = prefix
        self.common = dict(common)  # answers every operation can give (authentication, database outage)
        self.operations: list[Operation] = []

    def operation(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        responses: Mapping[int, Answer],
        body: type | None = None,
        params: Sequence[Param] = (),
        admin: bool = True,
    ) -> Callable[[Handler], Handler]:
        """Declare the decorated handler's operation: it is routed and described from this alone."""
        templated = set(re.findall(r"{(\w+)}", path))
        declared = {p.name for p in params if p.where == "path"}
        if templated != declared:
            raise ValueError(f"{method} {path}: path parameters {sorted(templated)} declared as {sorted(declared)}")

        def register(handler: Handler) -> Handler:
            answers = {**responses, 403: FORBIDDEN} if admin else dict(responses)
            self.operations.append(Operation(method.upper(), path, handler, summary, answers, body, tuple(params), admin))
            return handler

        return register

    def routes(self) -> list[Route]:
        return [Route(op.path, _admin_only(op.handler) if op.admin else op.handler, methods=[op.method]) for op in self.operations]


def _admin_only(handler: Handler) -> Handler:
    """The handler behind a 403 for platform tokens."""

    async def run(request: Request) -> Response:
        require_admin(request)
        return await handler(request)

    run.__name__ = handler.__name__
    return run


class _Schemas:
    """components.schemas, filled as operations refer to types."""

    def __init__(self) -> None:
        self.found: dict[str, Any] = {}

    def ref(self, model: type, mode: Literal["validation", "serialization"]) -> dict[str, str]:
        schema = TypeAdapter(model).json_schema(mode=mode, ref_template="#/components/schemas/{model}")
        for name, part in {**schema.pop("$defs", {}), model.__name__: schema}.items():
            if self.found.setdefault(name, part) != part:
                raise ValueError(f"two different schemas are named {name}")
        return {"$ref": f"#/components/schemas/{model.__name__}"}


def describe(api: Api, *, title: str, version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of an `Api`."""
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for op in api.operations:
        entry: dict[str, Any] = {"operationId": op.handler.__name__, "summary": op.summary}
        if op.params:
            entry["parameters"] = [p.describe() for p in op.params]
        if op.body is not None:
            body = {"application/json": {"schema": schemas.ref(op.body, "validation")}}
            entry["requestBody"] = {"required": True, "content": body}
        answers = {**api.common, **op.responses}
        entry["responses"] = {str(status): _answer(status, answers[status], schemas) for status in sorted(answers)}
        entry["security"] = [{SECURITY_SCHEME: []}] if op.admin else [{SECURITY_SCHEME: []}, {PLATFORM_SCHEME: []}]
        paths.setdefault(api.prefix + op.path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.found.items())),
            "securitySchemes": {
                SECURITY_SCHEME: {"type": "http", "scheme": "bearer", "description": "API_TOKEN"},
                PLATFORM_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a platform token (POST /api/accounts/{account}/tokens): that account's verifications only",
                },
            },
        },
    }


def _answer(status: int, answer: Answer, schemas: _Schemas) -> dict[str, Any]:
    model: type
    if isinstance(answer, str):
        model, description = ErrorOut, answer
    elif isinstance(answer, tuple):
        model, description = answer
    else:
        model, description = answer, HTTPStatus(status).phrase
    return {"description": description, "content": {"application/json": {"schema": schemas.ref(model, "serialization")}}}


@lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    """The document served at /openapi.json."""
    # Imported here: the routes modules import this one to declare their operations.
    from service.web.routes.catalog import API

    return describe(API, title="Cal.com post-sync verifier", version="1")
