"""The fake Cal.com's event types: what a create books (length, hosts, seats, recurrence)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

DEFAULT_LENGTH = 30
DEFAULT_HOST = "host@salon.example"


@dataclass(frozen=True)
class EventType:
    """One event type. Several hosts make it round-robin: the first free host takes a booking."""

    id: int
    length: int = DEFAULT_LENGTH
    hosts: tuple[str, ...] = (DEFAULT_HOST,)
    seats: int | None = None  # seats per time slot; None: not seated
    recurring: int | None = None  # weekly occurrences a recurring create makes at most; None: not recurring
    durations: tuple[int, ...] = ()  # lengths an attendee may pick with `lengthInMinutes`; empty: none
    requires_confirmation: bool = False
    title: str = ""
    slug: str = field(default="")

    def __post_init__(self) -> None:
        if isinstance(self.hosts, str) or not self.hosts or not all(isinstance(h, str) and h for h in self.hosts):
            raise ValueError("hosts must be a non-empty list of e-mail addresses")
        for name in ("length", "seats", "recurring"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"{name} must be a positive whole number")
        if self.seats and self.recurring:
            raise ValueError("a recurring seated event type is not modelled by the fake")
        if any(not isinstance(d, int) or isinstance(d, bool) or d < 1 for d in self.durations):
            raise ValueError("durations must be positive whole numbers")
        object.__setattr__(self, "title", self.title or f"{self.length} min")
        object.__setattr__(self, "slug", self.slug or f"event-type-{self.id}")

    @property
    def team(self) -> bool:
        """Whether Cal.com would call it a team event type (its availability error names "one of the hosts")."""
        return len(self.hosts) > 1


class EventTypes:
    """Event types by id; an id never configured books like a plain 30-minute one-host event type."""

    def __init__(self) -> None:
        self._types: dict[int, EventType] = {}

    def clear(self) -> None:
        """Forget every configured event type."""
        self._types.clear()

    def set(self, event_type_id: int, **settings: Any) -> EventType:
        """Configure (or replace) one event type."""
        if not isinstance(event_type_id, int) or isinstance(event_type_id, bool):
            raise ValueError("event_type_id must be a whole number")
        hosts: Iterable[str] | None = settings.pop("hosts", None)
        if hosts is not None:
            if isinstance(hosts, str):
                raise ValueError("hosts is a list, not one string")
            settings["hosts"] = tuple(hosts)
        if "durations" in settings:
            settings["durations"] = tuple(settings["durations"] or ())
        event_type = EventType(event_type_id, **settings)
        self._types[event_type_id] = event_type
        return event_type

    def get(self, event_type_id: int) -> EventType:
        """The event type with this id (a default one when never configured)."""
        return self._types.get(event_type_id) or EventType(event_type_id)
