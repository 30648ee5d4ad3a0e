"""Structured logs: one event per line, with an `event` name and ids, never a secret.

JSON objects for machines (the default when stderr is not a terminal), readable `key=value`
lines for a person at a terminal (LOG_FORMAT: auto, json, text). Instants are written one way
everywhere: UTC with milliseconds and a `Z`. Code never passes secrets to a log call; as a second
line of defence every formatted line is scrubbed of the secrets this process knows (API token,
accounts' keys and secrets).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import datetime, timezone
from typing import Any

from service.core.times import iso_ms

# uvicorn adds `color_message` (the message again, with terminal colour codes) to its records.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName", "color_message"}
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
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


def _plain(value: Any) -> Any:
    """A value as it goes into a log line: instants in the one format, text without colour codes."""
    if isinstance(value, datetime):
        return iso_ms(value) if value.tzinfo is not None else value.isoformat()
    if isinstance(value, str):
        return _ANSI.sub("", value)
    if isinstance(value, (int, float, bool, type(None))):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    return _ANSI.sub("", str(value))


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {
        key: _plain(value) for key, value in vars(record).items() if key not in _STANDARD and key != "event" and not key.startswith("_")
    }


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, event, msg, then the record's own fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": iso_ms(datetime.fromtimestamp(record.created, timezone.utc)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, "event", None) or "log",
            "msg": _ANSI.sub("", record.getMessage()),
        }
        entry.update(_fields(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return secret_registry.scrub(json.dumps(entry, ensure_ascii=False, default=str))


class TextFormatter(logging.Formatter):
    """For a person at a terminal: `<ts> <LEVEL> <event>: <msg> key=value …` (same fields as JSON)."""

    def format(self, record: logging.LogRecord) -> str:
        event = getattr(record, "event", None)
        head = f"{iso_ms(datetime.fromtimestamp(record.created, timezone.utc))} {record.levelname:<7} "
        head += f"{event}: " if event else f"{record.name}: "
        fields = " ".join(f"{key}={_text(value)}" for key, value in _fields(record).items())
        line = head + _ANSI.sub("", record.getMessage()) + (f"  {fields}" if fields else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return secret_registry.scrub(line)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value if value and not any(c.isspace() or c in '"=' for c in value) else json.dumps(value, ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False, default=str)


def formatter(log_format: str = "auto", stream: Any = None) -> logging.Formatter:
    """`text` at a terminal (or when asked), JSON otherwise."""
    stream = stream if stream is not None else sys.stderr
    if log_format == "auto":
        log_format = "text" if getattr(stream, "isatty", lambda: False)() else "json"
    return TextFormatter() if log_format == "text" else JsonFormatter()


def configure(level: str = "INFO", log_format: str = "auto") -> None:
    """Send every log record to stderr, one line each (see `formatter`)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format, sys.stderr))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    quiet_libraries()


def quiet_libraries() -> None:
    """Libraries that log SQL parameters or URLs at DEBUG/INFO (secrets among them) stay at WARNING."""
    for name in ("aiosqlite", "databases", "asyncpg", "httpx", "httpcore", "uvicorn.access", "hpack"):
        logging.getLogger(name).setLevel(logging.WARNING)
