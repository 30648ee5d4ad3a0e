"""`GET /v2/bookings` and `GET /v2/bookings/{uid}` of the fake Cal.com."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.testing.fakecalcom.answers import bearer, error
from service.testing.fakecalcom.bookings import old_item
from service.testing.fakecalcom.queries import pagination, parse_query

if TYPE_CHECKING:
    from service.testing.fakecalcom.app import FakeCalcom

API_VERSION = "2024-08-13"


async def list_bookings(fake: FakeCalcom, request: Request) -> Response:
    """The key's bookings, filtered, sorted and paged like Cal.com's list."""
    now = fake.clock()
    api_key = bearer(request)
    fake.requests.append({"api_key": api_key, "api_version": request.headers.get("cal-api-version"), "params": dict(request.query_params)})
    refused = await fake.admit_read(request, api_key)
    if refused is not None:
        return refused
    assert api_key is not None
    blocked, headers = fake.throttle(request, api_key, now)
    if blocked is not None:
        return blocked
    if request.headers.get("cal-api-version") != API_VERSION:
        old = {"bookings": fake.book.old_shape(api_key), "recurringInfo": [], "nextCursor": None}
        return JSONResponse({"status": "success", "data": old}, headers=headers)
    try:
        query = parse_query(request.query_params)
    except ValueError as exc:
        return error(request, 400, "BadRequestException", str(exc), headers)
    items = fake.book.query(api_key, query, now=now)
    page = items[query.skip : query.skip + query.take]
    body = {"status": "success", "data": page, "pagination": pagination(len(items), query.skip, query.take)}
    return JSONResponse(body, headers=headers)


async def get_booking(fake: FakeCalcom, request: Request) -> Response:
    """One booking by uid, or every occurrence of a recurring series by the series uid."""
    now = fake.clock()
    api_key = bearer(request)
    uid = request.path_params["uid"]
    fake.requests.append(
        {"api_key": api_key, "api_version": request.headers.get("cal-api-version"), "params": dict(request.query_params), "uid": uid}
    )
    refused = await fake.admit_read(request, api_key)
    if refused is not None:
        return refused
    assert api_key is not None
    blocked, headers = fake.throttle(request, api_key, now)
    if blocked is not None:
        return blocked
    # Cal.com hands out any booking whose uid one knows, whichever account asks.
    found = fake.book.find(uid)
    if found is None:
        return error(request, 404, "NotFoundException", f"Booking with uid={uid} was not found in the database", headers)
    data: Any = found
    if request.headers.get("cal-api-version") != API_VERSION:
        data = [old_item(item) for item in found] if isinstance(found, list) else old_item(found)
    return JSONResponse({"status": "success", "data": data}, headers=headers)
