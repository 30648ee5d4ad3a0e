"""The fake Cal.com's bookings: API v2 (2024-08-13) items per API key, read by the GETs, written by creates."""

from __future__ import annotations

import copy
import itertools
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from service.testing.fakecalcom import queries
from service.testing.fakecalcom.queries import GONE, BookingQuery
from service.testing.fakecalcom.shapes import attendee, field_responses, host, iso, parse_time, seat

BOOKING_STATUSES = ("accepted", "pending", "cancelled", "rejected")
Person = str | dict[str, Any]


@dataclass
class Stored:
    api_key: str
    start: datetime
    end: datetime
    item: dict[str, Any]

    @property
    def seated(self) -> bool:
        return any("seatUid" in a for a in self.item["attendees"])


class BookingBook:
    """Bookings per API key, with the filter and sort semantics of Cal.com's GET /v2/bookings."""

    def __init__(self, *, clock: Callable[[], datetime]) -> None:
        self._clock = clock
        self.clear()

    def clear(self) -> None:
        """Forget every key and booking."""
        self._keys: dict[str, list[Stored]] = {}
        self._by_uid: dict[str, Stored] = {}
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
        event_type_slug: str | None = None,
        hosts: Iterable[str] = ("host@salon.example",),
        attendees: Iterable[Person] = (),
        guests: Iterable[str] = (),
        metadata: dict[str, Any] | None = None,
        responses: dict[str, Any] | None = None,
        seats: Iterable[Person] | None = None,
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
        if any(isinstance(people, str) for people in (hosts, attendees, seats, guests)):
            raise ValueError("hosts, attendees, guests and seats are lists, not one string")
        uid = uid or uuid.uuid4().hex[:22]
        if uid in self._by_uid:
            raise ValueError(f"a booking with uid {uid} exists already")
        booking_id = id if id is not None else next(self._ids)
        now = iso(self._clock())
        people = [attendee(person) for person in attendees]
        item: dict[str, Any] = {
            "id": booking_id,
            "uid": uid,
            "title": title or f"Booking {booking_id}",
            "description": "",
            "hosts": [host(n, email) for n, email in enumerate(hosts, start=1)],
            "status": status,
            "start": iso(begins),
            "end": iso(ends),
            "duration": int((ends - begins).total_seconds() // 60),
            "eventTypeId": event_type_id,
            "eventType": {"id": event_type_id, "slug": event_type_slug or f"event-type-{event_type_id}"},
            "location": "",
            "absentHost": False,
            "createdAt": now,
            "updatedAt": now,
            "metadata": dict(metadata or {}),
        }
        if recurring_booking_uid:
            item["recurringBookingUid"] = recurring_booking_uid
        if seats is None:
            item["attendees"] = people
            item["bookingFieldsResponses"] = {**(responses or {}), **(field_responses(people[0]) if people else {})}
            item["guests"] = list(guests)
        else:
            if people:
                raise ValueError("give a seated booking's people as seats, not attendees")
            item["attendees"] = [seat(spec) for spec in seats]
        self.add_key(api_key)
        stored = Stored(api_key, begins, ends, item)
        self._keys[api_key].append(stored)
        self._by_uid[uid] = stored
        return copy.deepcopy(item)

    def add_seat(
        self, uid: str, email: str, *, metadata: dict[str, Any] | None = None, seat_uid: str | None = None, **person: Any
    ) -> dict[str, Any]:
        """Add an attendee seat to a seated booking; returns the seated attendee."""
        stored = self._get(uid)
        if not stored.seated:
            raise ValueError(f"booking {uid} is not a seated booking")
        new = seat({**person, "email": email, "metadata": metadata or {}, "seatUid": seat_uid})
        stored.item["attendees"].append(new)
        self._touch(stored)
        return copy.deepcopy(new)

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

    def reschedule(
        self, uid: str, *, start: datetime | str, end: datetime | str | None = None, new_uid: str | None = None
    ) -> dict[str, Any]:
        """Cal.com's reschedule: the booking is cancelled and a copy at the new time gets a new uid."""
        old = self._get(uid)
        begins = parse_time(start)
        if begins is None:
            raise ValueError("start must be an ISO 8601 time")
        ends = parse_time(end) if end is not None else begins + (old.end - old.start)
        item = old.item
        new = self.add(
            old.api_key,
            start=begins,
            end=ends,
            uid=new_uid,
            status=item["status"] if item["status"] not in GONE else "accepted",
            event_type_id=item["eventType"]["id"],
            event_type_slug=item["eventType"]["slug"],
            hosts=[h["email"] for h in item["hosts"]],
            attendees=() if old.seated else item["attendees"],
            seats=[{k: v for k, v in a.items() if k != "seatUid"} for a in item["attendees"]] if old.seated else None,
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

    def find(self, uid: str) -> dict[str, Any] | list[dict[str, Any]] | None:
        """A booking's item by uid, or every occurrence of a recurring series by its uid, or None."""
        if uid in self._by_uid:
            return self.get(uid)
        series = [s for stored in self._keys.values() for s in stored if s.item.get("recurringBookingUid") == uid]
        return [copy.deepcopy(s.item) for s in sorted(series, key=lambda s: s.start)] or None

    def query(self, api_key: str, query: BookingQuery, *, now: datetime) -> list[dict[str, Any]]:
        """The key's matching items, sorted as Cal.com sorts them (all of them; the caller pages)."""
        found = [s for s in self._keys.get(api_key, []) if queries.matches(s.item, s.start, s.end, query, now)]
        field, descending = queries.sort_key(query)
        found.sort(key=lambda s: (s.item[field], s.item["id"]), reverse=descending)
        return [copy.deepcopy(stored.item) for stored in found]

    def busy(self, api_key: str, host_email: str, start: datetime, end: datetime) -> bool:
        """Whether the host already holds a booking (accepted or pending) overlapping [start, end)."""
        return any(
            s.start < end and start < s.end and s.item["status"] not in GONE and any(h["email"] == host_email for h in s.item["hosts"])
            for s in self._keys.get(api_key, [])
        )

    def seated_slot(self, api_key: str, event_type_id: int, start: datetime) -> dict[str, Any] | None:
        """The seated booking of an event type starting at `start`, which a new seat joins."""
        for stored in self._keys.get(api_key, []):
            item = stored.item
            if stored.seated and stored.start == start and item["eventTypeId"] == event_type_id and item["status"] not in GONE:
                return copy.deepcopy(stored.item)
        return None

    def old_shape(self, api_key: str) -> list[dict[str, Any]]:
        """The key's bookings as the 2024-04-15 version lists them (startTime, upper-case status)."""
        return [old_item(s.item) for s in self._keys.get(api_key, [])]

    def _get(self, uid: str) -> Stored:
        try:
            return self._by_uid[uid]
        except KeyError:
            raise KeyError(f"no booking with uid {uid}") from None

    def _touch(self, stored: Stored) -> None:
        stored.item["updatedAt"] = iso(self._clock())


def old_item(item: dict[str, Any]) -> dict[str, Any]:
    """One booking in the 2024-04-15 shape."""
    return {
        "id": item["id"],
        "uid": item["uid"],
        "title": item["title"],
        "startTime": item["start"],
        "endTime": item["end"],
        "status": item["status"].upper(),
        "metadata": item["metadata"],
    }
