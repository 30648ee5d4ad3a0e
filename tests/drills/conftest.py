"""Drill fixtures: the private PostgreSQL cluster, fresh databases, and the figures each drill measured.

Every drill records what it measured with the `figures` fixture; the figures are printed in a
"fault drill figures" section at the end of the run (no `-s` needed) and, when DRILL_FIGURES names
a file, appended to it as JSON lines (RELIABILITY.md quotes them).
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .support import PrivateCluster, fresh_database, private_cluster_available

_FIGURES: dict[str, dict[str, Any]] = {}


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """A dict the drill fills with what it measured; reported whether it passed or failed."""
    found: dict[str, Any] = {}
    started = time.monotonic()
    yield found
    found["drill_seconds"] = round(time.monotonic() - started, 1)
    _FIGURES[request.node.nodeid] = found
    path = os.environ.get("DRILL_FIGURES")
    if path:
        record = {
            "test": request.node.nodeid,
            "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpu",
            **found,
        }
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(record, default=str) + "\n")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("fault drill figures")
    for nodeid, found in _FIGURES.items():
        terminalreporter.write_line(nodeid)
        for name, value in found.items():
            terminalreporter.write_line(f"    {name}: {value}")


@pytest.fixture(scope="session")
def private_cluster() -> Iterator[PrivateCluster]:
    """One PostgreSQL cluster of the drills' own; drills may stop and restart it."""
    reason = private_cluster_available()
    if reason:
        pytest.skip(f"private PostgreSQL cluster unavailable: {reason}")
    cluster = PrivateCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def drill_database(private_cluster: PrivateCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, migrated database on the private cluster (its URL)."""
    if not private_cluster.running():
        private_cluster.start()
    with fresh_database(private_cluster.admin_url, "drill") as url:
        yield url
