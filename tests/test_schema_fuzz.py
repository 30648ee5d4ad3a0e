"""Fuzzed from its own schema: schemathesis generates requests for every /api operation from /openapi.json.

Each request goes to the real app (on SQLite and PostgreSQL) with the administrator's token, and
every answer must be no 5xx, a status the document declares for the operation, and a body that fits
the declared schema. `make test` runs a bounded number of examples per operation
(SCHEMA_FUZZ_EXAMPLES, default 25); a longer hunt is `SCHEMA_FUZZ_EXAMPLES=2000 .venv/bin/python -m
pytest tests/test_schema_fuzz.py` (README, Development).
"""

from __future__ import annotations

import json
import os
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core import NotSet
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance, status_code_conformance

from service.web.openapi import document

from .helpers import AUTH, create_account

SCHEMA = schemathesis.openapi.from_dict(document())
OPERATIONS = sorted((op.method.upper(), op.path) for op in (result.ok() for result in SCHEMA.get_all_operations()))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = settings(
    max_examples=int(os.environ.get("SCHEMA_FUZZ_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)


def test_every_api_operation_is_fuzzed() -> None:
    assert len(OPERATIONS) == sum(len(item) for item in document()["paths"].values()) >= 10


async def send(client: httpx.AsyncClient, case: Any) -> httpx.Response:
    """The generated request, as the platform would send it, with the administrator's token."""
    query = dict(case.query or {})
    if "wait" in query:
        query["wait"] = 0  # long-polls would only make the run slow; their answers are the same shapes
    headers = {**{k: str(v) for k, v in (case.headers or {}).items()}, **AUTH}
    content = None if isinstance(case.body, NotSet) else json.dumps(case.body).encode()
    if content is not None:
        headers["content-type"] = "application/json"
    return await client.request(case.method, case.formatted_path, params=query, headers=headers, content=content)


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
async def test_schema_driven_requests_get_no_5xx_and_answers_fit_the_schema(client: httpx.AsyncClient, method: str, path: str) -> None:
    await create_account(client, "salon-1")
    operation = SCHEMA[path][method]
    strategy = operation.as_strategy()

    @EXAMPLES
    @given(data=st.data())
    def cases(data: st.DataObject) -> None:
        found.append(data.draw(strategy))

    found: list[Any] = []
    cases()
    for case in found:
        response = await send(client, case)
        case.validate_response(response, checks=CHECKS)


@pytest.mark.parametrize("key", ["cal_live_è", "cal live key", "cal_live_\t1", "key\x17"])
async def test_an_api_key_that_cannot_travel_in_a_header_is_a_422(client: httpx.AsyncClient, key: str) -> None:
    # Found by this fuzzer: a replaced key is tried with Cal.com at once, and httpx refused the header (a 500).
    await create_account(client, "salon-1")
    answer = await client.put("/api/accounts/salon-1", json={"calcom_api_key": key, "webhook_secret": "s"}, headers=AUTH)
    assert answer.status_code == 422 and answer.json()["error"]["details"][0]["field"] == "calcom_api_key"
