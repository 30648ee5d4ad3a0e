"""A wheel built from the repository installs into a fresh virtualenv elsewhere and runs `release` and `web`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import httpx
import pytest

from service.store import migrations

from .processes import free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built from a copy of the sources, so the checkout gets no build/ directory."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "service", source / "service", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    return next(out.glob("*.whl"))


def test_wheel_ships_the_migrations(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for dialect in ("sqlite", "postgresql"):
        for version, _ in migrations.available(dialect):
            assert f"service/store/migrations/{dialect}/{version}.sql" in names


def test_an_installed_wheel_releases_and_serves_with_no_path_into_the_checkout(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    # The dependencies come from this project's environment (appended after the venv's own site),
    # the service itself only from the wheel: installing it is unpacking it.
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(DATABASE_URL=f"sqlite:///{elsewhere / 'db.sqlite3'}", API_TOKEN="wheel-test-token-0123456789", LOG_LEVEL="WARNING")
    where = subprocess.run(
        [str(python), "-c", "import service; print(service.__file__)"], cwd=elsewhere, env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert where.startswith(str(site)), where
    released = subprocess.run(
        [str(python), "-m", "service", "migrate"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120
    )
    assert released.returncode == 0, released.stderr
    applied = [v for v, _ in migrations.available("sqlite")]
    assert applied[-1] in released.stdout
    port = free_port()
    web = subprocess.Popen(
        [str(python), "-m", "service", "web"],
        cwd=elsewhere,
        env={**env, "PORT": str(port)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:

        def ready() -> httpx.Response | None:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
            except httpx.HTTPError:
                return None
            return answer if answer.status_code == 200 else None

        answer = wait_until(ready, 60, "the installed web process to be ready", interval=0.2)
        assert answer.json()["migrations"] == "current"
    finally:
        web.terminate()
        web.wait(timeout=30)
