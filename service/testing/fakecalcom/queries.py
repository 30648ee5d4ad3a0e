"""The query of Cal.com's `GET /v2/bookings` (2024-08-13): parameters, filters and sort order."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from service.testing.fakecalcom.shapes import parse_time

STATUS_FILTERS = ("upcoming", "recurring", "past", "cancelled", "unconfirmed")
GONE = frozenset({"cancelled", "rejected"})
# Only the first sort parameter present counts, in this order (input.service.ts `transformGetBookingsSort`).
SORTS = (("sortStart", "start"), ("sortEnd", "end"), ("sortCreated", "createdAt"), ("sortUpdatedAt", "updatedAt"))
TIME_FILTERS = (
    ("afterStart", "after_start"),
    ("beforeEnd", "before_end"),
    ("afterCreatedAt", "after_created"),
    ("beforeCreatedAt", "before_created"),
    ("afterUpdatedAt", "after_updated"),
    ("beforeUpdatedAt", "before_updated"),
)


@dataclass(frozen=True)
class BookingQuery:
    """The parsed query string of one `GET /v2/bookings`."""

    take: int = 100
    skip: int = 0
    statuses: tuple[str, ...] = ()
    times: Mapping[str, datetime] = field(default_factory=dict)
    event_type_ids: tuple[int, ...] = ()
    attendee_email: str | None = None
    attendee_name: str | None = None
    booking_uid: str | None = None
    sort: tuple[str, str] | None = None


def parse_query(params: Mapping[str, str]) -> BookingQuery:
    """Read the query string like Cal.com's validation pipe; ValueError with its message when invalid."""
    times: dict[str, datetime] = {}
    for name, key in TIME_FILTERS:
        value = params.get(name)
        if value is not None:
            moment = parse_time(value)
            if moment is None:
                raise ValueError(f"{name} must be a valid ISO 8601 date string")
            times[key] = moment
    statuses = tuple(s.strip() for s in params.get("status", "").split(",") if s.strip())
    unknown = [s for s in statuses if s not in STATUS_FILTERS]
    if unknown:
        raise ValueError(f"status must be one of {', '.join(STATUS_FILTERS)}; got {', '.join(unknown)}")
    sort = None
    for name, key in SORTS:
        direction = params.get(name)
        if direction not in (None, "asc", "desc"):
            raise ValueError(f"{name} must be one of asc, desc")
        if direction is not None and sort is None:
            sort = (key, direction)
    ids = [*_ids(params, "eventTypeIds", many=True), *_ids(params, "eventTypeId", many=False)]
    return BookingQuery(
        take=_int(params, "take", 100, 1, 250),
        skip=_int(params, "skip", 0, 0, None),
        statuses=statuses,
        times=times,
        event_type_ids=tuple(ids),
        attendee_email=params.get("attendeeEmail") or None,
        attendee_name=params.get("attendeeName") or None,
        booking_uid=params.get("bookingUid") or None,
        sort=sort,
    )


def matches(item: dict[str, Any], start: datetime, end: datetime, query: BookingQuery, now: datetime) -> bool:
    """Whether one booking item passes every filter of the query (all filters are ANDed)."""
    created, updated = parse_time(item["createdAt"]), parse_time(item["updatedAt"])
    bounds = {
        "after_start": start,
        "before_end": end,
        "after_created": created,
        "before_created": created,
        "after_updated": updated,
        "before_updated": updated,
    }
    for key, limit in query.times.items():
        value = bounds[key]
        if value is None or (value < limit if key.startswith("after") else value > limit):
            return False
    people = item.get("attendees", [])
    if query.attendee_email and not any(p["email"].lower() == query.attendee_email.strip().lower() for p in people):
        return False
    if query.attendee_name and not any(p["name"].lower() == query.attendee_name.strip().lower() for p in people):
        return False
    if query.booking_uid and item["uid"] != query.booking_uid:
        return False
    if query.event_type_ids and item["eventTypeId"] not in query.event_type_ids:
        return False
    return not query.statuses or any(has_status(item, end, s, now) for s in query.statuses)


def sort_key(query: BookingQuery) -> tuple[str, bool]:
    """The item field to sort by and whether descending, as Cal.com orders the list."""
    if query.sort is not None:
        return query.sort[0], query.sort[1] == "desc"
    # Without a sort parameter, a single past/cancelled filter sorts newest first, anything else by
    # start ascending (packages/trpc/server/routers/viewer/bookings/get.handler.ts `getOrderBy`).
    newest_first = len(query.statuses) == 1 and query.statuses[0] in ("past", "cancelled")
    return "start", newest_first


def has_status(item: dict[str, Any], end: datetime, status: str, now: datetime) -> bool:
    """Cal.com's status filters (get.handler.ts `addStatusesQueryFilters`)."""
    state = item["status"]
    recurring = "recurringBookingUid" in item
    if status == "upcoming":
        return end >= now and (state == "accepted" if recurring else state not in GONE)
    if status == "recurring":
        return end >= now and recurring and state not in GONE
    if status == "past":
        return end <= now and state not in GONE
    if status == "cancelled":
        return state in GONE
    if status == "unconfirmed":
        return end >= now and state == "pending"
    return False


def pagination(total: int, skip: int, take: int) -> dict[str, Any]:
    """`PaginationMetaDto` as Cal.com computes it from skip, take and the total count."""
    safe_skip = min(skip, total)
    total_pages = -(-total // take)
    return {
        "totalItems": total,
        "remainingItems": max(0, total - (safe_skip + take)),
        "returnedItems": max(0, min(take, total - safe_skip)),
        "itemsPerPage": take,
        "currentPage": min(safe_skip // take + 1, max(total_pages, 1)),
        "totalPages": total_pages,
        "hasNextPage": safe_skip + take < total,
        "hasPreviousPage": safe_skip > 0,
    }


def _ids(params: Mapping[str, str], name: str, *, many: bool) -> list[int]:
    raw = params.get(name)
    if raw is None:
        return []
    parts = [part.strip() for part in raw.split(",")] if many else [raw.strip()]
    if not all(part.isdigit() for part in parts):
        raise ValueError(f"{name} must be {'a comma-separated list of numbers' if many else 'a number'}")
    return [int(part) for part in parts]


def _int(params: Mapping[str, str], name: str, default: int, low: int, high: int | None) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    if not raw.strip().isdigit():
        raise ValueError(f"{name} must be an integer number")
    value = int(raw)
    if value < low:
        raise ValueError(f"{name} must not be less than {low}")
    if high is not None and value > high:
        raise ValueError(f"{name} must not be greater than {high}")
    return value
