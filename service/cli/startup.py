"""Start-up checks of the web process: the address to listen on, in one line naming HOST or PORT.

The web process binds its socket itself (and hands it to uvicorn), so a port in use, a port that
needs privileges or a HOST that is not an address of this machine stop it with exit code 2 and a
line saying what to change — before anything else starts.
"""

from __future__ import annotations

import errno
import socket

from service.settings import ConfigError


def listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port), ready for uvicorn; ConfigError (one line) when that is impossible."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        raise ConfigError(
            f"configuration error: HOST: {host!r} cannot be resolved to an address of this machine "
            "(use 0.0.0.0 for every interface, or 127.0.0.1 for this machine only)"
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"configuration error: {_bind_problem(exc, host, port)}") from None
    return sock


def _bind_problem(exc: OSError, host: str, port: int) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"PORT: port {port} on {host} is already in use by another process; choose another, e.g. PORT={port + 1 if port < 65535 else 8000}"
    if exc.errno == errno.EACCES:
        return f"PORT: listening on port {port} needs privileges here; use a port above 1023 (e.g. PORT=8000) behind a reverse proxy"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"HOST: {host} is not an address of this machine (use 0.0.0.0 for every interface, or 127.0.0.1)"
    return f"PORT: cannot listen on {host}:{port} ({exc.strerror or type(exc).__name__})"
