"""The fake Cal.com's bookings: API v2 (2024-08-13) items per API key, and the status filters."""

from __future__ import annotations

import copy
import itertools
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

BOOKING_STATUSES = ("accepted", "pending", "cancelled", "rejected")
GONE = frozenset({"cancelled", "rejected"})


def iso(moment: datetime) -> str:
    """UTC ISO 8601 with milliseconds and `Z`, as Cal.com's `toISOString()`."""
    utc = moment.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_time(value: Any) -> datetime | None:
    """An aware UTC datetime from an ISO 8601 string (a bare time counts as UTC), else None."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value.strip():
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    else:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


@dataclass
class _Stored:
    api_key: str
    start: datetime
    end: datetime
    item: dict[str, Any]


class BookingBook:
    """Bookings per API key, with the filter and sort semantics of Cal.com's GET /v2/bookings."""

    def __init__(self, *, clock: Callable[[], datetime]) -> None:
        self._clock = clock
        self.clear()

    def clear(self) -> None:
        """Forget every key and booking."""
        self._keys: dict[str, list[_Stored]] = {}
        self._by_uid: dict[str, _Stored] = {}
        self._ids = itertools.count(1)

    def add_key(self, api_key: str) -> None:
        """Know an API key (requests with unknown keys get 401)."""
        if not api_key:
            raise ValueError("api_key must not be empty")
        self._keys.setdefault(api_key, [])

    def has_key(self, api_key: str) -> bool:
        """Whether the key is known."""
        return api_key in self._keys

    def add(
        self,
        api_key: str,
        *,
        start: datetime | str,
        end: datetime | str | None = None,
        uid: str | None = None,
        id: int | None = None,
        status: str = "accepted",
        event_type_id: int = 1001,
        hosts: Iterable[str] = ("host@salon.example",),
        attendees: Iterable[str] = (),
        metadata: dict[str, Any] | None = None,
        seats: Iterable[str | dict[str, Any]] | None = None,
        recurring_booking_uid: str | None = None,
        title: str | None = None,
    ) -> dict[str, Any]:
        """Store a booking and return (a copy of) its item; `seats` makes it a seated booking."""
        begins, ends = parse_time(start), parse_time(end) if end is not None else None
        if begins is None:
            raise ValueError("start must be an ISO 8601 time")
        ends = ends or begins + timedelta(minutes=30)
        if ends < begins:
            raise ValueError("end must not be before start")
        if status not in BOOKING_STATUSES:
            raise ValueError(f"status must be one of {', '.join(BOOKING_STATUSES)}")
        if any(isinstance(people, str) for people in (hosts, attendees, seats)):
            raise ValueError("hosts, attendees and seats are lists, not one string")
        uid = uid or uuid.uuid4().hex[:22]
        if uid in self._by_uid:
            raise ValueError(f"a booking with uid {uid} exists already")
        booking_id = id if id is not None else next(self._ids)
        now = iso(self._clock())
        people = list(attendees)
        item: dict[str, Any] = {
            "id": booking_id,
            "uid": uid,
            "title": title or f"Booking {booking_id}",
            "description": "",
            "hosts": [_host(n, email) for n, email in enumerate(hosts, start=1)],
            "status": status,
            "start": iso(begins),
            "end": iso(ends),
            "duration": int((ends - begins).total_seconds() // 60),
            "eventTypeId": event_type_id,
            "eventType": {"id": event_type_id, "slug": f"event-type-{event_type_id}"},
            "location": "",
            "absentHost": False,
            "createdAt": now,
            "updatedAt": now,
            "metadata": dict(metadata or {}),
        }
        if recurring_booking_uid:
            item["recurringBookingUid"] = recurring_booking_uid
        if seats is None:
            item["attendees"] = [_attendee(email) for email in people]
            item["bookingFieldsResponses"] = {"name": _name(people[0]), "email": people[0]} if people else {}
            item["guests"] = []
        else:
            if people:
                raise ValueError("give a seated booking's people as seats, not attendees")
            item["attendees"] = [_seat(seat) for seat in seats]
        self.add_key(api_key)
        stored = _Stored(api_key, begins, ends, item)
        self._keys[api_key].append(stored)
        self._by_uid[uid] = stored
        return copy.deepcopy(item)

    def add_seat(self, uid: str, email: str, *, metadata: dict[str, Any] | None = None,
                 seat_uid: str | None = None) -> dict[str, Any]:
        """Add an attendee seat to a seated booking; returns the seated attendee."""
        stored = self._get(uid)
        if any("seatUid" not in a for a in stored.item["attendees"]):
            raise ValueError(f"booking {uid} is not a seated booking")
        seat = _seat({"email": email, "metadata": metadata or {}, "seatUid": seat_uid})
        stored.item["attendees"].append(seat)
        self._touch(stored)
        return copy.deepcopy(seat)

    def cancel(self, uid: str, *, status: str = "cancelled", reason: str | None = None) -> dict[str, Any]:
        """Mark a booking cancelled or rejected; returns its item."""
        if status not in GONE:
            raise ValueError("status must be cancelled or rejected")
        stored = self._get(uid)
        stored.item["status"] = status
        if reason:
            stored.item["cancellationReason"] = reason
        self._touch(stored)
        return copy.deepcopy(stored.item)

    def reschedule(self, uid: str, *, start: datetime | str, end: datetime | str | None = None,
                   new_uid: str | None = None) -> dict[str, Any]:
        """Cal.com's reschedule: the booking is cancelled and a copy at the new time gets a new uid."""
        old = self._get(uid)
        begins = parse_time(start)
        if begins is None:
            raise ValueError("start must be an ISO 8601 time")
        ends = parse_time(end) if end is not None else begins + (old.end - old.start)
        item = old.item
        seated = any("seatUid" in a for a in item["attendees"])
        new = self.add(
            old.api_key,
            start=begins,
            end=ends,
            uid=new_uid,
            status=item["status"] if item["status"] not in GONE else "accepted",
            event_type_id=item["eventType"]["id"],
            hosts=[h["email"] for h in item["hosts"]],
            attendees=() if seated else [a["email"] for a in item["attendees"]],
            seats=[{"email": a["email"], "metadata": a.get("metadata")} for a in item["attendees"]] if seated else None,
            metadata=item.get("metadata"),
            title=item["title"],
        )
        self._by_uid[new["uid"]].item["rescheduledFromUid"] = uid
        item["status"] = "cancelled"
        item["rescheduledToUid"] = new["uid"]
        self._touch(old)
        return self.get(new["uid"])

    def get(self, uid: str) -> dict[str, Any]:
        """A copy of one booking's item."""
        return copy.deepcopy(self._get(uid).item)

    def query(
        self,
        api_key: str,
        *,
        now: datetime,
        after_start: datetime | None = None,
        before_end: datetime | None = None,
        statuses: tuple[str, ...] = (),
        sort_start: str | None = None,
        **_: Any,
    ) -> list[dict[str, Any]]:
        """The key's matching items, sorted as Cal.com sorts them (all of them; the caller pages)."""
        found = [
            stored
            for stored in self._keys.get(api_key, [])
            if (after_start is None or stored.start >= after_start)
            and (before_end is None or stored.end <= before_end)
            and (not statuses or any(_has_status(stored, s, now) for s in statuses))
        ]
        # Without sortStart, a single past/cancelled filter sorts newest first, anything else by start
        # ascending (packages/trpc/server/routers/viewer/bookings/get.handler.ts `getOrderBy`).
        newest_first = len(statuses) == 1 and statuses[0] in ("past", "cancelled")
        descending = sort_start == "desc" or (sort_start is None and newest_first)
        found.sort(key=lambda s: (s.start, s.item["id"]), reverse=descending)
        return [copy.deepcopy(stored.item) for stored in found]

    def old_shape(self, api_key: str) -> list[dict[str, Any]]:
        """The key's bookings as the 2024-04-15 version lists them (startTime, upper-case status)."""
        return [
            {"id": s.item["id"], "uid": s.item["uid"], "title": s.item["title"], "startTime": s.item["start"],
             "endTime": s.item["end"], "status": s.item["status"].upper(), "metadata": s.item["metadata"]}
            for s in self._keys.get(api_key, [])
        ]

    def _get(self, uid: str) -> _Stored:
        try:
            return self._by_uid[uid]
        except KeyError:
            raise KeyError(f"no booking with uid {uid}") from None

    def _touch(self, stored: _Stored) -> None:
        stored.item["updatedAt"] = iso(self._clock())


def _has_status(stored: _Stored, status: str, now: datetime) -> bool:
    """Cal.com's status filters (get.handler.ts `addStatusesQueryFilters`)."""
    state = stored.item["status"]
    recurring = "recurringBookingUid" in stored.item
    if status == "upcoming":
        return stored.end >= now and (state == "accepted" if recurring else state not in GONE)
    if status == "recurring":
        return stored.end >= now and recurring and state not in GONE
    if status == "past":
        return stored.end <= now and state not in GONE
    if status == "cancelled":
        return state in GONE
    if status == "unconfirmed":
        return stored.end >= now and state == "pending"
    return False


def _name(email: str) -> str:
    return email.split("@")[0].replace(".", " ").title()


def _host(n: int, email: str) -> dict[str, Any]:
    return {"id": n, "name": _name(email), "email": email, "username": email.split("@")[0], "timeZone": "Europe/Berlin"}


def _attendee(email: str) -> dict[str, Any]:
    return {"name": _name(email), "email": email, "timeZone": "Europe/Berlin", "language": "de", "absent": False}


def _seat(seat: str | dict[str, Any]) -> dict[str, Any]:
    spec = {"email": seat} if isinstance(seat, str) else seat
    email = spec.get("email") if isinstance(spec, dict) else None
    if not isinstance(email, str) or not email:
        raise ValueError("each seat needs an email")
    return {
        **_attendee(email),
        "seatUid": spec.get("seatUid") or spec.get("seat_uid") or str(uuid.uuid4()),
        "bookingFieldsResponses": {"name": _name(email), "email": email},
        "metadata": dict(spec.get("metadata") or {}),
    }
