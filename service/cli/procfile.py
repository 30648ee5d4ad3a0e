"""`make run`: a token on first use, then the Procfile — `release` once, every other process kept running."""

from __future__ import annotations

import os
import secrets
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def read_procfile(path: Path) -> dict[str, str]:
    processes: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and ":" in line:
            name, command = line.split(":", 1)
            processes[name.strip()] = command.strip()
    return processes


def ensure_token(env_file: Path) -> str | None:
    """Generate API_TOKEN into .env when neither the environment nor .env has one; answer a fresh one."""
    if os.environ.get("API_TOKEN"):
        return None
    if env_file.exists():
        for line in env_file.read_text(encoding="utf-8").splitlines():
            if line.strip().startswith("API_TOKEN=") and line.split("=", 1)[1].strip():
                return None
    token = secrets.token_urlsafe(32)
    with env_file.open("a", encoding="utf-8") as handle:
        handle.write(f"API_TOKEN={token}\n")
    env_file.chmod(0o600)
    return token


def _pump(name: str, stream: object, width: int) -> None:
    for line in iter(stream.readline, ""):  # type: ignore[attr-defined]
        sys.stdout.write(f"{name:<{width}} | {line}")
        sys.stdout.flush()


def run(root: Path = ROOT) -> int:
    env_file = root / ".env"
    fresh = ensure_token(env_file)
    port = os.environ.get("PORT", "8000")
    if fresh:
        print(f"Generated an API token and saved it in {env_file.name} (keep it secret):\n  API_TOKEN={fresh}")
    else:
        print(f"API token: as set in the environment or in {env_file.name} (see: grep API_TOKEN {env_file.name})")
    print(
        "Try it:\n"
        f"  export $(grep API_TOKEN {env_file.name})\n"
        f"  curl -s localhost:{port}/healthz\n"
        f'  curl -s -H "Authorization: Bearer $API_TOKEN" localhost:{port}/api/verifications\n'
    )
    sys.stdout.flush()
    processes = read_procfile(root / "Procfile")
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    if "release" in processes:
        release_code = subprocess.call(shlex.split(processes["release"]), cwd=root, env=env)
        if release_code != 0:
            print(f"release failed with exit code {release_code}; not starting the service", file=sys.stderr)
            return release_code
    names = [name for name in processes if name != "release"]
    width = max(len(n) for n in names)
    children: dict[str, subprocess.Popen[str]] = {}
    for name in names:
        child = subprocess.Popen(
            shlex.split(processes[name]), cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        children[name] = child
        threading.Thread(target=_pump, args=(name, child.stdout, width), daemon=True).start()

    stopping = threading.Event()

    def stop(signum: int, _frame: object) -> None:
        stopping.set()
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    exit_code = 0
    while children:
        for name, child in list(children.items()):
            code = child.poll()
            if code is None:
                continue
            del children[name]
            if not stopping.is_set():
                print(f"{name} exited with code {code}; stopping the others", file=sys.stderr)
                exit_code = code or 1
                stop(signal.SIGTERM, None)
        stopping.wait(0.2)
    return exit_code
