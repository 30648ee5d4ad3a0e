"""The booking guard's decisions that need no I/O: paths, tags, keys, and what counts as "found".

A create is tagged with `metadata.verifier_ref` before it reaches Cal.com; afterwards that tag,
never the time, says which booking the create made.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote

from service.core import times
from service.core.api_bookings import observations_from_api

METADATA_KEYS_MAX = 50  # Cal.com's limit on metadata keys
REF_KEY = "verifier_ref"
IDEMPOTENCY_KEY = re.compile(r"^[\x20-\x7e]{1,255}$")
CREATED_SLACK = timedelta(minutes=2)  # clock skew between us and Cal.com when asking afterCreatedAt
START_SLACK = timedelta(minutes=1)
SEARCH_SPAN = timedelta(days=1)  # a create's booking ends within a day of its start
STATUSES = "upcoming,unconfirmed,past"


def safe_rest(raw: str) -> bool:
    """Whether the path after `/calcom/{account}/` stays under the account's Cal.com base.

    Refused: `.`/`..` segments (also percent-encoded), encoded slashes or backslashes, a leading
    `/` (`//host`), a scheme (`http://…`), user info (`@`), fragments and control characters.
    """
    if raw.startswith("/") or "\\" in raw or "@" in raw or "#" in raw or "://" in raw:
        return False
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in raw):
        return False
    lowered = raw.lower()
    if any(code in lowered for code in ("%2f", "%5c", "%2e", "%40", "%00", "%25")):
        return False
    decoded = unquote(raw)
    return not any(segment in (".", "..") for segment in decoded.split("/"))


def idempotency_key_valid(key: str) -> bool:
    return bool(IDEMPOTENCY_KEY.match(key))


def fingerprint(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def parse_create(body: bytes) -> dict[str, Any] | None:
    """The create's JSON object, or None when the body is not one."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def tag(create: dict[str, Any], ref: str) -> tuple[bytes | None, str | None]:
    """The body to forward with `metadata.verifier_ref` added, or (None, why it stays untagged)."""
    metadata = create.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        return None, "metadata-not-object"
    if REF_KEY not in metadata and len(metadata) >= METADATA_KEYS_MAX:
        return None, "metadata-full"
    tagged = {**create, "metadata": {**metadata, REF_KEY: ref}}
    return json.dumps(tagged, separators=(",", ":"), ensure_ascii=False).encode(), None


def requested_start(create: dict[str, Any]) -> datetime | None:
    return times.parse(create.get("start"), naive_is_utc=True)


def attendee_email(create: dict[str, Any]) -> str | None:
    attendee = create.get("attendee")
    email = attendee.get("email") if isinstance(attendee, dict) else None
    return email.strip() if isinstance(email, str) and email.strip() else None


def event_type_id(create: dict[str, Any]) -> int | None:
    value = create.get("eventTypeId")
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def recurrence(create: dict[str, Any]) -> int | None:
    value = create.get("recurrenceCount")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def search_params(create: dict[str, Any], first_attempt: datetime) -> dict[str, str]:
    """One targeted `GET /v2/bookings` for the bookings this create may have made."""
    params = {"afterCreatedAt": times.iso_ms(first_attempt - CREATED_SLACK), "status": STATUSES, "take": "250", "skip": "0"}
    start = requested_start(create)
    if start is not None:
        weeks = recurrence(create) or 1
        params["afterStart"] = times.iso_ms(start - START_SLACK)
        params["beforeEnd"] = times.iso_ms(start + timedelta(weeks=weeks - 1) + SEARCH_SPAN)
    event_type = event_type_id(create)
    if event_type is not None:
        params["eventTypeId"] = str(event_type)
    email = attendee_email(create)
    if email:
        params["attendeeEmail"] = email
    return params


def found_in(items: list[Any], ref: str, create: dict[str, Any]) -> Any | None:
    """Cal.com's success `data` for this create from booking items, or None when not all of it is there.

    A recurring create is found only when every occurrence is (then a list, as Cal.com answers);
    a seated create is the caller's seat (`seatUid` added, as Cal.com answers).
    """
    hits: list[dict[str, Any]] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        mine = [o for o in observations_from_api(item, datetime.min) if o.verifier_ref == ref and o.state == "exists"]
        if not mine:
            continue
        seat = mine[0].seat
        hits.append({**item, "seatUid": seat} if seat else item)
    if not hits:
        return None
    count = recurrence(create)
    if count is not None:
        unique = {h["uid"]: h for h in hits}
        if len(unique) < count:
            return None
        return sorted(unique.values(), key=lambda h: (str(h.get("start")), h["uid"]))[:count]
    return hits[0]


def from_observations(rows: list[dict[str, Any]], create: dict[str, Any]) -> Any | None:
    """Cal.com's success `data` rebuilt from stored observations, when Cal.com cannot be read back."""
    items = []
    for row in rows:
        if row["state"] != "exists":
            continue
        item: dict[str, Any] = {
            "id": row["booking_id"],
            "uid": row["uid"],
            "start": times.iso_ms(row["start_at"]),
            "end": times.iso_ms(row["end_at"]) if row["end_at"] else None,
            "status": row["calcom_status"] or "accepted",
            "eventTypeId": row["event_type_id"],
            "hosts": [{"email": e} for e in row["hosts"]],
            "attendees": [{"email": e} for e in row["attendees"]],
            "metadata": create.get("metadata") if isinstance(create.get("metadata"), dict) else {},
        }
        if row["seat"]:
            item["seatUid"] = row["seat"]
        items.append(item)
    if not items:
        return None
    count = recurrence(create)
    if count is not None:
        unique = {i["uid"]: i for i in items}
        return sorted(unique.values(), key=lambda i: (i["start"], i["uid"]))[:count] if len(unique) >= count else None
    return items[0]


def first_uid(data: Any) -> str | None:
    first = data[0] if isinstance(data, list) and data else data
    uid = first.get("uid") if isinstance(first, dict) else None
    return uid if isinstance(uid, str) else None


def verification_request(account: str, ref: str, create: dict[str, Any], why: str) -> dict[str, Any] | None:
    """The verification a guarded create records (one phase), or None without a usable start."""
    start = requested_start(create)
    if start is None:
        return None
    given = create.get("metadata")
    metadata: dict[str, Any] = given if isinstance(given, dict) else {}
    appointment = metadata.get("appointment_id")
    appointment_id = str(appointment).strip() if isinstance(appointment, (str, int)) and str(appointment).strip() else f"guard:{ref}"
    phase_key = metadata.get("phase")
    phase: dict[str, Any] = {
        "key": str(phase_key)[:64] if isinstance(phase_key, (str, int)) and str(phase_key) else "A",
        "start": start.isoformat(),
    }
    length = create.get("lengthInMinutes")
    if isinstance(length, int) and not isinstance(length, bool) and 0 < length <= 24 * 60:
        phase["end"] = (start + timedelta(minutes=length)).isoformat()
    if event_type_id(create) is not None:
        phase["event_type_id"] = event_type_id(create)
    email = attendee_email(create)
    if email:
        phase["attendee_email"] = email
    return {"account": account, "appointment_id": appointment_id[:128], "sync_error": f"guard: {why}"[:500], "phases": [phase]}
