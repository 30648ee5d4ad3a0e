"""Which tagged bookings are duplicates: pure.

A booking tagged with the same `verifier_ref` as a booking already claimed — or with the same
`metadata.appointment_id` and `metadata.phase` — is a retry Cal.com accepted twice: it blocks a
staff member's time for nothing. It never changes a verdict; an operator cancels it in Cal.com.
Without a phase tag the appointment alone does not say which phase a booking is for, so only
tagged phases count.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any


def find(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """From tagged bookings (with `verification_seq` of the claim holding each, or None): the duplicates."""
    by_ref: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    by_phase: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    seen: set[tuple[str, str]] = set()
    for row in rows:
        unit = (row["uid"], row["seat"])
        if unit in seen:
            continue
        seen.add(unit)
        if row["verifier_ref"]:
            by_ref[row["verifier_ref"]].append(row)
        if row["appointment_tag"] and row["phase_tag"]:
            by_phase[(row["appointment_tag"], row["phase_tag"])].append(row)
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for group in [*by_ref.values(), *by_phase.values()]:
        held = sorted((r for r in group if r["verification_seq"] is not None), key=lambda r: (r["start_at"], r["uid"]))
        if not held:
            continue
        original = held[0]
        for row in group:
            if row["verification_seq"] is None and row["uid"] != original["uid"]:
                found.setdefault(
                    (row["uid"], row["seat"]),
                    {
                        "uid": row["uid"],
                        "seat": row["seat"],
                        "start_at": row["start_at"],
                        "verification_seq": original["verification_seq"],
                        "of_uid": original["uid"],
                    },
                )
    return list(found.values())
