"""Browser tests: Debian's chromium driven through chromedriver (Selenium), against a real `web` process.

Skipped when no browser is installed (with how to enable them); REQUIRE_BROWSER=1 (set by .ci/run)
makes a missing browser a failure instead.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

HOW = (
    "Chromium not found: the console's browser tests need Debian's chromium and chromedriver "
    "(apt-get install chromium chromium-driver) and the test extras (selenium); .ci/run installs and requires them"
)


def _find(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name) or (name if os.path.isabs(name) and os.access(name, os.X_OK) else None)
        if found:
            return found
    return None


def browser_paths() -> tuple[str, str] | None:
    chromium = _find(os.environ.get("CHROMIUM", ""), "chromium", "/usr/bin/chromium", "chromium-browser")
    driver = _find(os.environ.get("CHROMEDRIVER", ""), "chromedriver", "/usr/bin/chromedriver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        return None
    return (chromium, driver) if chromium and driver else None


@pytest.fixture
def browser() -> Iterator[object]:
    """A headless Chromium; skipped (or failed, with REQUIRE_BROWSER=1) when there is none."""
    paths = browser_paths()
    if paths is None:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(HOW)
        pytest.skip(HOW)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = paths
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    profile = tempfile.mkdtemp(prefix="console-chromium-")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", f"--user-data-dir={profile}",
                     "--window-size=1280,900", "--no-first-run", "--disable-extensions"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
