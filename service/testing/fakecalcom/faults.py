"""How a Cal.com create can go wrong, each way one that Cal.com's own code allows.

Order inside a real create (RegularBookingService.ts, API v2 bookings.service.ts): availability
check, booking row written, calendar and video calls, payment, e-mails and **webhooks (awaited
inside the request)**, then API v2 reads the booking back through a separate read connection and
answers. Everything after the row can still fail, which is what makes a false negative:

* `error_after_write_500`: the row is written and the webhooks sent, then 500. Cal.com re-reads the
  new booking (`getByUidWithAttendeesAndUserAndEvent`, on the read replica) and throws a plain
  `Error("Booking with uid=… was not found in the database")` when the replica lags; its catch-all
  exception filter answers `{"status": "error", …, "error": {"code": "INTERNAL_SERVER_ERROR",
  "message": "Internal server error."}}`, so the client never sees the uid.
* `error_after_write_400`: the row is written and the webhooks sent, then 400 "Missing payment
  credentials" (`HttpError` thrown by the payment step after `createBooking`).
* `slow_answer`: the row is written and the webhooks sent, then the answer waits (calendar calls
  or a slow webhook subscriber: Cal.com awaits deliveries without a timeout) until a test releases
  it or `delay` seconds pass, longer than a client's timeout.
* `conflict`: another customer took the slot just before: Cal.com's availability check throws
  `no_available_users_found_error`, answered 400 "User either already has booking at this time or
  is not available" (team event types: "One of the hosts …"); no row, no webhook.
* `webhook_failing`: the row is written, the delivery to every subscriber fails (Cal.com catches
  and only logs it; one attempt, no retry); the create still answers 201.
* `webhook_skipped`: the row is written, no webhook is sent at all (deliveries queued on the tasker
  that never ran, or a subscriber Cal.com did not select); the create still answers 201.
* `rate_limited_429`: Cal.com's throttler guard refuses the request before the controller runs
  (429 ThrottlerException, no Retry-After); no row.
* `unavailable_5xx`: a load balancer or a crashed API pod answers (503 by default); no row.
"""

from __future__ import annotations

from dataclasses import dataclass

ERROR_AFTER_WRITE_500 = "error_after_write_500"
ERROR_AFTER_WRITE_400 = "error_after_write_400"
SLOW_ANSWER = "slow_answer"
CONFLICT = "conflict"
WEBHOOK_FAILING = "webhook_failing"
WEBHOOK_SKIPPED = "webhook_skipped"
RATE_LIMITED_429 = "rate_limited_429"
UNAVAILABLE_5XX = "unavailable_5xx"
CREATE_FAULTS = (
    ERROR_AFTER_WRITE_500,
    ERROR_AFTER_WRITE_400,
    SLOW_ANSWER,
    CONFLICT,
    WEBHOOK_FAILING,
    WEBHOOK_SKIPPED,
    RATE_LIMITED_429,
    UNAVAILABLE_5XX,
)
BEFORE_ANYTHING = frozenset({RATE_LIMITED_429, UNAVAILABLE_5XX})
AFTER_WRITE = frozenset({ERROR_AFTER_WRITE_500, ERROR_AFTER_WRITE_400, SLOW_ANSWER})
UNAVAILABLE_STATUSES = (500, 502, 503, 504)
SLOW_ANSWER_DELAY = 60.0  # longer than any sensible client timeout for a create


@dataclass(frozen=True)
class CreateFault:
    """One planned failure of the next create."""

    mode: str
    delay: float = SLOW_ANSWER_DELAY
    status: int = 503

    def __post_init__(self) -> None:
        if self.mode not in CREATE_FAULTS:
            raise ValueError(f"mode must be one of {', '.join(CREATE_FAULTS)}")
        if self.delay < 0:
            raise ValueError("delay must not be negative")
        if self.status not in UNAVAILABLE_STATUSES:
            raise ValueError(f"status must be one of {UNAVAILABLE_STATUSES}")
