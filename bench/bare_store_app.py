"""The second reference for the ingest benchmark: the bare HMAC endpoint plus a durable insert.

`bare_app.py`'s endpoint, and before answering 200 the raw body is appended to a table through the
service's own database connector (same pool, same SQLite pragmas), group-committed by one writer
task: everything queued meanwhile goes in one transaction of one `executemany` (one trip to the
driver per batch). No parsing, no duplicate detection, no matching: the floor of any receiver on
this stack that answers only once the body is on disk.

    BENCH_SECRETS='{"bench-0": "…"}' DATABASE_URL=sqlite:///x.sqlite3 .venv/bin/python bench/bare_store_app.py --port 8002
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from service.core.signatures import calcom_signature_valid
from service.settings import normalize_database_url
from service.store.connector import Database, open_database, sql

SECRETS: dict[str, str] = json.loads(os.environ.get("BENCH_SECRETS", "{}"))
_OK = Response(b'{"ok":true,"stored":true}', media_type="application/json")
CREATE = sql(
    "CREATE TABLE IF NOT EXISTS bare_bodies (seq INTEGER PRIMARY KEY AUTOINCREMENT, account TEXT NOT NULL, body TEXT NOT NULL)",
    postgresql="CREATE TABLE IF NOT EXISTS bare_bodies (seq BIGSERIAL PRIMARY KEY, account TEXT NOT NULL, body TEXT NOT NULL)",
)
INSERT = sql("INSERT INTO bare_bodies (account, body) VALUES (:account, :body)")


class Writer:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.queue: asyncio.Queue[tuple[str, bytes, asyncio.Future[None]]] = asyncio.Queue()

    async def run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while len(batch) < 256 and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            try:
                async with self.db.transaction() as tx:
                    await tx.execute_many(INSERT, [{"account": a, "body": b.decode("utf-8", "replace")} for a, b, _ in batch])
            except Exception as exc:
                for *_, future in batch:
                    future.set_exception(exc)
                continue
            for *_, future in batch:
                future.set_result(None)

    async def append(self, account: str, body: bytes) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((account, body, future))
        await future


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    db = open_database(normalize_database_url(os.environ["DATABASE_URL"]))
    await db.connect()
    async with db.transaction() as tx:
        await tx.execute(CREATE)
    writer = Writer(db)
    task = asyncio.create_task(writer.run())
    app.state.writer = writer
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await db.disconnect()


async def webhook(request: Request) -> Response:
    account = request.path_params["account"]
    secret = SECRETS.get(account)
    if secret is None:
        return Response(b'{"error":"unknown account"}', 404, media_type="application/json")
    body = await request.body()
    if not calcom_signature_valid(secret, body, request.headers.get("x-cal-signature-256")):
        return Response(b'{"error":"bad signature"}', 401, media_type="application/json")
    await request.app.state.writer.append(account, body)
    return _OK


app = Starlette(routes=[Route("/webhooks/calcom/{account}", webhook, methods=["POST"])], lifespan=lifespan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    args = parser.parse_args()
    config = uvicorn.Config(app, host=args.host, port=args.port, access_log=False, log_config=None, timeout_graceful_shutdown=35)
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
