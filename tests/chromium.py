"""The content editor's users, in a real browser: Debian's Chromium, headless,
driven by Selenium through Debian's chromedriver (installed by scripts/setup.sh;
nothing is downloaded). Each step leaves a screenshot (CI keeps them as
artifacts) and reads the browser's console: any error there is a failure."""

from __future__ import annotations

import shutil
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "build" / "artifacts"
EDITOR = "/admin/content-editor"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def start() -> webdriver.Chrome:
    assert CHROMIUM.exists() and CHROMEDRIVER.exists(), "chromium and chromium-driver"
    options = Options()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1000,900", "--disable-gpu"):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    return driver


class Visit:
    """The browser's steps: each one a screenshot and the console read."""

    def __init__(self, driver, shots: str):
        """``shots``: the screenshots' directory under build/artifacts/."""
        self.driver = driver
        self.errors: list[str] = []
        self.step = 0
        self.shots = ARTIFACTS / shots
        shutil.rmtree(self.shots, ignore_errors=True)
        self.shots.mkdir(parents=True)

    def shot(self, name: str) -> None:
        self.step += 1
        self.driver.save_screenshot(str(self.shots / f"{self.step:02d}-{name}.png"))
        for entry in self.driver.get_log("browser"):
            if entry["level"] in ("SEVERE", "ERROR"):
                self.errors.append(f"{name}: {entry['message']}")

    def fill(self, field: str, text: str) -> None:
        box = self.driver.find_element(By.NAME, field)
        box.clear()
        box.send_keys(text)

    def click(self, by: str, what: str) -> None:
        """Click and wait for the page it leads to (a click returns before the
        browser has navigated)."""
        page = self.driver.find_element(By.TAG_NAME, "html")
        self.driver.find_element(by, what).click()
        WebDriverWait(self.driver, 20).until(lambda _driver: _replaced(page))

    def submit(self) -> None:
        self.click(By.CSS_SELECTOR, "main form button[type=submit]")

    def heading(self) -> str:
        return self.driver.find_element(By.TAG_NAME, "h1").text


def _replaced(page) -> bool:
    """True once ``page`` (the old document's root) has left the document: the
    browser navigated. Mid-navigation chromedriver may say so with an
    inspector error ("does not belong to the document") instead of a stale
    element: the same fact."""
    try:
        page.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as exc:
        if "does not belong to the document" in str(exc):
            return True
        raise
    return False
