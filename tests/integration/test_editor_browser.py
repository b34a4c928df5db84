"""The content editor in a real browser: Debian's Chromium, headless, driven
by Selenium through Debian's chromedriver, against real edgesync-http
processes of two edges of one farm.

A person signs in with a token, makes a page, lands on its slug's URL, edits
its title and follows the 301 from the old slug to the new one; then opens the
page on the farm's other edge, which holds it at once (the bookmark cookie the
editor set makes that edge pull from its peer first). Each step leaves a
screenshot in build/artifacts/editor-browser/ (CI keeps them), and any error
on the browser's console fails the test.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from httpnode import TOKEN, serving
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait
from test_http import make_nodes

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "build" / "artifacts" / "editor-browser"
EDITOR = "/admin/content-editor"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def farm(tmp_path_factory, redis_server):
    paths = make_nodes(tmp_path_factory.mktemp("browser"), redis_server.url)
    with serving(paths, bookmark_wait_ms=5000) as servers:
        yield servers


@pytest.fixture
def browser():
    # Installed by scripts/setup.sh (Debian's chromium and chromium-driver);
    # nothing is downloaded.
    assert CHROMIUM.exists() and CHROMEDRIVER.exists(), "chromium and chromium-driver"
    options = Options()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1000,900", "--disable-gpu"):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


class Visit:
    """The browser's steps: each one a screenshot and the console read."""

    def __init__(self, driver):
        self.driver = driver
        self.errors: list[str] = []
        self.step = 0
        shutil.rmtree(SHOTS, ignore_errors=True)
        SHOTS.mkdir(parents=True)

    def shot(self, name: str) -> None:
        self.step += 1
        self.driver.save_screenshot(str(SHOTS / f"{self.step:02d}-{name}.png"))
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
        WebDriverWait(self.driver, 20).until(expected_conditions.staleness_of(page))

    def submit(self) -> None:
        self.click(By.CSS_SELECTOR, "main form button[type=submit]")

    def heading(self) -> str:
        return self.driver.find_element(By.TAG_NAME, "h1").text


def test_a_person_makes_renames_and_finds_a_page_across_the_farm_in_a_real_browser(farm, browser):
    one, two = farm["EDGE01"].url, farm["EDGE02"].url
    visit = Visit(browser)

    browser.get(f"{one}{EDITOR}/new")  # not signed in: the sign-in form first
    assert f"{EDITOR}/sign-in" in browser.current_url
    visit.shot("sign-in")
    visit.fill("token", TOKEN)
    visit.submit()
    assert browser.current_url == f"{one}{EDITOR}/new"
    visit.shot("new-page-form")

    visit.fill("section", "guide")
    visit.fill("title", "Opening Hours")
    visit.fill("body", "Monday to Friday, nine to five.")
    visit.submit()
    first = browser.current_url
    assert first.startswith(f"{one}{EDITOR}/page/guide-opening-hours-"), first
    assert visit.heading() == "Opening Hours"
    visit.shot("created")

    visit.click(By.LINK_TEXT, "Edit this page")
    assert browser.current_url.endswith("/edit")
    visit.shot("edit-form")
    visit.fill("title", "Opening Times")
    visit.submit()
    renamed = browser.current_url
    assert renamed.startswith(f"{one}{EDITOR}/page/guide-opening-times-"), renamed
    assert visit.heading() == "Opening Times"
    visit.shot("renamed")

    browser.get(first)  # the old slug: 301 to the new one
    assert browser.current_url == renamed and visit.heading() == "Opening Times"
    visit.shot("old-slug-followed")

    # The farm's other edge, as a load balancer might send the person: it
    # pulls the edit from EDGE01 before it answers.
    slug = renamed.rsplit("/", 1)[1]
    browser.get(f"{two}{EDITOR}/page/{slug}")
    assert visit.heading() == "Opening Times", browser.page_source[:500]
    assert "served by EDGE02" in browser.find_element(By.TAG_NAME, "header").text
    visit.shot("on-the-farm-peer")

    assert visit.errors == [], visit.errors
