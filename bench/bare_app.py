"""The reference for the ingest benchmark: a bare Starlette endpoint that only checks the HMAC.

Same route shape and same server settings as `python -m service web` (uvicorn defaults: uvloop and
httptools where installed, one process, no access log): read the body, look the account's secret up
in a dict, compare `X-Cal-Signature-256` with the hex HMAC-SHA256 of the raw body in constant time,
answer a small JSON 200 (401/404 otherwise). No parsing, no database.

    BENCH_SECRETS='{"bench-0": "…"}' .venv/bin/python bench/bare_app.py --port 8001
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from service.core.signatures import calcom_signature_valid

SECRETS: dict[str, str] = json.loads(os.environ.get("BENCH_SECRETS", "{}"))
_OK = Response(b'{"ok":true,"stored":true}', media_type="application/json")


async def webhook(request: Request) -> Response:
    secret = SECRETS.get(request.path_params["account"])
    if secret is None:
        return Response(b'{"error":"unknown account"}', 404, media_type="application/json")
    body = await request.body()
    if not calcom_signature_valid(secret, body, request.headers.get("x-cal-signature-256")):
        return Response(b'{"error":"bad signature"}', 401, media_type="application/json")
    return _OK


app = Starlette(routes=[Route("/webhooks/calcom/{account}", webhook, methods=["POST"])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    # The settings `service.cli.cmd_web` gives uvicorn.Config (loop/http left at "auto").
    config = uvicorn.Config(app, host=args.host, port=args.port, access_log=False, log_config=None, timeout_graceful_shutdown=35)
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
