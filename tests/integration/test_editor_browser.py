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

import pytest
from chromium import EDITOR, Visit
from httpnode import TOKEN, serving
from selenium.webdriver.common.by import By
from test_http import make_nodes


@pytest.fixture(scope="module")
def farm(tmp_path_factory, redis_server):
    paths = make_nodes(tmp_path_factory.mktemp("browser"), redis_server.url)
    with serving(paths, bookmark_wait_ms=5000) as servers:
        yield servers


def test_a_person_makes_renames_and_finds_a_page_across_the_farm_in_a_real_browser(farm, browser):
    one, two = farm["EDGE01"].url, farm["EDGE02"].url
    visit = Visit(browser, "editor-browser")

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
