"""Structured logs: one JSON object per line, with an `event` name and ids, never a secret.

Code never passes secrets to a log call; as a second line of defence every formatted line is
scrubbed of the secrets this process knows (API token, accounts' keys and secrets).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any

from service.core.times import iso_ms

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
REDACTED = "[redacted]"


class SecretRegistry:
    """Secret values that must never appear in a log line."""

    def __init__(self) -> None:
        self._values: set[str] = set()

    def add(self, *values: str | None) -> None:
        for value in values:
            if value and len(value) >= 6:
                self._values.add(value)

    def scrub(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, REDACTED)
        return text

    def clear(self) -> None:
        self._values.clear()


secret_registry = SecretRegistry()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": iso_ms(datetime.fromtimestamp(record.created, timezone.utc)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, "event", None) or "log",
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key != "event" and not key.startswith("_"):
                entry[key] = value if isinstance(value, (str, int, float, bool, type(None), list, dict)) else str(value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return secret_registry.scrub(json.dumps(entry, ensure_ascii=False, default=str))


def configure(level: str = "INFO") -> None:
    """Send every log record to stderr as one JSON line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    quiet_libraries()


def quiet_libraries() -> None:
    """Libraries that log SQL parameters or URLs at DEBUG/INFO (secrets among them) stay at WARNING."""
    for name in ("aiosqlite", "databases", "asyncpg", "httpx", "httpcore", "uvicorn.access", "hpack"):
        logging.getLogger(name).setLevel(logging.WARNING)
