"""Why a database could not be opened at start-up, in one line an operator can act on.

The line names DATABASE_URL and what is wrong with it (never its password); the driver's
exception and traceback stay out of the operator's way.
"""

from __future__ import annotations

import errno
import socket
import sqlite3
from collections.abc import Iterator
from urllib.parse import urlsplit

import asyncpg


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _where(url: str) -> tuple[str, str, str, str]:
    """(host, port, database, user) of a PostgreSQL URL, without its password."""
    parts = urlsplit("postgresql://" + url.partition("://")[2])
    try:
        port = str(parts.port or 5432)
    except ValueError:
        port = parts.netloc.rpartition(":")[2]
    user = parts.username or ""
    return parts.hostname or "localhost", port, parts.path.lstrip("/") or user or "postgres", user


def connect_problem(exc: BaseException, url: str) -> str:
    """One line (naming DATABASE_URL) for an exception raised while opening the database."""
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1]
        for cause in _chain(exc):
            if isinstance(cause, PermissionError):
                return f"DATABASE_URL: cannot create or open the SQLite file {path}: permission denied"
            if isinstance(cause, (OSError, sqlite3.Error)):
                return f"DATABASE_URL: cannot open the SQLite file {path} ({cause.__class__.__name__}: {str(cause)[:120]})"
        return f"DATABASE_URL: cannot open the SQLite file {path} ({type(exc).__name__})"
    host, port, database, user = _where(url)
    at = f"{host}:{port}"
    for cause in _chain(exc):
        if isinstance(cause, asyncpg.InvalidCatalogNameError):
            return (
                f"DATABASE_URL: the database {database!r} does not exist on {at} (create it, e.g. createdb -h {host} -p {port} {database})"
            )
        if isinstance(cause, (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError)):
            return f"DATABASE_URL: PostgreSQL on {at} refused the login of user {user or '(none)'!r} (wrong password, or no such role)"
        if isinstance(cause, socket.gaierror):
            return f"DATABASE_URL: the host {host!r} cannot be resolved (a typo, or no DNS for it on this machine)"
        if isinstance(cause, ConnectionRefusedError) or (isinstance(cause, OSError) and cause.errno == errno.ECONNREFUSED):
            return f"DATABASE_URL: nothing accepts connections on {at} (is PostgreSQL running, and on that port?)"
        if isinstance(cause, TimeoutError):
            return f"DATABASE_URL: PostgreSQL on {at} did not answer in time"
        if isinstance(cause, asyncpg.PostgresError):
            return f"DATABASE_URL: PostgreSQL on {at} refused the connection to {database!r}: {cause.__class__.__name__}"
        if isinstance(cause, OSError):
            return f"DATABASE_URL: cannot connect to {at}: {cause.strerror or cause.__class__.__name__}"
    return f"DATABASE_URL: cannot connect to the PostgreSQL database {database!r} on {at} ({type(exc).__name__})"
