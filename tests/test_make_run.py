"""`make run` (`python -m service run`): an error first and alone; the "Try it" banner once the service answers."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from service.cli.procfile import python_command
from service.settings import Settings

from .processes import ROOT, free_port

pytestmark = pytest.mark.slow


def environment(**variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.upper() not in {f.upper() for f in Settings.model_fields}}
    env.update(variables, POLL_INTERVAL_SECONDS="0.2")
    return env


def start(directory: Path, procfile: str | None = None, **variables: str) -> subprocess.Popen[str]:
    if procfile is None:
        shutil.copy(ROOT / "Procfile", directory / "Procfile")
    else:
        (directory / "Procfile").write_text(procfile)
    return subprocess.Popen(
        [sys.executable, "-m", "service", "run"],
        cwd=directory,
        env=environment(**variables),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_a_start_up_error_comes_first_and_alone(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        runner = start(tmp_path, PORT=str(port))
        output, _ = runner.communicate(timeout=120)
    assert runner.returncode == 2, output
    assert output.splitlines() == [  # before anything ran: no migration, no banner, no database
        f"configuration error: PORT: port {port} on 0.0.0.0 is already in use by another process; choose another, e.g. PORT={port + 1}",
    ], output
    assert not (tmp_path / "var").exists()


def test_a_release_that_fails_ends_the_run_with_its_own_line(tmp_path: Path) -> None:
    runner = start(tmp_path, PORT=str(free_port()), DATABASE_URL=f"postgresql://v:pw@127.0.0.1:{free_port()}/v")
    output, _ = runner.communicate(timeout=120)
    assert runner.returncode == 2 and "Try it" not in output
    assert output.splitlines() == [
        f"configuration error: DATABASE_URL: nothing accepts connections on 127.0.0.1:{output.split('127.0.0.1:')[1].split(' ')[0]} "
        "(is PostgreSQL running, and on that port?)",
        "not starting the service: release exited with code 2",
    ], output


def test_a_web_process_that_cannot_start_ends_the_run_without_a_banner(tmp_path: Path) -> None:
    with socket.socket() as taken:  # free when the run checks PORT; the web process is told another port, in use
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        procfile = f"release: python -m service migrate\nweb: python -m service web --port {busy}\npoller: python -m service poll\n"
        runner = start(tmp_path, procfile, PORT=str(free_port()))
        output, _ = runner.communicate(timeout=120)
    assert runner.returncode == 2 and "Try it" not in output and "poller " not in output
    assert output.splitlines()[-2:] == [
        f"web    | configuration error: PORT: port {busy} on 0.0.0.0 is already in use by another process; choose another, e.g. PORT={busy + 1}",
        "the service did not start: web exited with code 2",
    ], output


def test_the_banner_comes_once_the_service_answers_and_its_commands_work(tmp_path: Path) -> None:
    port = free_port()
    runner = start(tmp_path, PORT=str(port))
    seen: list[str] = []
    try:
        assert runner.stdout is not None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = runner.stdout.readline()
            if not line:
                break
            seen.append(line.rstrip("\n"))
            if "-m service simulate" in line:
                break
        output = "\n".join(seen)
        assert "Try it" in output, output
        banner = output[output.index("The service is up") :]
        web_started = output.index("web_started")
        assert web_started < output.index("The service is up")  # the web process answered before the banner
        assert f"curl -s localhost:{port}/healthz" in banner and "export $(grep API_TOKEN .env)" in banner
        assert "API_TOKEN=" in banner and (tmp_path / ".env").read_text().startswith("API_TOKEN=")
        assert f"localhost:{port}/console" in banner and "-m service operators add NAME" in banner
        assert "CONSOLE_SESSION_KEY=" in (tmp_path / ".env").read_text()  # generated, never shown
        assert "CONSOLE_SESSION_KEY" not in banner
        command = next(line.strip() for line in banner.splitlines() if "-m service simulate" in line).split("  #")[0]
        simulated = subprocess.run(command, shell=True, cwd=tmp_path, env=environment(), capture_output=True, text=True, timeout=120)
        assert simulated.returncode == 0, simulated.stdout + simulated.stderr
        assert "all three outcomes as expected" in simulated.stdout
    finally:
        runner.send_signal(signal.SIGTERM)
        rest, _ = runner.communicate(timeout=60)
    assert runner.returncode == 0, output + rest


def test_the_simulate_command_is_the_checkouts_python_relative_to_it() -> None:
    assert python_command(Path(sys.executable).parents[2]) == str(Path(sys.executable).relative_to(Path(sys.executable).parents[2]))
    assert python_command(Path("/nowhere/else")) == sys.executable


def test_no_procfile_here_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service", "run"], cwd=tmp_path, env=environment(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "no Procfile" in result.stderr
