"""The console in a real browser against a real `web` process, on SQLite and PostgreSQL.

Sign in (a wrong password first), filter the queue, open a verification, read its evidence, resolve
it with a picked booking, see it leave the queue and appear in the audit log; a forged form without
its CSRF token is refused; sign-out ends the session. With SCREENSHOTS_DIR set (`make screenshots`)
the pages are saved there as PNG files for the README.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..helpers import API_KEY, WEBHOOK_SECRET, booking_event, failure, phase, signed
from ..processes import ROOT, free_port, service_env, started, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TOKEN = "browser-test-api-token-0123456789"
SESSION_KEY = "browser-test-session-key-0123456789abcdef"
PASSWORD = "correct horse battery staple"
START = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


class Console:
    """A running web process with an operator, two accounts and a verification in review in each."""

    def __init__(self, base: str, api: httpx.Client, ids: dict[str, str]) -> None:
        self.base = base
        self.api = api
        self.ids = ids


@pytest.fixture
def console(database_url: str) -> Iterator[Console]:
    port = free_port()
    env = service_env(database_url, PORT=str(port), API_TOKEN=TOKEN, CONSOLE_SESSION_KEY=SESSION_KEY)
    added = subprocess.run([sys.executable, "-m", "service", "migrate"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert added.returncode == 0, added.stderr
    added = subprocess.run(
        [sys.executable, "-m", "service", "operators", "add", "alice"],
        cwd=ROOT,
        env=env,
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
    )
    assert added.returncode == 0, added.stderr
    with started(["web"], env, "web") as web:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=10, headers={"Authorization": f"Bearer {TOKEN}"}) as api:
            wait_until(lambda: api.get("/healthz").status_code == 200, 30, "the web process to listen")
            ids = {name: _in_review(api, name, appointment) for name, appointment in (("salon-1", "762"), ("salon-2", "881"))}
            try:
                yield Console(base, api, ids)
            except BaseException:
                print(web.output())
                raise


def _in_review(api: httpx.Client, account: str, appointment: str) -> str:
    body = {"calcom_api_key": API_KEY, "webhook_secret": WEBHOOK_SECRET, **({"time_zone": "Europe/Berlin"} if account == "salon-1" else {})}
    assert api.put(f"/api/accounts/{account}", json=body).status_code == 201
    for uid, minutes, extra in ((f"{account}-near", 2, {}), (f"{account}-other", 3, {"attendees": ("someone@else.example",)})):
        request = signed(booking_event(uid=uid, start=START + timedelta(minutes=minutes), **extra))
        assert api.post(f"/webhooks/calcom/{account}", content=request.body, headers=request.headers).status_code == 200
    assert api.patch(f"/api/accounts/{account}", json={"enabled": False}).status_code == 200
    created = api.post("/api/verifications", json=failure(appointment, phases=[phase("A", START)], account=account)).json()
    assert created["status"] == "manual_review", created
    return str(created["id"])


def _shot(driver: Any, name: str) -> None:
    """Every page the test looks at shows no secret; with SCREENSHOTS_DIR set, it is saved there too."""
    leaked = [secret for secret in (API_KEY, WEBHOOK_SECRET, TOKEN, SESSION_KEY, PASSWORD) if secret in driver.page_source]
    assert not leaked, f"the {name} page shows a secret"
    folder = os.environ.get("SCREENSHOTS_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / f"console-{name}.png"))


def _wait(driver: Any, condition: Any, what: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, 20).until(condition, message=f"timed out waiting for {what}")


def _sign_in(driver: Any, password: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "name").send_keys("alice")
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "sign-in").click()


def test_an_operator_reviews_and_resolves_a_verification_in_the_browser(browser: Any, console: Console) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select

    driver = browser
    first, second = console.ids["salon-1"], console.ids["salon-2"]

    driver.get(console.base + "/console")
    _wait(driver, ec.presence_of_element_located((By.ID, "sign-in")), "the sign-in form")
    _shot(driver, "sign-in")
    _sign_in(driver, "not the password")
    assert "Wrong name or password" in _wait(driver, ec.presence_of_element_located((By.ID, "error")), "the refusal").text
    _sign_in(driver, PASSWORD)
    queue = _wait(driver, ec.presence_of_element_located((By.ID, "queue")), "the review queue")
    assert {row.get_attribute("data-id") for row in queue.find_elements(By.CSS_SELECTOR, "tbody tr[data-id]")} == {first, second}
    _shot(driver, "queue")

    Select(driver.find_element(By.ID, "filter-account")).select_by_value("salon-1")
    driver.find_element(By.ID, "filter").click()
    _wait(driver, ec.url_contains("account=salon-1"), "the filtered queue")
    rows = driver.find_elements(By.CSS_SELECTOR, "#queue tbody tr[data-id]")
    assert [row.get_attribute("data-id") for row in rows] == [first]

    rows[0].find_element(By.TAG_NAME, "a").click()
    evidence = _wait(driver, ec.presence_of_element_located((By.ID, "evidence-A")), "the evidence")
    reasons = {row.get_attribute("data-unit"): row.find_element(By.CSS_SELECTOR, ".reason").text
               for row in evidence.find_elements(By.CSS_SELECTOR, "tbody tr[data-unit]")}  # fmt: skip
    assert reasons == {"salon-1-near": "eligible", "salon-1-other": "constraint_mismatch"}
    assert "09:00 UTC · 10:00 Europe/Berlin" in driver.find_element(By.ID, "phase-A").text
    _shot(driver, "evidence")

    driver.find_element(By.ID, "outcome-synced").click()
    driver.find_element(By.CSS_SELECTOR, "input[name='booking.A'][value='salon-1-near']").click()
    driver.find_element(By.ID, "note").send_keys("seen in Cal.com")
    driver.find_element(By.ID, "resolve-submit").click()
    notice = _wait(driver, ec.presence_of_element_located((By.ID, "notice")), "the resolved notice")
    assert first in notice.text
    remaining = [row.get_attribute("data-id") for row in driver.find_elements(By.CSS_SELECTOR, "#queue tbody tr[data-id]")]
    assert remaining == [second]
    view = console.api.get(f"/api/verifications/{first}").json()
    assert view["status"] == "resolved" and view["resolved_by"] == "alice" and view["phases"][0]["booking"]["uid"] == "salon-1-near"

    driver.get(console.base + "/console/audit")
    audit = _wait(driver, ec.presence_of_element_located((By.ID, "audit")), "the audit log").text
    assert "verification_resolved" in audit and first in audit and "alice" in audit
    _shot(driver, "audit")

    # A forged form: the resolve form of the other verification, its CSRF token removed.
    driver.get(f"{console.base}/console/verifications/{second}")
    _wait(driver, ec.presence_of_element_located((By.ID, "resolve")), "the resolve form")
    driver.execute_script("document.querySelector('#resolve input[name=csrf]').remove()")
    driver.find_element(By.ID, "outcome-failed").click()
    driver.find_element(By.ID, "resolve-submit").click()
    refusal = _wait(driver, ec.presence_of_element_located((By.ID, "error")), "the refusal")  # the form page has no #error
    assert "Nothing was changed" in refusal.text and driver.find_element(By.TAG_NAME, "h1").text == "Refused"
    assert console.api.get(f"/api/verifications/{second}").json()["status"] == "manual_review"

    driver.get(f"{console.base}/console/accounts")
    zone = _wait(
        driver, ec.presence_of_element_located((By.CSS_SELECTOR, "#time-zone-form-salon-2 input[name=time_zone]")), "the time zone form"
    )
    zone.clear()
    zone.send_keys("America/New_York")
    driver.find_element(By.CSS_SELECTOR, "#time-zone-form-salon-2 button").click()
    _wait(driver, ec.presence_of_element_located((By.ID, "notice")), "the saved notice")
    assert driver.find_element(By.ID, "time-zone-salon-2").text == "America/New_York"
    assert console.api.get("/api/accounts/salon-2").json()["time_zone"] == "America/New_York"
    for page in ("dashboard", "accounts"):
        driver.get(f"{console.base}/console/{page}")
        _wait(driver, ec.presence_of_element_located((By.TAG_NAME, "h1")), page)
        _shot(driver, page)
    driver.set_window_size(390, 844)  # a phone
    driver.get(console.base + "/console")
    _wait(driver, ec.presence_of_element_located((By.ID, "queue")), "the queue on a phone")
    _shot(driver, "phone")
    driver.set_window_size(1280, 900)

    driver.find_element(By.ID, "sign-out").click()
    _wait(driver, ec.presence_of_element_located((By.ID, "sign-in")), "the sign-in form after signing out")
    driver.get(console.base + "/console")
    _wait(driver, ec.presence_of_element_located((By.ID, "sign-in")), "the sign-in form again")
    assert "/console/sign-in" in driver.current_url
