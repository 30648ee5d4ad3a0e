"""One settings object, read from the environment (and `.env`), validated at start-up."""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.core.models import validate_http_url

DEFAULT_SQLITE_PATH = os.path.join("var", "verifier.sqlite3")
SECRET_FIELDS = {"api_token", "console_session_key", "secret_keys"}
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
    # Booking guard: how long a create may take at Cal.com, and how long finding its truth may take after that.
    guard_calcom_timeout_seconds: float = Field(default=30.0, gt=0, le=300)
    guard_truth_seconds: float = Field(default=5.0, gt=0, le=60)
    # The operator console: the key that signs its session cookies (`make run` generates one into
    # .env), and how long a sign-in lasts.
    console_session_key: SecretStr | None = None
    console_session_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    # The keys the accounts' secrets are encrypted under (comma-separated; the first encrypts).
    secret_keys: SecretStr | None = None
    # Let callback_url and calcom_api_base point at loopback and private addresses (development, tests).
    allow_private_targets: bool = False
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

    @field_validator("console_session_key")
    @classmethod
    def _console_session_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip()) < 32:
            raise ValueError("must be at least 32 characters (or unset it and let `make run` generate one)")
        return value

    @field_validator("secret_keys")
    @classmethod
    def _secret_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        keys = [key.strip() for key in value.get_secret_value().split(",")]
        for number, key in enumerate(keys, 1):
            if not valid_fernet_key(key):
                raise ValueError(
                    f"key {number} is not 32 random bytes in url-safe base64; generate one with "
                    "python -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())'"
                )
        return SecretStr(",".join(keys))

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

    @property
    def secret_key_list(self) -> list[str]:
        return self.secret_keys.get_secret_value().split(",") if self.secret_keys else []


def valid_fernet_key(key: str) -> bool:
    """32 bytes in url-safe base64 (44 characters): the format of a Fernet key."""
    try:
        return len(key) == 44 and len(base64.urlsafe_b64decode(key.encode("ascii"))) == 32
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return False


def new_secret_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")


def ensure_env_value(env_file: str, name: str, make: Callable[[], str]) -> str | None:
    """Append NAME=<make()> to the .env file unless the environment or the file has a value; answer a fresh value."""
    if os.environ.get(name):
        return None
    if os.path.exists(env_file):
        with open(env_file, encoding="utf-8") as handle:
            for line in handle.read().splitlines():
                if line.strip().startswith(f"{name}=") and line.split("=", 1)[1].strip():
                    return None
    value = make()
    with open(env_file, "a", encoding="utf-8") as handle:
        handle.write(f"{name}={value}\n")
    os.chmod(env_file, 0o600)
    return value


def require_secret_keys(settings: Settings) -> None:
    """PostgreSQL never runs without SECRET_KEYS (a generated key would be one process' secret)."""
    if not settings.is_sqlite and not settings.secret_keys:
        raise ConfigError(
            "configuration error: SECRET_KEYS: required with PostgreSQL (the accounts' secrets are stored encrypted); "
            "generate one with python -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())'"
        )


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment; raise ConfigError with one line naming the variable."""
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_error(exc)) from None
    require_secret_keys(settings)
    return settings


def describe_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    field = str(error["loc"][0]) if error["loc"] else "?"
    message = error["msg"].removeprefix("Value error, ")
    line = f"configuration error: {field.upper()}: {message}"
    if field not in SECRET_FIELDS and "input" in error and isinstance(error["input"], (str, int, float)):
        given = without_password(str(error["input"])) if field in URL_FIELDS else str(error["input"])
        line += f" (got {given[:80]!r})"
    return line
