"""The content editor as its users meet it on the real fleet: through a farm's
balancer (HAProxy on the farm's node, in front of its edges), in Debian's
Chromium. A person signs in, makes a page, lands on its slug's URL, renames it
and follows the 301 from the old slug; after `edgectl sync` the page opens,
by its new slug and by its old one, from the other farm's balancer and from
the master. Screenshots go to build/artifacts/editor-farms/; any error on the
browser's console fails the test.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

from chromium import EDITOR, Visit
from selenium.webdriver.common.by import By

EDGECTL = str(Path(sys.executable).parent / "edgectl")


def test_a_page_made_through_one_farms_balancer_opens_from_the_other_and_the_master(
    built, fleet, browser
):
    one, other = fleet.balancer_url("lon-a"), fleet.balancer_url("lon-b")
    master = fleet.api_url("master01")
    visit = Visit(browser, "editor-farms")
    title = f"Opening Hours {secrets.token_hex(2)}"  # a fleet may keep pages of earlier runs

    browser.get(f"{one}{EDITOR}/new")  # not signed in: the sign-in form first
    assert f"{EDITOR}/sign-in" in browser.current_url, browser.current_url
    visit.shot("sign-in-through-lon-a")
    visit.fill("token", fleet.api_token("edge01"))
    visit.submit()
    assert browser.current_url == f"{one}{EDITOR}/new", browser.current_url
    visit.fill("section", "farm")
    visit.fill("title", title)
    visit.fill("body", "Served by the edge nearest to you.")
    visit.submit()
    first = browser.current_url
    slug_of = title.lower().replace(" ", "-")
    assert first.startswith(f"{one}{EDITOR}/page/farm-{slug_of}-"), first
    assert visit.heading() == title
    served_by = browser.find_element(By.TAG_NAME, "header").text
    visit.shot("created-through-lon-a")

    visit.click(By.LINK_TEXT, "Edit this page")
    renamed_title = title.replace("Hours", "Times")
    visit.fill("title", renamed_title)
    visit.submit()
    renamed = browser.current_url
    assert renamed.startswith(f"{one}{EDITOR}/page/farm-{slug_of.replace('hours', 'times')}-")
    assert visit.heading() == renamed_title
    # The whole session on the edge that signed the person in (the balancer's
    # session cookie), not spread over the farm.
    assert browser.find_element(By.TAG_NAME, "header").text == served_by
    visit.shot("renamed-through-lon-a")
    browser.get(first)  # the old slug: 301 to the new one
    assert browser.current_url == renamed and visit.heading() == renamed_title
    visit.shot("old-slug-followed-on-lon-a")

    sync = subprocess.run([EDGECTL, "sync"], capture_output=True, text=True, timeout=600)
    assert sync.returncode == 0, sync.stdout[-2000:] + sync.stderr[-2000:]

    old, new = first.rsplit("/", 1)[1], renamed.rsplit("/", 1)[1]
    for where, base in (("lon-b", other), ("master", master)):
        browser.get(f"{base}{EDITOR}/page/{new}")
        assert visit.heading() == renamed_title, (where, browser.page_source[:500])
        visit.shot(f"on-{where}")
        browser.get(f"{base}{EDITOR}/page/{old}")
        assert browser.current_url == f"{base}{EDITOR}/page/{new}", (where, browser.current_url)
        assert visit.heading() == renamed_title, where
        visit.shot(f"old-slug-on-{where}")

    assert visit.errors == [], visit.errors
