"""Signing in to the console from a test: the CSRF token read from the form, like a browser would."""

from __future__ import annotations

import re

import httpx

OPERATOR = "alice"
PASSWORD = "correct horse battery staple"
SESSION_KEY = "console-session-key-for-tests-4f1c9a7e2b6d8035"
_CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF token in the page"
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, name: str = OPERATOR, password: str = PASSWORD) -> httpx.Response:
    form = await client.get("/console/sign-in")
    assert form.status_code == 200
    return await client.post("/console/sign-in", data={"csrf": csrf_of(form.text), "name": name, "password": password, "next": "/console"})
