"""`make run`: the Procfile in the current directory — `release` once, `web` until it answers, then the rest.

A configuration problem, a failed release or a web process that cannot start (port in use, …)
ends the run with its own one-line error and nothing after it; the "Try it" banner is printed only
once the web process answers /healthz, so everything it suggests works when it appears.
"""

from __future__ import annotations

import os
import secrets
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from service.cli.startup import listen_socket
from service.settings import ConfigError, Settings, ensure_env_value, load_settings, new_secret_key

UP_WITHIN = 60.0  # seconds the web process has to answer /healthz


def read_procfile(path: Path) -> dict[str, str]:
    processes: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and ":" in line:
            name, command = line.split(":", 1)
            processes[name.strip()] = command.strip()
    return processes


def ensure_token(env_file: Path, name: str = "API_TOKEN") -> str | None:
    """Generate `name` into .env when neither the environment nor .env has one; answer a fresh one."""
    if os.environ.get(name):
        return None
    if env_file.exists():
        for line in env_file.read_text(encoding="utf-8").splitlines():
            if line.strip().startswith(f"{name}=") and line.split("=", 1)[1].strip():
                return None
    token = secrets.token_urlsafe(32)
    with env_file.open("a", encoding="utf-8") as handle:
        handle.write(f"{name}={token}\n")
    env_file.chmod(0o600)
    return token


def _pump(name: str, stream: object, width: int) -> None:
    for line in iter(stream.readline, ""):  # type: ignore[attr-defined]
        sys.stdout.write(f"{name:<{width}} | {line}")
        sys.stdout.flush()


def python_command(root: Path) -> str:
    """This interpreter as a reader at `root` can type it: `.venv/bin/python` inside the checkout."""
    executable = Path(sys.executable)
    try:
        return str(executable.relative_to(root))
    except ValueError:
        return str(executable)


def probe_host(host: str) -> str:
    return {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "[::1]"}.get(host, f"[{host}]" if ":" in host else host)


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def banner(settings: Settings, root: Path, fresh_token: str | None) -> str:
    port = settings.port
    lines = [f"The service is up: http://localhost:{port} (web and poller; Ctrl-C stops them)."]
    token_from_file = not os.environ.get("API_TOKEN")
    if fresh_token:
        lines.append(f"Generated an API token and saved it in .env (keep it secret):\n  API_TOKEN={fresh_token}")
    elif token_from_file:
        lines.append("API token: the one in .env (see: grep API_TOKEN .env)")
    else:
        lines.append("API token: the one in the environment (API_TOKEN)")
    lines.append(
        f"Operator console: http://localhost:{port}/console (add an operator first: {python_command(root)} -m service operators add NAME)"
    )
    lines.append("Try it, in another terminal in this directory:")
    if token_from_file:
        lines.append("  export $(grep API_TOKEN .env)")
    lines += [
        f"  curl -s localhost:{port}/healthz",
        f'  curl -s -H "Authorization: Bearer $API_TOKEN" localhost:{port}/api/verifications',
        f"  {python_command(root)} -m service simulate    # three salon scenarios end to end, offline",
    ]
    return "\n".join(lines) + "\n"


def run(root: Path | None = None) -> int:
    """Run the Procfile of `root` (the current directory); answer the exit code for `make run`."""
    root = (root or Path.cwd()).resolve()
    procfile = root / "Procfile"
    if not procfile.exists():
        print(f"error: no Procfile in {root}: run `make run` in the repository's directory", file=sys.stderr)
        return 2
    os.chdir(root)
    fresh = ensure_token(root / ".env")
    ensure_token(root / ".env", "CONSOLE_SESSION_KEY")  # signs the console's session cookies; never shown
    # The key the accounts' secrets are encrypted under, beside the token (keep .env out of backups of var/).
    ensure_env_value(str(root / ".env"), "SECRET_KEYS", new_secret_key)
    try:
        settings = load_settings()
        listen_socket(settings.host, settings.port).close()  # a port in use is said before anything runs
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    processes = read_procfile(procfile)
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    if "LOG_FORMAT" not in env and sys.stdout.isatty():
        env["LOG_FORMAT"] = "text"  # the processes write to our pipe; a person reads what we print
    if "release" in processes:
        released = subprocess.call(shlex.split(processes["release"]), cwd=root, env=env)
        if released != 0:
            print(f"not starting the service: release exited with code {released}", file=sys.stderr)
            return released
    names = [name for name in processes if name != "release"]
    width = max([len(n) for n in names] or [1])
    children: dict[str, subprocess.Popen[str]] = {}
    pumps: dict[str, threading.Thread] = {}
    stopping = threading.Event()

    def start(name: str) -> None:
        child = subprocess.Popen(
            shlex.split(processes[name]), cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        children[name] = child
        pumps[name] = threading.Thread(target=_pump, args=(name, child.stdout, width), daemon=True)
        pumps[name].start()

    def stop(signum: int, _frame: object) -> None:
        stopping.set()
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    if "web" in names:
        start("web")
        url = f"http://{probe_host(settings.host)}:{settings.port}/healthz"
        deadline = time.monotonic() + UP_WITHIN
        while not healthy(url):
            failed = children["web"].poll()
            if failed is not None:
                pumps["web"].join(timeout=5)  # web's own lines first
                print(f"the service did not start: web exited with code {failed}", file=sys.stderr)
                return failed or 1
            if stopping.is_set() or time.monotonic() > deadline:
                break
            stopping.wait(0.2)
    if not stopping.is_set():
        for name in names:
            if name not in children:
                start(name)
        print(banner(settings, root, fresh), flush=True)
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
