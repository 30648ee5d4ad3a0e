"""Our error types. Each API error carries its HTTP status; `web.py` maps them in one place."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """An error with an HTTP status and a message that is safe to show to the caller."""

    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, *, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        return {"error": error}


class BadRequest(ServiceError):
    status_code = 400
    code = "bad_request"


class Unauthorized(ServiceError):
    status_code = 401
    code = "unauthorized"


class Forbidden(ServiceError):
    status_code = 403
    code = "forbidden"


class NotFound(ServiceError):
    status_code = 404
    code = "not_found"


class Conflict(ServiceError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(ServiceError):
    status_code = 413
    code = "payload_too_large"


class ValidationFailed(ServiceError):
    status_code = 422
    code = "validation_error"


class NotConfigured(ServiceError):
    status_code = 503
    code = "not_configured"


class DatabaseUnavailable(ServiceError):
    """The database cannot be reached right now; nothing was stored."""

    status_code = 503
    code = "database_unavailable"

    def __init__(self, reason: str = "") -> None:
        super().__init__("the database is unavailable; nothing was stored, please retry")
        self.reason = reason


class UniqueViolation(Exception):
    """A unique constraint refused a row (translated from sqlite3/asyncpg at the store)."""


class CalcomError(Exception):
    """Cal.com did not give us a usable answer."""


class CalcomUnavailable(CalcomError):
    """The outcome is unknown: timeout, connection error, 5xx, 429 or an unreadable body."""

    def __init__(self, message: str, *, rate_limited: bool = False, retry_at: float | None = None) -> None:
        super().__init__(message)
        self.rate_limited = rate_limited
        self.retry_at = retry_at


class CalcomCredentialsBroken(CalcomError):
    """Cal.com refused the API key (401/403)."""


class CalcomRequestRejected(CalcomError):
    """Cal.com refused the request itself (another 4xx): our query is wrong, retrying will not help."""
