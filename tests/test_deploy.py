"""The deployment snippets in deploy/ are checked by the tools that will read them, where present."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
INSTALL_DIR = "/opt/calcom-verifier"


def _units(tmp_path: Path) -> list[Path]:
    """The unit files with the install directory pointing at this checkout (verify checks ExecStart exists)."""
    venv = Path(sys.executable).resolve().parents[1]
    units = []
    for source in sorted((DEPLOY / "systemd").iterdir()):
        target = tmp_path / source.name
        target.write_text(source.read_text().replace(f"{INSTALL_DIR}/.venv", str(venv)))
        units.append(target)
    return units


def test_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed: the unit files are not checked on this machine")
    units = _units(tmp_path)
    web = next(u for u in units if u.name.startswith("calcom-verifier-web@"))
    poller = next(u for u in units if u.name.startswith("calcom-verifier-poller@"))
    instances = [tmp_path / "calcom-verifier-web@8000.service", tmp_path / "calcom-verifier-poller@1.service"]
    instances[0].symlink_to(web)
    instances[1].symlink_to(poller)
    checked = [u for u in units if "@." not in u.name] + instances
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *map(str, checked)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
    )
    # Complaints about the machine (no such user, no /etc/calcom-verifier) are not the files' fault.
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if line.strip()
        and "calcom-verifier" in line
        and not any(
            harmless in line for harmless in ("EnvironmentFile", "User=", "Group=", "No such file or directory", "WorkingDirectory")
        )
    ]
    assert not problems, "\n".join(problems)


def test_web_and_poller_units_run_the_procfile_commands() -> None:
    procfile = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip())
    web = (DEPLOY / "systemd" / "calcom-verifier-web@.service").read_text()
    poller = (DEPLOY / "systemd" / "calcom-verifier-poller@.service").read_text()
    release = (DEPLOY / "systemd" / "calcom-verifier-release.service").read_text()
    assert f"ExecStart={INSTALL_DIR}/.venv/bin/{procfile['web']}" in web
    assert f"ExecStartPre={INSTALL_DIR}/.venv/bin/{procfile['release']}" in web
    assert f"ExecStart={INSTALL_DIR}/.venv/bin/{procfile['poller']}" in poller
    assert f"ExecStart={INSTALL_DIR}/.venv/bin/{procfile['release']}" in release


def test_nginx_config_passes_nginx_t(tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        pytest.skip("nginx not installed (apt-get install nginx-light): the proxy example is not checked here")
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed: cannot make the test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=verifier.example.com",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    site = (DEPLOY / "nginx" / "calcom-verifier.conf").read_text()
    site = site.replace("/etc/letsencrypt/live/verifier.example.com/fullchain.pem", str(cert))
    site = site.replace("/etc/letsencrypt/live/verifier.example.com/privkey.pem", str(key))
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n access_log off;\n client_body_temp_path {tmp_path};\n include {tmp_path}/site.conf;\n}}\n"
    )
    result = subprocess.run(
        [nginx, "-t", "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_the_proxy_examples_keep_status_and_metrics_internal_and_webhooks_unbuffered() -> None:
    nginx = (DEPLOY / "nginx" / "calcom-verifier.conf").read_text()
    assert "location ~ ^/(status|metrics)$" in nginx and "deny all;" in nginx
    webhooks = nginx.split("location /webhooks/", 1)[1].split("}", 1)[0]
    assert "proxy_request_buffering off;" in webhooks and "limit_req" not in nginx
    api = nginx.split("location /api/", 1)[1].split("}", 1)[0]
    assert int(api.split("proxy_read_timeout", 1)[1].split("s;", 1)[0]) > 30  # longer than ?wait=30
    caddy = (DEPLOY / "Caddyfile").read_text()
    assert "path /status /metrics" in caddy and "flush_interval -1" in caddy
