"""Real processes for process tests and drills: the fake Cal.com, web and poller, on free ports."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from .helpers import TEST_SECRET_KEY

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):  # type: ignore[no-untyped-def]
    """Poll a condition (not a sleep standing in for one); fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except (httpx.HTTPError, OSError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


class Process:
    """A child process with its output captured to a file (read it when a test fails)."""

    def __init__(self, args: list[str], env: dict[str, str], name: str) -> None:
        self.name = name
        self.log = tempfile.NamedTemporaryFile(prefix=f"{name}-", suffix=".log", delete=False)
        self.popen = subprocess.Popen(args, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def signal(self, signum: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signum)

    def wait(self, timeout: float = 30) -> int:
        return self.popen.wait(timeout=timeout)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.log.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log.name)


def service_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "API_TOKEN", "PORT")}
    env.update({"DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "INFO"})
    # The suite's key for the stored secrets; the fake Cal.com and platforms listen on localhost.
    env.update({"SECRET_KEYS": TEST_SECRET_KEY, "ALLOW_PRIVATE_TARGETS": "true"})
    env.update(extra)
    return env


@contextlib.contextmanager
def fake_calcom(*api_keys: str, limit: int = 120) -> Iterator[tuple[str, httpx.Client]]:
    """A fake Cal.com server process; yields its base URL and a client for its /_fake control API."""
    port = free_port()
    args = [sys.executable, "-m", "service.testing.fakecalcom", "--port", str(port), "--limit", str(limit)]
    for key in api_keys:
        args += ["--api-key", key]
    process = Process(args, dict(os.environ), "fakecalcom")
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=10) as control:
            wait_until(lambda: control.get("/_fake/calls").status_code == 200, 30, "the fake Cal.com to start")
            yield base, control
    finally:
        process.stop()


@contextlib.contextmanager
def started(args: list[str], env: dict[str, str], name: str) -> Iterator[Process]:
    process = Process([sys.executable, "-m", "service", *args], env, name)
    try:
        yield process
    finally:
        process.stop()
