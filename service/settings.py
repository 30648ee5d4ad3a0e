"""One settings object, read from the environment (and `.env`), validated at start-up."""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.core.models import validate_http_url

DEFAULT_SQLITE_PATH = os.path.join("var", "verifier.sqlite3")
SECRET_FIELDS = {"api_token"}
# Fields whose value may hold a password: echoed only without it.
URL_FIELDS = {"database_url"}


class ConfigError(Exception):
    """A configuration value is unusable; the message is one line naming the variable."""


def normalize_database_url(url: str) -> str:
    """Map the accepted spellings onto the two drivers we run: aiosqlite and asyncpg."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("must look like sqlite:///path or postgresql://user@host/db")
    scheme = scheme.lower()
    if scheme in ("sqlite", "sqlite+aiosqlite"):
        if not rest.startswith("/"):
            raise ValueError("a SQLite URL needs three slashes: sqlite:///relative/path or sqlite:////abs/path")
        return "sqlite+aiosqlite://" + rest
    if scheme in ("postgresql", "postgres", "postgresql+asyncpg"):
        try:
            _ = urlsplit("postgresql://" + rest).port
        except ValueError:
            port = rest.split("/", 1)[0].rpartition("@")[2].rpartition(":")[2]
            raise ValueError(f"the port {port!r} is not a number from 1 to 65535") from None
        return "postgresql+asyncpg://" + rest
    raise ValueError(f"unsupported scheme {scheme!r}; use sqlite:/// or postgresql://")


def describe_database(url: str) -> str:
    """The database a URL names, for messages: never its password."""
    scheme, _, rest = url.partition("://")
    if scheme.startswith("sqlite"):
        return f"the SQLite file {os.path.abspath(rest[1:] if rest.startswith('/') else rest)}"
    parts = urlsplit("postgresql://" + rest)
    try:
        port = str(parts.port or 5432)
    except ValueError:
        port = parts.netloc.rpartition(":")[2]
    name = parts.path.lstrip("/") or parts.username or "postgres"
    user = f" as {parts.username}" if parts.username else ""
    return f"the PostgreSQL database {name!r} on {parts.hostname or 'localhost'}:{port}{user}"


def without_password(url: str) -> str:
    """The URL with its password (if any) replaced by ***."""
    scheme, sep, rest = url.partition("://")
    credentials, at, location = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{location}"


def parse_schedule(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return ()
        return tuple(part.strip() for part in value.split(","))
    return value


class Settings(BaseSettings):
    """Everything the processes read from the environment (the README's "Configuration" table)."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    database_url: str = Field(default="sqlite:///" + DEFAULT_SQLITE_PATH)
    api_token: SecretStr | None = None
    port: int = Field(default=8000, ge=1, le=65535)
    host: str = "0.0.0.0"
    calcom_api_base: str = "https://api.cal.com"
    settle_seconds: float = Field(default=2.0, ge=0, le=86400)
    check_schedule: Annotated[tuple[float, ...], NoDecode] = (10.0, 30.0, 120.0, 600.0)
    # The range an account may have (the API refuses more), so a new account never inherits more.
    match_tolerance_seconds: int = Field(default=300, ge=0, le=3600)
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    post_sync_verification: bool = True

    # Operational knobs (README "Configuration"); the defaults suit one salon chain or a thousand.
    poll_interval_seconds: float = Field(default=1.0, gt=0, le=3600)
    lease_seconds: float = Field(default=60.0, ge=1, le=3600)
    poll_batch_size: int = Field(default=500, ge=1, le=10_000)
    calcom_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    callback_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    callback_retry_hours: float = Field(default=25.0, ge=24, le=24 * 30)
    webhook_retention_days: float = Field(default=30.0, ge=1, le=3650)
    log_level: str = "INFO"
    log_format: Literal["auto", "json", "text"] = "auto"
    # Cal.com checks of an account failing for longer than this make /status report a problem.
    calcom_alert_seconds: float = Field(default=300.0, gt=0, le=7 * 86400)
    # /status and /metrics name accounts only when asked to (they may be customers' names).
    status_show_accounts: bool = False
    # Testing only: the web process stores and answers webhooks but never matches them itself.
    hold_webhook_matching: bool = False

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        return normalize_database_url(value.strip())

    @field_validator("api_token")
    @classmethod
    def _api_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip()) < 16:
            raise ValueError("must be at least 16 characters (or unset it and let `make run` generate one)")
        return value

    @field_validator("calcom_api_base")
    @classmethod
    def _api_base(cls, value: str) -> str:
        return validate_http_url(value)

    @field_validator("check_schedule", mode="before")
    @classmethod
    def _schedule(cls, value: Any) -> Any:
        return parse_schedule(value)

    @field_validator("check_schedule")
    @classmethod
    def _schedule_positive(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(delay <= 0 for delay in value):
            raise ValueError("every delay must be a positive number of seconds, e.g. 10,30,120,600")
        if len(value) > 50:
            raise ValueError("at most 50 checks")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        value = value.upper()
        if value not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return value

    @field_validator("log_format", mode="before")
    @classmethod
    def _log_format(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def api_token_value(self) -> str | None:
        return self.api_token.get_secret_value() if self.api_token else None


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment; raise ConfigError with one line naming the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_error(exc)) from None


def describe_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    field = str(error["loc"][0]) if error["loc"] else "?"
    message = error["msg"].removeprefix("Value error, ")
    line = f"configuration error: {field.upper()}: {message}"
    if field not in SECRET_FIELDS and "input" in error and isinstance(error["input"], (str, int, float)):
        given = without_password(str(error["input"])) if field in URL_FIELDS else str(error["input"])
        line += f" (got {given[:80]!r})"
    return line
